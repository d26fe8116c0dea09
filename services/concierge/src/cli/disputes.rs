//! `concierge disputes …`: billing disputes through the gateway: filed,
//! vetted, credited with the working shown as a table, decided, told to the
//! client and confirmed; their history and documents.

use clap::Subcommand;
use concierge_common::money;
use concierge_proto::disputes::*;
use concierge_proto::types::Money;

use super::ClientArgs;
use super::customers::{account_name, staff_name};
use crate::output::{self, Answer, ListArgs, paged, parse_enum, short, table};

fn dispute_name(s: &str) -> String {
    if s.starts_with("disputes/") {
        s.to_string()
    } else {
        format!("disputes/{s}")
    }
}

fn date(text: &str) -> anyhow::Result<CalendarDate> {
    let d: jiff::civil::Date = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a date such as 2026-11-30: {e}"))?;
    Ok(CalendarDate {
        year: d.year().into(),
        month: d.month().into(),
        day: d.day().into(),
    })
}

/// "2026-11-01..2026-11-30", both days included.
fn period(text: &str) -> anyhow::Result<BillingPeriod> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| anyhow::anyhow!("{text:?}: write the period as 2026-11-01..2026-11-30"))?;
    Ok(BillingPeriod {
        start_date: Some(date(start)?),
        end_date: Some(date(end)?),
    })
}

fn reason(v: &str) -> anyhow::Result<i32> {
    parse_enum(
        v,
        "DISPUTE_REASON_",
        |s| DisputeReason::from_str_name(s).map(|r| r as i32),
        "dispute reason (outage, wrong-rate, unrecognised-charge, billed-after-disconnect, duplicate, other)",
    )
}

fn method(v: &str) -> anyhow::Result<i32> {
    parse_enum(
        v,
        "CREDIT_METHOD_",
        |s| CreditMethod::from_str_name(s).map(|m| m as i32),
        "credit method (full, prorated-outage, sla-tier, manual)",
    )
}

fn rounding(v: &str) -> anyhow::Result<i32> {
    parse_enum(
        v,
        "ROUNDING_MODE_",
        |s| RoundingMode::from_str_name(s).map(|m| m as i32),
        "rounding mode (half-even, half-up, down)",
    )
}

fn duration(text: &str) -> anyhow::Result<prost_types::Duration> {
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a duration such as 7h30m: {e}"))?;
    Ok(concierge_common::bounded::Duration::to_proto(d))
}

/// A disputed line from "charge=…;billed=1200.00 USD;disputed=…;reason=outage
/// [;item=hq/dia][;detail=…][;period=A..B][;id=…]", in `account`.
fn line(spec: &str, account: &str) -> anyhow::Result<DisputeLine> {
    let mut l = DisputeLine::default();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{part:?} in --line: write key=value"))?;
        let value = value.trim();
        match key.trim() {
            "charge" => l.charge_description = value.into(),
            "billed" => l.billed_amount = Some(money::parse(value)?),
            "disputed" => l.disputed_amount = Some(money::parse(value)?),
            "reason" => l.reason = reason(value)?,
            "detail" => l.reason_detail = value.into(),
            "period" => l.service_period = Some(period(value)?),
            "id" => l.id = value.into(),
            "item" => {
                l.inventory_item = if value.starts_with("accounts/") {
                    value.into()
                } else {
                    let (site, item) = value.split_once('/').ok_or_else(|| {
                        anyhow::anyhow!("item={value:?}: write site/item, e.g. hq/dia")
                    })?;
                    format!("{account}/sites/{site}/inventoryItems/{item}")
                }
            }
            other => anyhow::bail!(
                "{other:?} in --line: the keys are charge, billed, disputed, reason, detail, period, item, id"
            ),
        }
    }
    Ok(l)
}

fn show_money(m: &Option<Money>) -> String {
    m.as_ref().map(money::format).unwrap_or_else(|| "-".into())
}

fn show_time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into())
}

fn state(s: i32) -> String {
    dispute::State::try_from(s)
        .map(|s| short(s.as_str_name(), "STATE_"))
        .unwrap_or_default()
}

