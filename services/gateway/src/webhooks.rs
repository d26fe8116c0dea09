//! Outbound webhooks as resources: who may register them, what a webhook
//! must be before it is stored (an https receiver outside the cluster,
//! event type patterns, a secret with enough entropy), and the deliveries
//! as read-only resources of their webhook.
//!
//! The signing secret travels in the webhook's stored body (the delivery
//! worker signs with it) and is cleared from every reply and event
//! ([`shown`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use concierge_common::clock;
use concierge_common::crud::{Authorize, Ctx, Lifecycle, Resource};
use concierge_common::error::{Error, Result, Violations};
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::on_conn;
use concierge_common::principal::{Principal, Role};
use concierge_common::resource::Kind;
use concierge_common::storage::Conn;
use concierge_proto::concierge::gateway::v1::{
    Webhook, WebhookDelivery, webhook, webhook_delivery,
};
use concierge_proto::events::Visibility;

/// The gateway's rules for its resources.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules;

pub const RULES: Rules = Rules;

/// Most event type patterns one webhook holds.
pub const MAX_EVENT_TYPES: usize = 50;
/// Fewest characters of a signing secret (the contract's 32 bytes).
pub const MIN_SECRET_LEN: usize = 32;
/// Most attempts one delivery may be given.
pub const MAX_ATTEMPTS: i32 = 20;
/// The longest an attempt may be allowed.
pub const MAX_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

const STATES: FieldType = FieldType::Enum {
    parse: |s| webhook::State::from_str_name(s).map(|v| v as i32),
    prefix: "STATE_",
};
const DELIVERY_STATES: FieldType = FieldType::Enum {
    parse: |s| webhook_delivery::State::from_str_name(s).map(|v| v as i32),
    prefix: "STATE_",
};

const fn field(name: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field { name, column, ty }
}

pub static WEBHOOKS: Kind = Kind {
    resource_type: "Webhook",
    table: "webhooks",
    fields: &[
        field("display_name", "display_name", FieldType::Text),
        field("event_types", "event_types", FieldType::Text),
        field("account", "account", FieldType::Text),
        field("state", "state", STATES),
        field("create_time", "create_time", FieldType::Timestamp),
        field("update_time", "update_time", FieldType::Timestamp),
    ],
};

pub static DELIVERIES: Kind = Kind {
    resource_type: "WebhookDelivery",
    table: "webhook_deliveries",
    fields: &[
        field("event_id", "event_id", FieldType::Text),
        field("event_type", "event_type", FieldType::Text),
        field("event_subject", "event_subject", FieldType::Text),
        field("state", "state", DELIVERY_STATES),
        field("create_time", "create_time", FieldType::Timestamp),
    ],
};

/// A webhook as a caller sees it: without its secret.
pub fn shown(mut w: Webhook) -> Webhook {
    w.secret.clear();
    w
}

/// A webhook state as a person says it: "paused", "disabled".
pub fn state_word(state: i32) -> String {
    webhook::State::try_from(state)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("STATE_")
        .to_ascii_lowercase()
}

/// Whether an event type pattern is well formed: dotted lower-case words,
/// optionally ending in "*".
pub fn valid_pattern(p: &str) -> bool {
    let body = p.strip_suffix('*').unwrap_or(p);
    !p.is_empty()
        && p.len() <= 256
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
}

/// Whether `event_type` is one of `patterns`.
pub fn matches(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => p == event_type,
    })
}

