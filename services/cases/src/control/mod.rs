//! The control document ("tracker") of an account: every open order, repair
//! and billing request with the fields the weekly review needs, as rows, as
//! CSV and as a print-friendly HTML page, and when the weekly run sends it
//! (a weekday and time in the account's own time zone). Pure: the caller
//! reads the cases and the directory, this writes the document.

pub(crate) mod disputes;
pub(crate) mod issue;
mod schedule;

pub(crate) use issue::CONTROL_DOC_MAIL;
pub(crate) use schedule::{TICK, arm_tick};

use std::collections::HashMap;
use std::sync::LazyLock;

use concierge_common::clock;
use concierge_common::error::{Error, Result};
use concierge_proto::concierge::cases::v1::control_document_row::Category;
use concierge_proto::concierge::cases::v1::*;
use jiff::tz::TimeZone;

use crate::review;

/// The case types a document lists when the settings name none: orders,
/// installations, repairs and billing requests.
pub(crate) fn default_types() -> Vec<i32> {
    [
        CaseType::OrderNew,
        CaseType::OrderMove,
        CaseType::OrderDisconnect,
        CaseType::Installation,
        CaseType::Repair,
        CaseType::Billing,
    ]
    .map(|t| t as i32)
    .to_vec()
}

/// What the rows are made of, read by the caller.
pub(crate) struct Inputs<'a> {
    pub cases: &'a [Case],
    /// Latest public update per case: (text, µs).
    pub updates: &'a HashMap<String, (String, i64)>,
    /// Site display names by site name.
    pub sites: &'a HashMap<String, String>,
    /// Staff display names by staff name.
    pub owners: &'a HashMap<String, String>,
}

fn category(t: i32) -> Category {
    match CaseType::try_from(t).unwrap_or(CaseType::Unspecified) {
        CaseType::OrderNew
        | CaseType::OrderMove
        | CaseType::OrderDisconnect
        | CaseType::Installation => Category::Order,
        CaseType::Repair => Category::Repair,
        CaseType::Billing => Category::Billing,
        _ => Category::Other,
    }
}

/// The status as the client reads it.
fn status(c: &Case) -> &'static str {
    match case::State::try_from(c.state).unwrap_or(case::State::Unspecified) {
        case::State::New => "Received",
        case::State::Open => "Open",
        case::State::InProgress => "In progress",
        case::State::PendingClient => "Waiting on you",
        case::State::PendingCarrier => "With the carrier",
        case::State::Jeopardy => "In jeopardy",
        case::State::Resolved => "Resolved",
        case::State::Closed => "Closed",
        case::State::Cancelled => "Cancelled",
        case::State::Unspecified => "",
    }
}

fn words(name: &str, prefix: &str) -> String {
    let w = name
        .trim_start_matches(prefix)
        .to_lowercase()
        .replace('_', " ");
    let mut chars = w.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => w,
    }
}

fn is_order(t: i32) -> bool {
    category(t) == Category::Order
}

/// The rows of a document, grouped by category (orders, repairs, billing,
/// other), most urgent first within each.
pub(crate) fn rows(inputs: &Inputs<'_>) -> Vec<ControlDocumentRow> {
    let mut rows: Vec<(i64, i64, ControlDocumentRow)> = inputs
        .cases
        .iter()
        .map(|c| {
            let (severity, due) = review::columns(c);
            (
                if severity > 0 { severity } else { i64::MAX },
                due,
                row(c, inputs),
            )
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.2.category, a.0, a.1, &a.2.resource).cmp(&(b.2.category, b.0, b.1, &b.2.resource))
    });
    rows.into_iter().map(|(.., r)| r).collect()
}