fn dispute_text(d: &Dispute) -> String {
    let mut out = format!(
        "{}  invoice {}  {}{}\n  account: {}  owner: {}  disputed: {} of {} billed",
        d.name,
        d.invoice_number,
        state(d.state),
        if d.overdue { " (vetting overdue)" } else { "" },
        d.account,
        if d.owner.is_empty() { "-" } else { &d.owner },
        show_money(&d.total_disputed),
        show_money(&d.total_billed),
    );
    if d.vetting_due_time.is_some() {
        out.push_str(&format!(
            "\n  vetting due: {}",
            show_time(&d.vetting_due_time)
        ));
    }
    if !d.related_case.is_empty() {
        out.push_str(&format!("\n  related case: {}", d.related_case));
    }
    if let Some(a) = &d.approval {
        let s = credit_approval::State::try_from(a.state)
            .map(|s| short(s.as_str_name(), "STATE_"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n  approval: {s}{}",
            if a.approver.is_empty() {
                String::new()
            } else {
                format!(" by {}", a.approver)
            }
        ));
    }
    if d.approved_credit.is_some() {
        out.push_str(&format!(
            "\n  approved credit: {}",
            show_money(&d.approved_credit)
        ));
    }
    if let Some(i) = &d.credit_issue {
        out.push_str(&format!(
            "\n  credit issued: {} ({})",
            show_money(&i.amount),
            i.credit_reference
        ));
    }
    if let Some(p) = &d.position {
        out.push_str(&format!(
            "\n  position told {}: {}",
            p.notified_contacts.join(", "),
            p.message
        ));
    }
    if !d.state_reason.is_empty() {
        out.push_str(&format!("\n  reason: {}", d.state_reason));
    }
    let rows: Vec<Vec<String>> = d
        .lines
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                l.charge_description.clone(),
                show_money(&l.billed_amount),
                show_money(&l.disputed_amount),
                DisputeReason::try_from(l.reason)
                    .map(|r| short(r.as_str_name(), "DISPUTE_REASON_"))
                    .unwrap_or_default(),
                show_money(&l.approved_amount),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["line", "charge", "billed", "disputed", "reason", "approved"],
            &rows,
        ));
    }
    out.push_str(&format!("\n  etag: {}", d.etag));
    out
}

/// A credit's working as a table: every step, its formula and value.
pub fn working(c: &CreditCalculation) -> String {
    let method = CreditMethod::try_from(c.method)
        .map(|m| short(m.as_str_name(), "CREDIT_METHOD_"))
        .unwrap_or_default();
    let mut out = format!(
        "line {}  {method}  credit {}{}  (rounded {})",
        if c.line_id.is_empty() {
            "-"
        } else {
            &c.line_id
        },
        show_money(&c.result),
        if c.capped {
            ", capped at the disputed amount"
        } else {
            ""
        },
        c.rounding_description
    );
    let rows: Vec<Vec<String>> = c
        .steps
        .iter()
        .map(|s| {
            let value = match &s.value {
                Some(calculation_step::Value::Amount(m)) => money::format(m),
                Some(calculation_step::Value::Duration(d)) => {
                    concierge_common::bounded::Duration::try_from(d)
                        .map(|d| format!("{:#}", d.get()))
                        .unwrap_or_default()
                }
                Some(calculation_step::Value::Decimal(x)) => x.clone(),
                None => String::new(),
            };
            vec![s.description.clone(), s.formula.clone(), value]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["step", "formula", "value"], &rows));
    out
}

fn parse_document_type(v: &str) -> anyhow::Result<i32> {
    parse_enum(
        v,
        "TYPE_",
        |s| dispute_document::Type::from_str_name(s).map(|t| t as i32),
        "document type (invoice, outage-report, contract, correspondence, screenshot, calculation, credit-memo, other)",
    )
}