impl Resource<Rules> for Webhook {
    const KIND: &'static Kind = &WEBHOOKS;
    const COLLECTIONS: &'static [&'static str] = &["webhooks"];
    const FIELD: &'static str = "webhook";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "url",
        "event_types",
        "secret",
        "max_attempts",
        "attempt_timeout",
    ];

    concierge_common::resource_bookkeeping!();

    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            ("event_types", Value::Text(self.event_types.join(" "))),
            ("state", Value::Int(i64::from(self.state))),
        ]
    }

    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "url" => self.url = from.url.clone(),
            "event_types" => self.event_types = from.event_types.clone(),
            "secret" => {
                self.secret = from.secret.clone();
                self.secret_hint = hint(&self.secret);
            }
            "max_attempts" => self.max_attempts = from.max_attempts,
            "attempt_timeout" => self.attempt_timeout = from.attempt_timeout,
            _ => {}
        }
    }

    fn check(&self, v: &mut Violations) {
        let name_len = self.display_name.chars().count();
        if self.display_name.trim().is_empty() || name_len > 200 {
            v.add("webhook.display_name", "required: 1 to 200 characters");
        }
        if let Err(why) = url_shape(&self.url) {
            v.add("webhook.url", why);
        }
        if self.event_types.is_empty() || self.event_types.len() > MAX_EVENT_TYPES {
            v.add(
                "webhook.event_types",
                format!("1 to {MAX_EVENT_TYPES} event types, e.g. \"concierge.cases.v1.escalation_raised\" or \"concierge.disputes.v1.*\""),
            );
        }
        for (i, t) in self.event_types.iter().enumerate().take(MAX_EVENT_TYPES) {
            if !valid_pattern(t) {
                v.add(
                    format!("webhook.event_types[{i}]"),
                    "an event type (dotted lower-case words), or a prefix ending in \"*\"",
                );
            } else if t.starts_with("concierge.gateway.v1.webhook") {
                v.add(
                    format!("webhook.event_types[{i}]"),
                    "webhooks do not deliver the gateway's own webhook events (a failing receiver would feed itself)",
                );
            }
        }
        if !self.account.is_empty()
            && concierge_common::names::parse("webhook.account", &self.account, &["accounts"])
                .is_err()
        {
            v.add(
                "webhook.account",
                "an account, \"accounts/{account}\", or empty for all",
            );
        }
        if self.secret.chars().count() < MIN_SECRET_LEN || self.secret.len() > 1024 {
            v.add(
                "webhook.secret",
                format!("required: at least {MIN_SECRET_LEN} characters of a random secret (e.g. `openssl rand -hex 32`)"),
            );
        }
        if !(0..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            v.add(
                "webhook.max_attempts",
                format!("0 (for 8) to {MAX_ATTEMPTS}"),
            );
        }
        if let Some(d) = &self.attempt_timeout {
            let ok = d.seconds >= 0
                && d.nanos >= 0
                && std::time::Duration::new(d.seconds as u64, d.nanos as u32)
                    <= MAX_ATTEMPT_TIMEOUT;
            if !ok {
                v.add("webhook.attempt_timeout", "0 (for 10 s) to 60 s");
            }
        }
    }

    fn clear_output_only(&mut self) {
        self.secret_hint.clear();
        self.state = 0;
        self.consecutive_failure_count = 0;
        self.last_success_time = None;
        self.creator.clear();
        self.create_time = None;
        self.update_time = None;
    }

    fn account(&self) -> String {
        self.account.clone()
    }
}

/// The last four characters of a secret, to tell secrets apart.
fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Whether a URL may be a receiver, by its form: https (http only to a
/// loopback address, which [`check_target`] allows only in dev), no
/// credentials in it, a host.
pub fn url_shape(url: &str) -> std::result::Result<url::Url, String> {
    if url.len() > 2048 {
        return Err("at most 2048 characters".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("no credentials in the URL: the signature authenticates the gateway".into());
    }
    let Some(host) = parsed.host_str() else {
        return Err("a URL with a host".into());
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback_host(host) => Ok(parsed),
        "http" => Err("https only: events travel signed, but never in clear (http only to this machine, for tests)".into()),
        other => Err(format!("https only, not {other}")),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Host names that are inside the cluster whatever they resolve to.
fn internal_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".local")
        || host.ends_with(".internal")
        || host.ends_with(".cluster.local")
        || host.ends_with(".svc")
        || !host.contains('.') && host.parse::<IpAddr>().is_err()
}

/// Whether an address is one a receiver outside the company may have: not
/// loopback, private, link-local (where cloud metadata lives), shared
/// carrier space, multicast or unspecified.
pub fn public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier NAT, some clusters).
        || (a == 100 && (64..128).contains(&b))
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// Where receivers may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Public addresses only (production).
    Public,
    /// Anything, loopback included (`concierge dev`, tests).
    Any,
}