fn row(c: &Case, inputs: &Inputs<'_>) -> ControlDocumentRow {
    let jeopardy = c
        .jeopardy
        .clone()
        .filter(|_| c.state == case::State::Jeopardy as i32);
    let eta_time = jeopardy
        .as_ref()
        .and_then(|j| j.revised_eta_time)
        .or(c.committed_time);
    let construction = c.construction.clone().unwrap_or_default();
    let outstanding: Vec<&ConstructionDeliverable> = construction
        .deliverables
        .iter()
        .filter(|d| {
            !matches!(
                construction_deliverable::State::try_from(d.state),
                Ok(construction_deliverable::State::Complete
                    | construction_deliverable::State::Waived)
            )
        })
        .collect();
    let team = if c.performing_team.is_empty() {
        "Performing team".to_string()
    } else {
        c.performing_team.clone()
    };
    let deliverable = |d: &ConstructionDeliverable| {
        let kind = words(
            construction_deliverable::Kind::try_from(d.kind)
                .unwrap_or_default()
                .as_str_name(),
            "KIND_",
        );
        let what = if d.description.is_empty() {
            kind
        } else {
            format!("{kind}: {}", d.description)
        };
        let due = d
            .due_time
            .as_ref()
            .and_then(clock::from_proto)
            .map(|t| format!(", due {}", t.strftime("%Y-%m-%d")))
            .unwrap_or_default();
        let late = if d.overdue { " (overdue)" } else { "" };
        format!("{what}{due}{late}")
    };
    let next_action = if review::jeopardy_without_reason(c) {
        format!("{team}: give the jeopardy reason and a revised ETA")
    } else if c.state == case::State::PendingClient as i32 {
        if c.state_reason.is_empty() {
            "Client: your input".to_string()
        } else {
            format!("Client: {}", c.state_reason)
        }
    } else if let Some(d) = outstanding.first() {
        format!("Client: {}", deliverable(d))
    } else if review::construction_undefined(c) {
        format!("{team}: define the construction")
    } else if review::not_presented_to_carrier(c) {
        format!("{team}: place the order with the carrier")
    } else if c.state == case::State::PendingCarrier as i32 {
        "Carrier: complete the order".to_string()
    } else {
        format!("{team}: carry on")
    };
    let mut missing = Vec::new();
    if is_order(c.r#type) {
        if c.requested_time.is_none() {
            missing.push("requested_time".to_string());
        }
        if eta_time.is_none() {
            missing.push("eta_time".to_string());
        }
    }
    if jeopardy
        .as_ref()
        .is_some_and(|j| j.reason.trim().is_empty())
    {
        missing.push("jeopardy_reason".to_string());
    }
    if review::construction_undefined(c) {
        missing.push("construction_definition".to_string());
    }
    let update = inputs.updates.get(&c.name);
    ControlDocumentRow {
        category: category(c.r#type) as i32,
        resource: c.name.clone(),
        case_type: c.r#type,
        title: c.title.clone(),
        site: c.site.clone(),
        site_display_name: inputs.sites.get(&c.site).cloned().unwrap_or_default(),
        priority: c.priority,
        status: status(c).to_string(),
        case_state: c.state,
        hand_off_code: c.hand_off_code.clone(),
        presented_to_carrier: c.presented_to_carrier,
        carrier_reference: c.carrier_reference.clone(),
        open_time: c.create_time,
        requested_time: c.requested_time,
        eta_time,
        jeopardy_reason: jeopardy.map(|j| j.reason).unwrap_or_default(),
        construction_definition: if construction.required {
            construction.definition.clone()
        } else {
            String::new()
        },
        client_deliverables: outstanding.iter().map(|d| deliverable(d)).collect(),
        sla_state: c.sla.as_ref().map_or(0, |s| s.state),
        last_public_update: update.map(|u| u.0.clone()).unwrap_or_default(),
        last_public_update_time: update.and_then(|u| clock::micros_to_proto(u.1)),
        owner_display_name: inputs
            .owners
            .get(&c.owner)
            .cloned()
            .unwrap_or_else(|| c.owner.clone()),
        next_action,
        missing_fields: missing,
    }
}

/// A date as the client reads it, in the account's zone.
fn day(t: &Option<prost_types::Timestamp>, tz: &TimeZone) -> String {
    t.as_ref()
        .and_then(clock::from_proto)
        .map(|t| tz.to_datetime(t).strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn moment(t: &Option<prost_types::Timestamp>, tz: &TimeZone) -> String {
    t.as_ref()
        .and_then(clock::from_proto)
        .map(|t| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn priority(p: i32) -> String {
    words(
        CasePriority::try_from(p).unwrap_or_default().as_str_name(),
        "CASE_PRIORITY_",
    )
}

fn category_label(c: i32, lang: &str) -> &'static str {
    let tr = lang == "tr";
    match Category::try_from(c).unwrap_or(Category::Other) {
        Category::Order => {
            if tr {
                "Siparişler"
            } else {
                "Orders"
            }
        }
        Category::Repair => {
            if tr {
                "Arızalar"
            } else {
                "Repairs"
            }
        }
        Category::Billing => {
            if tr {
                "Fatura talepleri"
            } else {
                "Billing requests"
            }
        }
        _ => {
            if tr {
                "Diğer"
            } else {
                "Other requests"
            }
        }
    }
}

/// The document as CSV: a header row, then one row per request, dates in
/// the account's zone.
pub(crate) fn csv(rows: &[ControlDocumentRow], tz: &TimeZone) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "category",
        "request",
        "type",
        "title",
        "site",
        "priority",
        "status",
        "hand_off_code",
        "presented_to_carrier",
        "carrier_reference",
        "opened",
        "requested",
        "eta",
        "jeopardy_reason",
        "construction_definition",
        "client_deliverables",
        "sla_state",
        "latest_update",
        "latest_update_time",
        "owner",
        "next_action",
        "missing_fields",
    ])
    .map_err(Error::internal)?;
    for r in rows {
        w.write_record([
            words(
                Category::try_from(r.category)
                    .unwrap_or_default()
                    .as_str_name(),
                "CATEGORY_",
            ),
            r.resource.clone(),
            words(
                CaseType::try_from(r.case_type)
                    .unwrap_or_default()
                    .as_str_name(),
                "CASE_TYPE_",
            ),
            r.title.clone(),
            if r.site_display_name.is_empty() {
                r.site.clone()
            } else {
                r.site_display_name.clone()
            },
            priority(r.priority),
            r.status.clone(),
            r.hand_off_code.clone(),
            if r.hand_off_code.is_empty() {
                String::new()
            } else {
                r.presented_to_carrier.to_string()
            },
            r.carrier_reference.clone(),
            day(&r.open_time, tz),
            day(&r.requested_time, tz),
            day(&r.eta_time, tz),
            r.jeopardy_reason.clone(),
            r.construction_definition.clone(),
            r.client_deliverables.join("; "),
            words(
                SlaState::try_from(r.sla_state)
                    .unwrap_or_default()
                    .as_str_name(),
                "SLA_STATE_",
            ),
            r.last_public_update.clone(),
            moment(&r.last_public_update_time, tz),
            r.owner_display_name.clone(),
            r.next_action.clone(),
            r.missing_fields.join(" "),
        ])
        .map_err(Error::internal)?;
    }
    let bytes = w.into_inner().map_err(Error::internal)?;
    String::from_utf8(bytes).map_err(Error::internal)
}

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // The file name ends in .html: every value is HTML-escaped.
    env.add_template(
        "control_document.html",
        include_str!("../../templates/control_document.html"),
    )
    .expect("the control document template is checked by its unit test");
    env
});