#[derive(Subcommand)]
pub enum Command {
    /// Disputes you may see, newest first.
    ///
    /// Examples: late vetting in Ayşe's portfolio; the big ones;
    ///   --filter 'account_manager = "staff/ayse" AND overdue = true'
    ///   --filter 'total_disputed.minor_units > 100000' --order-by 'total_disputed.minor_units desc'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// One dispute, with its lines.
    Get { dispute: String },
    /// Write a dispute (a draft until submitted).
    Create {
        /// "acme" or "accounts/acme".
        #[arg(long)]
        account: String,
        /// The invoice number as printed.
        #[arg(long)]
        invoice: String,
        /// The invoice period, both days included: 2026-11-01..2026-11-30.
        #[arg(long)]
        period: Option<String>,
        /// A disputed line (repeat for several):
        /// "charge=DIA 10 Mb;billed=1200.00 USD;disputed=1200.00 USD;reason=outage;item=hq/dia".
        #[arg(long = "line")]
        lines: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// The client contact behind the claim: "deniz" or its full name.
        #[arg(long)]
        contact: Option<String>,
        /// The account's client delegate is the contact behind the claim.
        #[arg(long, conflicts_with = "contact")]
        contact_delegate: bool,
        /// The repair case whose outage caused the claim: "c1" or "cases/c1".
        #[arg(long)]
        related_case: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// Send a draft to the company: the vetting clock starts.
    Submit { dispute: String },
    /// Start vetting (you own it unless --owner).
    Vet {
        dispute: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Ask the client a question: the vetting clock pauses.
    Ask {
        dispute: String,
        #[arg(long)]
        question: String,
    },
    /// Answer the company's question: vetting goes on.
    Answer {
        dispute: String,
        #[arg(long)]
        answer: String,
    },
    /// Calculate a line's credit and print its working (changes nothing).
    Calc {
        dispute: String,
        /// The line's id, e.g. 1.
        line: String,
        #[arg(long)]
        method: String,
        /// The outage, instead of the related case's down time: 7h30m.
        #[arg(long)]
        outage: Option<String>,
        /// The MRC, instead of the line's item's: "1200.00 USD".
        #[arg(long)]
        mrc: Option<String>,
        /// The amount (manual method).
        #[arg(long)]
        amount: Option<String>,
        /// Why that amount (manual method).
        #[arg(long)]
        amount_reason: Option<String>,
        #[arg(long)]
        rounding: Option<String>,
    },
    /// Propose the credit: each --line ID=METHOD (with --outage/--mrc
    /// applying to every line); at or below the threshold it is approved at
    /// once, above it waits for a manager.
    Propose {
        dispute: String,
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        outage: Option<String>,
        #[arg(long)]
        mrc: Option<String>,
        #[arg(long)]
        rounding: Option<String>,
    },
    /// Approve the proposed credit (a manager who did not propose it).
    Approve {
        dispute: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject the proposed credit: vetting goes on.
    RejectCredit {
        dispute: String,
        #[arg(long)]
        comment: String,
    },
    /// Deny the claim: no credit.
    Deny {
        dispute: String,
        #[arg(long)]
        reason: String,
    },
    /// Record the credit billing issued (the approved amount unless --amount).
    Issue {
        dispute: String,
        /// The credit memo or adjustment number.
        #[arg(long)]
        reference: String,
        #[arg(long)]
        amount: Option<String>,
        /// The invoice the credit appears on.
        #[arg(long, default_value = "")]
        invoice: String,
    },
    /// Tell the client the company's position (e-mailed to the delegate).
    Publish {
        dispute: String,
        #[arg(long)]
        message: String,
    },
    /// The client confirms the outcome. A client key needs nothing more;
    /// staff name who said so: --contact, or --delegate for the account's
    /// client delegate.
    Confirm {
        dispute: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        contact: Option<String>,
        #[arg(long)]
        delegate: bool,
    },
    /// The client rejects the outcome: the dispute goes back to vetting.
    Reject {
        dispute: String,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        contact: Option<String>,
        #[arg(long)]
        delegate: bool,
    },
    /// Close a confirmed dispute.
    Close {
        dispute: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Who did what to a dispute, oldest first (staff only).
    ///
    /// Example: only the credit's,
    ///   --filter 'action = "ProposeCredit" OR action = "ApproveCredit"'
    #[command(verbatim_doc_comment)]
    History {
        dispute: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Upload a supporting document (its size and SHA-256 are checked).
    Upload {
        dispute: String,
        file: std::path::PathBuf,
        #[arg(long = "type", default_value = "other")]
        document_type: String,
        /// What it is, e.g. application/pdf; default: from its content.
        #[arg(long, default_value = "application/octet-stream")]
        media_type: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// A dispute's documents.
    ///
    /// Example: the outage reports,
    ///   --filter 'type = OUTAGE_REPORT'
    #[command(verbatim_doc_comment)]
    Documents {
        dispute: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Download a document to a file (checked against its SHA-256).
    Download {
        /// "disputes/…/documents/…".
        document: String,
        /// Where; default: its display name in this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

/// Whom staff name as the client who answered.
async fn responder(
    args: &ClientArgs,
    dispute: &str,
    contact: Option<String>,
    delegate: bool,
) -> anyhow::Result<String> {
    if let Some(c) = contact {
        if c.starts_with("accounts/") {
            return Ok(c);
        }
        let d = args
            .client()?
            .disputes()
            .get_dispute(GetDisputeRequest {
                name: dispute.into(),
            })
            .await
            .answer()?;
        return Ok(format!("{}/contacts/{c}", d.account));
    }
    if !delegate {
        return Ok(String::new());
    }
    let d = args
        .client()?
        .disputes()
        .get_dispute(GetDisputeRequest {
            name: dispute.into(),
        })
        .await
        .answer()?;
    delegate_of(args, &d.account).await
}

/// The client delegate of `account`, by name.
async fn delegate_of(args: &ClientArgs, account: &str) -> anyhow::Result<String> {
    let contacts = args
        .client()?
        .customers()
        .list_contacts(concierge_proto::customers::ListContactsRequest {
            parent: account.to_string(),
            filter: "client_delegate = true".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .answer()?
        .contacts;
    contacts
        .into_iter()
        .next()
        .map(|c| c.name)
        .ok_or_else(|| anyhow::anyhow!("{account} has no client delegate"))
}

pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.disputes();
    let json = args.json;
    let print = |d: Dispute| output::emit(json, &d, |d| println!("{}", dispute_text(d)));
    let rid = || uuid::Uuid::new_v4().to_string();
    match command {
        Command::List { list } => {
            let (disputes, next) = paged!(
                list,
                ListDisputesRequest {
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                },
                c.list_disputes,
                disputes
            );
            let reply = ListDisputesResponse {
                disputes,
                next_page_token: next,
                total_size: 0,
            };
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .disputes
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.account.clone(),
                            d.invoice_number.clone(),
                            format!("{}{}", state(d.state), if d.overdue { " !" } else { "" }),
                            show_money(&d.total_disputed),
                            show_money(&d.approved_credit),
                            if d.owner.is_empty() {
                                "-".into()
                            } else {
                                d.owner.clone()
                            },
                        ]
                    })
                    .collect();
                println!(
                    "{}{}",
                    table(
                        &[
                            "dispute", "account", "invoice", "state", "disputed", "approved",
                            "owner"
                        ],
                        &rows
                    ),
                    output::next_page(&r.next_page_token)
                );
            })
        }
        Command::Get { dispute } => print(
            c.get_dispute(GetDisputeRequest {
                name: dispute_name(&dispute),
            })
            .await
            .answer()?,
        ),
        Command::Create {
            account,
            invoice,
            period: p,
            lines,
            description,
            contact,
            contact_delegate,
            related_case,
            id,
        } => {
            let account = account_name(&account);
            let contact = match contact_delegate {
                true => Some(delegate_of(args, &account).await?),
                false => contact,
            };
            let lines = lines
                .iter()
                .map(|l| line(l, &account))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let contact = contact
                .map(|c| {
                    if c.starts_with("accounts/") {
                        c
                    } else {
                        format!("{account}/contacts/{c}")
                    }
                })
                .unwrap_or_default();
            print(
                c.create_dispute(CreateDisputeRequest {
                    dispute: Some(Dispute {
                        account,
                        invoice_number: invoice,
                        invoice_period: p.as_deref().map(period).transpose()?,
                        description,
                        lines,
                        contact,
                        related_case: related_case
                            .map(|r| super::cases::case_name(&r))
                            .unwrap_or_default(),
                        ..Default::default()
                    }),
                    dispute_id: id.unwrap_or_default(),
                    request_id: rid(),
                })
                .await
                .answer()?,
            )
        }
        Command::Submit { dispute } => print(
            c.submit_dispute(SubmitDisputeRequest {
                name: dispute_name(&dispute),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Vet { dispute, owner } => print(
            c.start_dispute_vetting(StartDisputeVettingRequest {
                name: dispute_name(&dispute),
                owner: owner.map(|o| staff_name(&o)).unwrap_or_default(),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Ask { dispute, question } => print(
            c.request_dispute_information(RequestDisputeInformationRequest {
                name: dispute_name(&dispute),
                question,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Answer { dispute, answer } => print(
            c.provide_dispute_information(ProvideDisputeInformationRequest {
                name: dispute_name(&dispute),
                answer,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Calc {
            dispute,
            line,
            method: m,
            outage,
            mrc,
            amount,
            amount_reason,
            rounding: r,
        } => {
            let inputs = CreditInputs {
                outage_duration: outage.as_deref().map(duration).transpose()?,
                mrc: mrc.as_deref().map(money::parse).transpose()?,
                manual_amount: amount.as_deref().map(money::parse).transpose()?,
                manual_reason: amount_reason.unwrap_or_default(),
                ..Default::default()
            };
            let calc = c
                .calculate_credit(CalculateCreditRequest {
                    method: method(&m)?,
                    inputs: Some(inputs),
                    rounding_mode: r.as_deref().map(rounding).transpose()?.unwrap_or(0),
                    dispute: dispute_name(&dispute),
                    line_id: line,
                })
                .await
                .answer()?;
            output::emit(json, &calc, |calc| println!("{}", working(calc)))
        }
        Command::Propose {
            dispute,
            lines,
            reason,
            outage,
            mrc,
            rounding: r,
        } => {
            let inputs = CreditInputs {
                outage_duration: outage.as_deref().map(duration).transpose()?,
                mrc: mrc.as_deref().map(money::parse).transpose()?,
                ..Default::default()
            };
            let lines = lines
                .iter()
                .map(|spec| {
                    let (id, m) = spec.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!(
                            "--line {spec:?}: write LINE=METHOD, e.g. 1=prorated-outage"
                        )
                    })?;
                    Ok(LineCreditInput {
                        line_id: id.trim().into(),
                        method: method(m.trim())?,
                        inputs: Some(inputs.clone()),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let d = c
                .propose_credit(ProposeCreditRequest {
                    name: dispute_name(&dispute),
                    lines,
                    rounding_mode: r.as_deref().map(rounding).transpose()?.unwrap_or(0),
                    reason,
                    etag: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?;
            output::emit(json, &d, |d| {
                println!("{}", dispute_text(d));
                if let Some(p) = &d.credit_proposal {
                    for calc in &p.calculations {
                        println!("{}", working(calc));
                    }
                    println!("total: {}", show_money(&p.total));
                }
            })
        }
        Command::Approve { dispute, comment } => print(
            c.approve_credit(ApproveCreditRequest {
                name: dispute_name(&dispute),
                comment,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::RejectCredit { dispute, comment } => print(
            c.reject_credit(RejectCreditRequest {
                name: dispute_name(&dispute),
                comment,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Deny { dispute, reason } => print(
            c.deny_dispute(DenyDisputeRequest {
                name: dispute_name(&dispute),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Issue {
            dispute,
            reference,
            amount,
            invoice,
        } => {
            let name = dispute_name(&dispute);
            let amount = match amount {
                Some(a) => Some(money::parse(&a)?),
                None => {
                    c.get_dispute(GetDisputeRequest { name: name.clone() })
                        .await
                        .answer()?
                        .approved_credit
                }
            };
            print(
                c.issue_credit(IssueCreditRequest {
                    name,
                    credit_issue: Some(CreditIssue {
                        credit_reference: reference,
                        amount,
                        invoice_number: invoice,
                        ..Default::default()
                    }),
                    etag: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?,
            )
        }
        Command::Publish { dispute, message } => print(
            c.publish_position(PublishPositionRequest {
                name: dispute_name(&dispute),
                message,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Confirm {
            dispute,
            comment,
            contact,
            delegate,
        } => {
            let name = dispute_name(&dispute);
            let contact = responder(args, &name, contact, delegate).await?;
            print(
                c.confirm_outcome(ConfirmOutcomeRequest {
                    name,
                    comment,
                    contact,
                    etag: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?,
            )
        }
        Command::Reject {
            dispute,
            comment,
            contact,
            delegate,
        } => {
            let name = dispute_name(&dispute);
            let contact = responder(args, &name, contact, delegate).await?;
            print(
                c.reject_outcome(RejectOutcomeRequest {
                    name,
                    comment,
                    contact,
                    etag: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?,
            )
        }
        Command::Close { dispute, reason } => print(
            c.close_dispute(CloseDisputeRequest {
                name: dispute_name(&dispute),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::History { dispute, list } => {
            let (entries, next) = paged!(
                list,
                ListDisputeHistoryEntriesRequest {
                    parent: dispute_name(&dispute),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                },
                c.list_dispute_history_entries,
                dispute_history_entries
            );
            let reply = ListDisputeHistoryEntriesResponse {
                dispute_history_entries: entries,
                next_page_token: next,
            };
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .dispute_history_entries
                    .iter()
                    .map(|e| {
                        vec![
                            show_time(&e.create_time),
                            e.actor.clone(),
                            e.action.clone(),
                            if e.from_state == e.to_state {
                                state(e.to_state)
                            } else {
                                format!("{} -> {}", state(e.from_state), state(e.to_state))
                            },
                            show_money(&e.amount),
                            e.reason.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}{}",
                    table(&["when", "who", "action", "state", "amount", "why"], &rows),
                    output::next_page(&r.next_page_token)
                );
            })
        }
        Command::Upload {
            dispute,
            file,
            document_type,
            media_type,
            description,
        } => {
            use sha2::Digest;
            use upload_dispute_document_request::Payload;
            let content = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let sha256 = hex::encode(sha2::Sha256::digest(&content));
            let display_name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut messages = vec![UploadDisputeDocumentRequest {
                payload: Some(Payload::Upload(DisputeDocumentUpload {
                    parent: dispute_name(&dispute),
                    dispute_document: Some(DisputeDocument {
                        r#type: parse_document_type(&document_type)?,
                        display_name,
                        description,
                        media_type,
                        size_bytes: i64::try_from(content.len())?,
                        sha256,
                        ..Default::default()
                    }),
                    dispute_document_id: String::new(),
                    request_id: rid(),
                })),
            }];
            messages.extend(content.chunks(1024 * 1024).map(|chunk| {
                UploadDisputeDocumentRequest {
                    payload: Some(Payload::Chunk(chunk.to_vec())),
                }
            }));
            let doc = c
                .upload_dispute_document(futures::stream::iter(messages))
                .await
                .answer()?;
            output::emit(json, &doc, |d| {
                println!(
                    "{}  {}  {}  {} bytes  sha256 {}",
                    d.name, d.display_name, d.media_type, d.size_bytes, d.sha256
                )
            })
        }
        Command::Documents { dispute, list } => {
            let (docs, next) = paged!(
                list,
                ListDisputeDocumentsRequest {
                    parent: dispute_name(&dispute),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                },
                c.list_dispute_documents,
                dispute_documents
            );
            let reply = ListDisputeDocumentsResponse {
                dispute_documents: docs,
                next_page_token: next,
            };
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .dispute_documents
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            dispute_document::Type::try_from(d.r#type)
                                .map(|t| short(t.as_str_name(), "TYPE_"))
                                .unwrap_or_default(),
                            d.display_name.clone(),
                            d.media_type.clone(),
                            d.size_bytes.to_string(),
                            d.uploaded_by.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}{}",
                    table(
                        &[
                            "document",
                            "type",
                            "file",
                            "media type",
                            "bytes",
                            "uploaded by"
                        ],
                        &rows
                    ),
                    output::next_page(&r.next_page_token)
                );
            })
        }
        Command::Download { document, out } => {
            use download_dispute_document_response::Payload;
            use sha2::Digest;
            let mut stream = c
                .download_dispute_document(DownloadDisputeDocumentRequest { name: document })
                .await
                .answer()?;
            let mut meta = None;
            let mut content = Vec::new();
            while let Some(m) = stream.message().await.map_err(output::rpc)? {
                match m.payload {
                    Some(Payload::DisputeDocument(d)) => meta = Some(d),
                    Some(Payload::Chunk(c)) => content.extend_from_slice(&c),
                    None => {}
                }
            }
            let meta = meta.ok_or_else(|| anyhow::anyhow!("the download carried no metadata"))?;
            let sha = hex::encode(sha2::Sha256::digest(&content));
            anyhow::ensure!(
                sha == meta.sha256,
                "the content's SHA-256 is {sha}, not the {} stored: not written",
                meta.sha256
            );
            let path = out.unwrap_or_else(|| std::path::PathBuf::from(&meta.display_name));
            std::fs::write(&path, &content)?;
            println!(
                "{}  ({} bytes, sha256 checked)",
                path.display(),
                content.len()
            );
            Ok(())
        }
    }
}