/// Checks that `url` points outside the cluster: its name is not an
/// internal one and every address it resolves to is public. INVALID_ARGUMENT
/// on `field` otherwise. The delivery worker resolves through the same rule
/// on every attempt, so a name re-pointed inside later is refused then.
pub async fn check_target(field: &str, url: &str, targets: Targets) -> Result<()> {
    let parsed = url_shape(url).map_err(|why| Error::invalid(field, why))?;
    if targets == Targets::Any {
        return Ok(());
    }
    let host = parsed.host_str().unwrap_or_default().to_string();
    let inside = || {
        Error::invalid(
            field,
            format!(
                "{host} is inside the company's network (loopback, private, link-local or cluster addresses are refused)"
            ),
        )
    };
    if internal_name(host.trim_start_matches('[').trim_end_matches(']')) {
        return Err(inside());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    // A name that takes long to resolve holds the request no longer than this.
    let lookup = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port)),
    )
    .await
    .map_err(|_| Error::invalid(field, format!("{host} did not resolve within 5 s")))?;
    let addrs: Vec<std::net::SocketAddr> = lookup
        .map_err(|e| Error::invalid(field, format!("{host} does not resolve: {e}")))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !public_address(a.ip())) {
        return Err(inside());
    }
    Ok(())
}

impl Authorize<Webhook> for Rules {
    type Facts = ();

    fn visibility(&self, _w: &Webhook) -> Visibility {
        Visibility::Internal
    }

    fn event_payload(&self, w: &Webhook, _audience: Visibility) -> Webhook {
        shown(w.clone())
    }

    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }

    /// A client's webhooks are its account's; another's is not found.
    fn may_see(&self, p: &Principal, w: &Webhook) -> Result<()> {
        if p.role == Role::Client && p.account.as_deref() != Some(w.account.as_str()) {
            return Err(Error::NotFound {
                resource_type: "Webhook",
                name: w.name.clone(),
            });
        }
        Ok(())
    }

    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        match p.role {
            Role::Admin | Role::Manager | Role::Client => Ok(()),
            _ => Err(Error::PermissionDenied(
                "webhooks are registered by managers and admins (or a client's key for its own account)".into(),
            )),
        }
    }

    fn may_write(&self, p: &Principal, w: &Webhook, _facts: &()) -> Result<()> {
        Authorize::<Webhook>::may_attempt_write(self, p, "")?;
        Authorize::<Webhook>::may_see(self, p, w)
    }

    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(match p.role {
            Role::Client => Some(p.account.clone().unwrap_or_default()),
            _ => None,
        })
    }
}

impl Lifecycle<Webhook> for Rules {
    fn on_create(&self, ctx: &Ctx, w: &mut Webhook, _now: i64) {
        w.state = webhook::State::Active as i32;
        w.creator = ctx.principal.subject.clone();
        w.secret_hint = hint(&w.secret);
    }

    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        before: Option<&Webhook>,
        after: &Webhook,
        now: i64,
    ) -> Result<()> {
        if before.is_none() && ctx.principal.role == Role::Client {
            on_conn!(conn, c => sqlx::query("UPDATE webhooks SET public_only = 1 WHERE name = $1")
                .bind(&after.name)
                .execute(&mut **c)
                .await?
                .rows_affected());
        }
        let active = webhook::State::Active as i32;
        if after.state == active && before.is_none_or(|b| b.state != active) {
            // Created or resumed: events from now on are its to deliver.
            on_conn!(conn, c => sqlx::query("UPDATE webhooks SET active_since = $1 WHERE name = $2")
                .bind(now)
                .bind(&after.name)
                .execute(&mut **c)
                .await?
                .rows_affected());
        }
        Ok(())
    }

    async fn after_delete(&self, conn: &mut Conn<'_>, w: &Webhook, _now: i64) -> Result<()> {
        // Pending deliveries are dropped with their webhook.
        concierge_common::timers::disarm_subject(conn, &w.name).await?;
        Ok(())
    }
}