fn labels(lang: &str) -> HashMap<&'static str, &'static str> {
    let en = [
        ("title", "Open requests"),
        ("as_of", "As of"),
        ("for", "for"),
        ("open_requests", "open requests"),
        ("incomplete", "with details still missing"),
        ("nothing_open", "Nothing is open."),
        ("request", "Request"),
        ("site", "Site"),
        ("status", "Status"),
        ("opened", "Opened"),
        ("requested", "Requested"),
        ("eta", "ETA"),
        ("latest_update", "Latest update"),
        ("next_action", "Next action"),
        ("hand_off", "Hand-off"),
        ("construction", "Construction"),
        ("missing", "Missing"),
    ];
    let tr = [
        ("title", "Açık talepler"),
        ("as_of", "Tarih:"),
        ("for", "alıcı:"),
        ("open_requests", "açık talep"),
        ("incomplete", "eksik bilgili"),
        ("nothing_open", "Açık talep yok."),
        ("request", "Talep"),
        ("site", "Lokasyon"),
        ("status", "Durum"),
        ("opened", "Açılış"),
        ("requested", "İstenen tarih"),
        ("eta", "Tahmini tarih"),
        ("latest_update", "Son bilgi"),
        ("next_action", "Sıradaki adım"),
        ("hand_off", "Devir kodu"),
        ("construction", "İnşaat"),
        ("missing", "Eksik"),
    ];
    if lang == "tr" { tr } else { en }.into_iter().collect()
}

