//! Outgoing e-mail. A service builds a message and hands it to its
//! [`Mailer`], which sends it over SMTP (production), writes it as an .eml
//! file (`concierge dev` without SMTP), or is off (a `serve` without SMTP),
//! and says which at start. Senders queue their mail durably with the change
//! that causes it (a timer) and send after the commit, at least once.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// The sender when none is configured.
pub const DEFAULT_FROM: &str = "Concierge <concierge@localhost>";

/// How long one SMTP conversation may take before the send is retried.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// `CONCIERGE_MAIL__*`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MailConfig {
    /// `smtps://user:password@host:465` (TLS from the start),
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), or
    /// `smtp://127.0.0.1:25` (a relay on loopback, without credentials).
    pub smtp_url: Option<SecretString>,
    /// The From of every message, e.g. `Concierge <concierge@example.com>`.
    pub from: Option<String>,
}

/// Where outgoing mail goes.
pub enum Mailer {
    /// An SMTP server; `shown` is its URL without credentials.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        shown: String,
    },
    /// One .eml file per message in `dir`.
    Files { dir: PathBuf, from: Mailbox },
    /// Mail is not sent: nothing configured where it would go.
    Off,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server or the directory may take it later: keep it and retry.
    #[error("{0}")]
    Retry(String),
    /// The server refused it for good (a recipient that does not exist):
    /// retrying would not help.
    #[error("{0}")]
    Refused(String),
}

/// The language a message is written in (RFC 3282), so that a reader's
/// mail client (and a test) can tell.
#[derive(Debug, Clone)]
pub struct ContentLanguage(pub String);

