//! `concierge control-doc`: an account's control document ("tracker"):
//! generate it (a preview, or archived and sent), send it again, list the
//! issued ones, and open one (its HTML written to a file).

use clap::Subcommand;
use concierge_proto::concierge::cases::v1::*;

use super::ClientArgs;
use crate::output::{self, Answer};

#[derive(Subcommand)]
pub enum Command {
    /// Write an account's document now: a preview unless --archive.
    Generate {
        /// "acme" or "accounts/acme".
        account: String,
        /// Keep it (it gets a name and is listed).
        #[arg(long)]
        archive: bool,
        /// E-mail it to the client delegate (archives it).
        #[arg(long)]
        send: bool,
        /// Also e-mail it to this address (repeat for several).
        #[arg(long = "to")]
        extra: Vec<String>,
        /// Send although one already went out this week.
        #[arg(long)]
        force: bool,
        /// Write the HTML page here as well.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        /// Write the CSV here as well.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
    },
    /// E-mail an issued document again.
    Send {
        /// "accounts/…/controlDocuments/…".
        name: String,
        /// Also e-mail it to this address (repeat for several).
        #[arg(long = "to")]
        extra: Vec<String>,
        /// Not to the client delegate, only to --to.
        #[arg(long)]
        no_delegate: bool,
        #[arg(long)]
        force: bool,
    },
    /// An account's issued documents, newest first ("-" for every account's).
    ///
    /// Example: this year's weekly ones,
    ///   --filter 'trigger = SCHEDULED AND create_time >= "2026-01-01T00:00:00Z"'
    #[command(verbatim_doc_comment)]
    List {
        account: String,
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
    },
    /// Write an issued document's HTML to a file and print its path.
    Open {
        name: String,
        /// Where; default: ./<document id>.html.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn account_name(a: &str) -> String {
    if a.starts_with("accounts/") {
        a.to_string()
    } else {
        format!("accounts/{a}")
    }
}

fn line(d: &ControlDocument) -> String {
    let trigger = control_document::Trigger::try_from(d.trigger)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("TRIGGER_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let as_of = d
        .as_of_time
        .as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let sent: Vec<String> = d
        .deliveries
        .iter()
        .map(|x| {
            let state = control_document_delivery::State::try_from(x.state)
                .map(|s| s.as_str_name().trim_start_matches("STATE_").to_lowercase())
                .unwrap_or_default();
            format!("{} {state}", x.email)
        })
        .collect();
    format!(
        "{}  {trigger}  as of {as_of}  {} request(s), {} incomplete{}",
        if d.name.is_empty() {
            "(preview)"
        } else {
            &d.name
        },
        d.row_count,
        d.incomplete_row_count,
        if sent.is_empty() {
            String::new()
        } else {
            format!("  to {}", sent.join(", "))
        }
    )
}

pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.cases();
    let json = args.json;
    let rid = || uuid::Uuid::new_v4().to_string();
    match command {
        Command::Generate {
            account,
            archive,
            send,
            extra,
            force,
            html,
            csv,
        } => {
            let d = c
                .generate_control_document(GenerateControlDocumentRequest {
                    parent: account_name(&account),
                    archive: archive || send,
                    send,
                    extra_recipients: extra,
                    request_id: rid(),
                    force,
                })
                .await
                .answer()?;
            if let Some(path) = html {
                std::fs::write(&path, &d.html_content)?;
            }
            if let Some(path) = csv {
                std::fs::write(&path, &d.csv_content)?;
            }
            output::emit(json, &d, |d| println!("{}", line(d)))
        }
        Command::Send {
            name,
            extra,
            no_delegate,
            force,
        } => {
            let d = c
                .send_control_document(SendControlDocumentRequest {
                    name,
                    include_client_delegate: !no_delegate,
                    extra_recipients: extra,
                    request_id: rid(),
                    force,
                })
                .await
                .answer()?;
            output::emit(json, &d, |d| println!("{}", line(d)))
        }
        Command::List {
            account,
            filter,
            page_size,
        } => {
            let resp = c
                .list_control_documents(ListControlDocumentsRequest {
                    parent: account_name(&account),
                    page_size,
                    filter,
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |r| {
                for d in &r.control_documents {
                    println!("{}", line(d));
                }
            })
        }
        Command::Open { name, out } => {
            let d = c
                .get_control_document(GetControlDocumentRequest {
                    name: name.clone(),
                    view: ControlDocumentView::Full as i32,
                })
                .await
                .answer()?;
            let path = out.unwrap_or_else(|| {
                std::path::PathBuf::from(format!(
                    "{}.html",
                    name.rsplit('/').next().unwrap_or("control-document")
                ))
            });
            std::fs::write(&path, &d.html_content)?;
            let shown = path.canonicalize().unwrap_or(path);
            println!("{}", shown.display());
            Ok(())
        }
    }
}