impl Resource<Rules> for WebhookDelivery {
    const KIND: &'static Kind = &DELIVERIES;
    const COLLECTIONS: &'static [&'static str] = &["webhooks", "deliveries"];
    const FIELD: &'static str = "webhook_delivery";
    const UPDATABLE: &'static [&'static str] = &[];

    fn name(&self) -> &str {
        &self.name
    }
    fn etag(&self) -> &str {
        ""
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_meta(&mut self, create_time: i64, _update_time: i64, _etag: String) {
        self.create_time = clock::micros_to_proto(create_time);
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("event_id", Value::Text(self.event_id.clone())),
            ("event_type", Value::Text(self.event_type.clone())),
            ("event_subject", Value::Text(self.event_subject.clone())),
            ("state", Value::Int(i64::from(self.state))),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, _v: &mut Violations) {}
    fn clear_output_only(&mut self) {}
}

impl Authorize<WebhookDelivery> for Rules {
    type Facts = ();
    fn visibility(&self, _d: &WebhookDelivery) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Err(Error::PermissionDenied(
            "deliveries are written by the gateway".into(),
        ))
    }
    fn may_write(&self, _p: &Principal, _d: &WebhookDelivery, _facts: &()) -> Result<()> {
        Err(Error::PermissionDenied(
            "deliveries are written by the gateway".into(),
        ))
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(match p.role {
            Role::Client => Some(p.account.clone().unwrap_or_default()),
            _ => None,
        })
    }
}

impl Lifecycle<WebhookDelivery> for Rules {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_inside_the_company_are_refused_by_address() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!public_address(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(public_address(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn receiver_urls_are_https_without_credentials() {
        assert!(url_shape("https://hooks.example.com/concierge").is_ok());
        assert!(
            url_shape("http://127.0.0.1:8080/hook").is_ok(),
            "loopback, for dev"
        );
        assert!(
            url_shape("http://hooks.example.com/x")
                .unwrap_err()
                .contains("https only")
        );
        assert!(
            url_shape("https://user:pw@hooks.example.com/")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(url_shape("ftp://hooks.example.com/").is_err());
        assert!(url_shape("not a url").is_err());
        for name in [
            "metadata.google.internal",
            "cases.concierge.svc.cluster.local",
            "cases",
            "localhost",
            "printer.local",
        ] {
            assert!(internal_name(name), "{name}");
        }
        assert!(!internal_name("hooks.slack.com"));
    }

    #[tokio::test]
    async fn in_production_a_receiver_must_resolve_outside() {
        for url in [
            "https://127.0.0.1/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.5/hook",
            "https://[::1]/hook",
            "https://metadata.google.internal/",
            "https://cases.concierge.svc.cluster.local/",
        ] {
            let e = check_target("webhook.url", url, Targets::Public)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("webhook.url"), "{url}: {e}");
        }
        check_target("webhook.url", "http://127.0.0.1:9/hook", Targets::Any)
            .await
            .unwrap();
    }

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        let p = vec![
            "concierge.cases.v1.escalation_raised".to_string(),
            "concierge.disputes.v1.*".to_string(),
        ];
        assert!(matches(&p, "concierge.cases.v1.escalation_raised"));
        assert!(!matches(&p, "concierge.cases.v1.escalation_resolved"));
        assert!(matches(&p, "concierge.disputes.v1.credit_issued"));
        assert!(valid_pattern("concierge.*"));
        assert!(!valid_pattern("concierge.*.v1"));
        assert!(!valid_pattern("Concierge.Cases"));
    }
}