/// The document as a self-contained, print-friendly HTML page in `lang`
/// (English or Turkish), dates in the account's zone.
pub(crate) fn html(
    doc: &ControlDocument,
    tz: &TimeZone,
    lang: &str,
    delegate_name: &str,
) -> Result<String> {
    let mut groups: Vec<(i32, Vec<minijinja::Value>)> = Vec::new();
    for r in &doc.rows {
        let value = minijinja::context! {
            id => r.resource,
            title => r.title,
            priority => priority(r.priority),
            hand_off_code => r.hand_off_code,
            carrier_reference => r.carrier_reference,
            site => if r.site_display_name.is_empty() { r.site.clone() } else { r.site_display_name.clone() },
            status => r.status,
            jeopardy_reason => r.jeopardy_reason,
            construction => r.construction_definition,
            deliverables => r.client_deliverables,
            opened => day(&r.open_time, tz),
            requested => day(&r.requested_time, tz),
            eta => day(&r.eta_time, tz),
            update => r.last_public_update,
            update_time => moment(&r.last_public_update_time, tz),
            next_action => r.next_action,
            missing => r.missing_fields.join(", "),
        };
        match groups.last_mut() {
            Some((c, rows)) if *c == r.category => rows.push(value),
            _ => groups.push((r.category, vec![value])),
        }
    }
    let groups: Vec<minijinja::Value> = groups
        .into_iter()
        .map(|(c, rows)| minijinja::context! { label => category_label(c, lang), rows })
        .collect();
    let template = TEMPLATES
        .get_template("control_document.html")
        .map_err(Error::internal)?;
    template
        .render(minijinja::context! {
            lang,
            t => labels(lang),
            account => doc.account_display_name,
            as_of => moment(&doc.as_of_time, tz),
            mrc => doc.account_mrc.as_ref().map(concierge_common::money::format).unwrap_or_default(),
            delegate => delegate_name,
            row_count => doc.row_count,
            incomplete => doc.incomplete_row_count,
            groups,
        })
        .map_err(Error::internal)
}

/// "2026-W49": the ISO week of a local date.
pub(crate) fn week_key(date: jiff::civil::Date) -> String {
    let w = date.iso_week_date();
    format!("{:04}-W{:02}", w.year(), w.week())
}

/// The language a contact reads: English or Turkish.
pub(crate) fn language(tag: &str) -> &'static str {
    concierge_common::mail::language(tag)
}

/// An account's zone, or UTC when it has none that reads.
pub(crate) fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jp_order() -> Case {
        Case {
            name: "cases/c1".into(),
            title: "Fibre <to> \"HQ\" & more".into(),
            r#type: CaseType::OrderNew as i32,
            priority: CasePriority::High as i32,
            state: case::State::Jeopardy as i32,
            site: "accounts/acme/sites/hq".into(),
            performing_team: "provisioning".into(),
            hand_off_code: "NR".into(),
            jeopardy: Some(Jeopardy {
                reason: String::new(),
                ..Default::default()
            }),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rows_say_what_is_missing_and_the_page_escapes_what_a_client_typed() {
        let cases = vec![
            jp_order(),
            Case {
                name: "cases/c2".into(),
                title: "Line down".into(),
                r#type: CaseType::Repair as i32,
                state: case::State::InProgress as i32,
                ..Default::default()
            },
        ];
        let sites = HashMap::from([("accounts/acme/sites/hq".to_string(), "HQ".to_string())]);
        let rows = rows(&Inputs {
            cases: &cases,
            updates: &HashMap::new(),
            sites: &sites,
            owners: &HashMap::new(),
        });
        assert_eq!(rows[0].category(), Category::Order);
        assert_eq!(
            rows[0].missing_fields,
            vec!["requested_time", "eta_time", "jeopardy_reason"]
        );
        assert_eq!(
            rows[0].next_action,
            "provisioning: give the jeopardy reason and a revised ETA"
        );
        assert_eq!(rows[1].category(), Category::Repair);
        let doc = ControlDocument {
            account_display_name: "Acme & Sons".into(),
            row_count: 2,
            incomplete_row_count: 1,
            rows,
            ..Default::default()
        };
        let tz = zone("America/Chicago");
        let page = html(&doc, &tz, "en", "Deniz").unwrap();
        assert!(page.contains("Acme &amp; Sons"), "{page}");
        assert!(page.contains("Fibre &lt;to&gt; &quot;HQ&quot; &amp; more"));
        assert!(!page.contains("<to>"));
        assert!(page.contains("<h2>Orders</h2>") && page.contains("<h2>Repairs</h2>"));
        assert!(page.contains("@media print"));
        let turkish = html(&doc, &tz, "tr", "Deniz").unwrap();
        assert!(turkish.contains("<h2>Siparişler</h2>"), "{turkish}");
        let text = csv(&doc.rows, &tz).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(&records[0][3], "Fibre <to> \"HQ\" & more");
        assert_eq!(&records[0][4], "HQ");
        assert_eq!(&records[0][21], "requested_time eta_time jeopardy_reason");
    }

    #[test]
    fn weeks_are_iso_weeks_of_the_local_date() {
        assert_eq!(week_key(jiff::civil::date(2026, 11, 30)), "2026-W49");
        assert_eq!(week_key(jiff::civil::date(2027, 1, 1)), "2026-W53");
        assert_eq!(language("tr-TR"), "tr");
        assert_eq!(language("de"), "en");
    }
}