impl lettre::message::header::Header for ContentLanguage {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Content-Language")
    }
    fn parse(s: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_string()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// A mailbox from a display name and an address, refusing an address that
/// is not one.
pub fn mailbox(display_name: &str, address: &str) -> Result<Mailbox> {
    let address = address.parse().map_err(|e| {
        Error::invalid(
            "email",
            format!("{address:?} is not an e-mail address: {e}"),
        )
    })?;
    let name = (!display_name.trim().is_empty()).then(|| display_name.to_string());
    Ok(Mailbox::new(name, address))
}

fn from_mailbox(from: &str) -> Result<Mailbox> {
    from.parse()
        .map_err(|e| Error::invalid("mail.from", format!("{from:?} is not a mailbox: {e}")))
}

impl Mailer {
    /// The mailer `config` describes: SMTP when it names a server, else
    /// `fallback` (a directory in `concierge dev`, off in `serve`).
    pub fn from_config(config: &MailConfig, fallback: Option<PathBuf>) -> Result<Self> {
        let from = config.from.as_deref().unwrap_or(DEFAULT_FROM);
        match (&config.smtp_url, fallback) {
            (Some(url), _) => Self::smtp(url.expose_secret(), from),
            (None, Some(dir)) => Self::files(dir, from),
            (None, None) => Ok(Self::Off),
        }
    }

    /// An SMTP server at `url`. Credentials never travel in clear: a URL
    /// with them must use TLS (`smtps://` or `?tls=required`), and a plain
    /// `smtp://` one is only for a relay on loopback.
    pub fn smtp(url: &str, from: &str) -> Result<Self> {
        let field = "mail.smtp_url";
        let parsed =
            url::Url::parse(url).map_err(|e| Error::invalid(field, format!("not a URL: {e}")))?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let tls = match parsed.scheme() {
            "smtps" => true,
            "smtp" => parsed
                .query_pairs()
                .any(|(k, v)| k == "tls" && v == "required"),
            other => {
                return Err(Error::invalid(
                    field,
                    format!("{other}:// is not SMTP: use smtps:// or smtp://"),
                ));
            }
        };
        let credentials = !parsed.username().is_empty() || parsed.password().is_some();
        if !tls && credentials {
            return Err(Error::invalid(
                field,
                "credentials never travel in clear: use smtps:// or add ?tls=required",
            ));
        }
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            return Err(Error::invalid(
                field,
                format!(
                    "plain smtp:// is for a relay on loopback, not {host}: use smtps:// or add ?tls=required"
                ),
            ));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| Error::invalid(field, e.to_string()))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Self::Smtp {
            transport,
            from: from_mailbox(from)?,
            shown: format!("{}://{host}{port}", parsed.scheme()),
        })
    }

    /// Writes every message as an .eml file in `dir`.
    pub fn files(dir: PathBuf, from: &str) -> Result<Self> {
        Ok(Self::Files {
            dir,
            from: from_mailbox(from)?,
        })
    }

    /// The sender, when mail is sent at all.
    pub fn from(&self) -> Option<&Mailbox> {
        match self {
            Self::Smtp { from, .. } | Self::Files { from, .. } => Some(from),
            Self::Off => None,
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Where mail goes, in words, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Self::Smtp { shown, .. } => format!("e-mail is sent through {shown}"),
            Self::Files { dir, .. } => format!(
                "no SMTP server is configured (CONCIERGE_MAIL__SMTP_URL): e-mail is written to {} as .eml files",
                dir.display()
            ),
            Self::Off => {
                "no SMTP server is configured (CONCIERGE_MAIL__SMTP_URL): e-mail is not sent".into()
            }
        }
    }

    /// Sends `message`; returns where it went (None when mail is off).
    pub async fn send(&self, message: Message) -> std::result::Result<Option<String>, SendError> {
        match self {
            Self::Smtp {
                transport, shown, ..
            } => match transport.send(message).await {
                Ok(_) => Ok(Some(shown.clone())),
                Err(e) if e.is_permanent() => Err(SendError::Refused(format!("{shown}: {e}"))),
                Err(e) => Err(SendError::Retry(format!("{shown}: {e}"))),
            },
            Self::Files { dir, .. } => {
                let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
                let write = async {
                    tokio::fs::create_dir_all(dir).await?;
                    tokio::fs::write(&path, message.formatted()).await
                };
                write
                    .await
                    .map_err(|e| SendError::Retry(format!("{}: {e}", path.display())))?;
                Ok(Some(path.display().to_string()))
            }
            Self::Off => Ok(None),
        }
    }
}

/// The languages Concierge writes mail in; any other tag reads English.
pub const LANGUAGES: &[&str] = &["en", "tr"];

/// The language of mail to a reader tagged `tag` (BCP 47, e.g. "tr-TR"): the
/// tag's primary language when mail is written in it, else English.
pub fn language(tag: &str) -> &'static str {
    let primary = tag.split('-').next().unwrap_or_default();
    LANGUAGES
        .iter()
        .find(|l| l.eq_ignore_ascii_case(primary))
        .copied()
        .unwrap_or("en")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match Mailer::smtp(url, DEFAULT_FROM) {
            Err(Error::InvalidArgument(v)) => format!("{v:?}"),
            Err(e) => panic!("{url}: {e}"),
            Ok(_) => panic!("{url} was accepted"),
        }
    }

    #[tokio::test]
    async fn credentials_never_travel_in_clear_and_plain_smtp_stays_on_loopback() {
        assert!(refused("smtp://bob:secret@mail.example.com:587").contains("in clear"));
        assert!(refused("smtp://bob:secret@127.0.0.1:25").contains("in clear"));
        assert!(refused("smtp://mail.example.com:25").contains("loopback"));
        assert!(refused("http://mail.example.com").contains("not SMTP"));
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
            "smtps://bob:secret@mail.example.com:465",
            "smtp://bob:secret@mail.example.com:587?tls=required",
        ] {
            let mailer = Mailer::smtp(ok, DEFAULT_FROM).unwrap();
            assert!(
                !mailer.describe().contains("secret"),
                "{}",
                mailer.describe()
            );
        }
    }
}
