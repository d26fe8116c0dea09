//! Repair triage: from a repair case, its site's inventory (as the customers
//! service holds it) and the other open cases at the site, one answer with
//! the impacted service, the hardware in place, monitoring, and the re-route
//! and relief options. Pure: the caller reads, this decides.

use std::collections::BTreeSet;

use concierge_proto::concierge::cases::v1::inventory_item_snapshot::{Kind, Role, State};
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::customers::{InventoryItem, Site};

/// The triage of `c` at `site` with its `inventory`, `others` being the other
/// open cases at the site.
pub(crate) fn triage(
    c: &Case,
    site: &Site,
    inventory: &[InventoryItem],
    others: &[Case],
) -> RepairTriage {
    let impacted: BTreeSet<&str> = c.inventory_items.iter().map(String::as_str).collect();
    let mut items: Vec<InventoryItemSnapshot> = inventory
        .iter()
        .map(|i| InventoryItemSnapshot {
            name: i.name.clone(),
            kind: i.kind,
            product: i.product.clone(),
            role: i.role,
            carrier: i.carrier.clone(),
            circuit_id: i.circuit_id.clone(),
            bandwidth_kbps: i.bandwidth_kbps,
            monitored: i.monitored,
            monitoring_tool: i.monitoring_tool.clone(),
            mrc: i.mrc.clone(),
            hardware_model: i.hardware_model.clone(),
            state: i.state,
            impacted: impacted.contains(i.name.as_str()),
            open_cases: others
                .iter()
                .filter(|o| o.name != c.name && o.inventory_items.contains(&i.name))
                .map(|o| o.name.clone())
                .collect(),
        })
        .collect();
    // Impacted first, then by role (primary, secondary, backup), then name.
    items.sort_by_key(|i| (!i.impacted, role_rank(i.role), i.name.clone()));

    let hardware: Vec<&InventoryItemSnapshot> = items
        .iter()
        .filter(|i| i.kind == Kind::Hardware as i32)
        .collect();
    let impacted_items: Vec<&InventoryItemSnapshot> = items.iter().filter(|i| i.impacted).collect();
    let monitored: Vec<&InventoryItemSnapshot> = items.iter().filter(|i| i.monitored).collect();
    let tools: BTreeSet<String> = monitored
        .iter()
        .map(|i| i.monitoring_tool.clone())
        .filter(|t| !t.is_empty())
        .collect();
    let impacted_monitored = impacted_items.iter().any(|i| i.monitored);
    let obligations = if monitored.is_empty() {
        "Nothing at the site is monitored: the client's report is the only record of the outage start.".to_string()
    } else if impacted_monitored {
        format!(
            "An impacted item is monitored ({}): its alarm gives the outage start, and a proactive ticket was due when it fired.",
            tools.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        "No impacted item is monitored: the client's report gives the outage start.".to_string()
    };

    let via = hardware
        .iter()
        .find(|h| h.state == State::Active as i32)
        .map(|h| format!(" on the {}", label(h)))
        .unwrap_or_default();
    let mut reroutes = Vec::new();
    for from in impacted_items
        .iter()
        .filter(|i| i.kind != Kind::Hardware as i32)
    {
        for to in items.iter().filter(|t| {
            t.name != from.name
                && t.kind == from.kind
                && (t.role == Role::Secondary as i32 || t.role == Role::Backup as i32)
                && role_rank(t.role) > role_rank(from.role)
        }) {
            let unavailable_reason = if to.impacted {
                "it is impacted too".to_string()
            } else if to.state != State::Active as i32 {
                format!(
                    "it is {}",
                    State::try_from(to.state)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("STATE_")
                        .to_lowercase()
                        .replace('_', " ")
                )
            } else {
                String::new()
            };
            reroutes.push(RerouteOption {
                from_item: from.name.clone(),
                to_item: to.name.clone(),
                to_role: to.role,
                to_bandwidth_kbps: to.bandwidth_kbps,
                description: format!(
                    "fail over from the {} to the {}{via}",
                    label(from),
                    label(to)
                ),
                available: unavailable_reason.is_empty(),
                unavailable_reason,
            });
        }
    }
    reroutes.sort_by_key(|r| (!r.available, role_rank(r.to_role)));

    let mut relief: Vec<ReliefOption> = reroutes
        .iter()
        .filter(|r| r.available)
        .map(|r| ReliefOption {
            source: relief_option::Source::ExistingNetwork as i32,
            description: capitalised(&r.description),
        })
        .collect();
    for from in impacted_items
        .iter()
        .filter(|i| i.kind != Kind::Hardware as i32)
    {
        if reroutes
            .iter()
            .any(|r| r.available && r.from_item == from.name)
        {
            continue;
        }
        let description = if from.kind == Kind::Voice as i32 {
            format!(
                "Forward the numbers of the {} to another site or to mobiles until it is restored",
                label(from)
            )
        } else {
            format!(
                "Ship a 4G/5G router overnight to carry the traffic of the {} until it is restored",
                label(from)
            )
        };
        relief.push(ReliefOption {
            source: relief_option::Source::NewDeployment as i32,
            description,
        });
    }

    RepairTriage {
        case: c.name.clone(),
        site: Some(SiteSnapshot {
            name: site.name.clone(),
            display_name: site.display_name.clone(),
            address: site.address.clone(),
            time_zone: (!site.time_zone.is_empty()).then(|| concierge_proto::types::TimeZone {
                id: site.time_zone.clone(),
            }),
        }),
        impacted_items: impacted_items.iter().map(|i| i.name.clone()).collect(),
        hardware_items: hardware.iter().map(|i| i.name.clone()).collect(),
        monitoring: Some(MonitoringSummary {
            impacted_monitored,
            tools: tools.into_iter().collect(),
            monitored_items: monitored.iter().map(|i| i.name.clone()).collect(),
            obligations,
        }),
        reroute_options: reroutes,
        relief_options: relief,
        inventory: items,
        note: String::new(),
        generate_time: None,
    }
}

fn role_rank(role: i32) -> u8 {
    match Role::try_from(role).unwrap_or_default() {
        Role::Primary => 0,
        Role::Secondary => 1,
        Role::Backup => 2,
        Role::Unspecified => 3,
    }
}

/// "secondary Dedicated Internet 100 Mb (Lumen, 100 Mb/s)".
fn label(i: &InventoryItemSnapshot) -> String {
    let role = match Role::try_from(i.role).unwrap_or_default() {
        Role::Unspecified => String::new(),
        r => format!(
            "{} ",
            r.as_str_name().trim_start_matches("ROLE_").to_lowercase()
        ),
    };
    let mut details = Vec::new();
    if !i.carrier.is_empty() {
        details.push(i.carrier.clone());
    }
    if !i.hardware_model.is_empty() {
        details.push(i.hardware_model.clone());
    }
    if i.bandwidth_kbps > 0 {
        details.push(bandwidth(i.bandwidth_kbps));
    }
    let details = if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join(", "))
    };
    format!("{role}{}{details}", i.product)
}

fn bandwidth(kbps: i64) -> String {
    if kbps >= 1_000_000 && kbps % 1_000_000 == 0 {
        format!("{} Gb/s", kbps / 1_000_000)
    } else if kbps >= 1_000 && kbps % 1_000 == 0 {
        format!("{} Mb/s", kbps / 1_000)
    } else {
        format!("{kbps} kb/s")
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The triage as an internal note a person reads on the case.
pub(crate) fn as_note(t: &RepairTriage) -> String {
    let mut out = String::from("Repair triage\n");
    let site = t
        .site
        .as_ref()
        .map(|s| s.display_name.as_str())
        .unwrap_or("");
    out.push_str(&format!("Site: {site}\n"));
    let line = |names: &[String]| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    out.push_str(&format!("Impacted: {}\n", line(&t.impacted_items)));
    out.push_str(&format!("Hardware: {}\n", line(&t.hardware_items)));
    if let Some(m) = &t.monitoring {
        out.push_str(&format!("Monitoring: {}\n", m.obligations));
    }
    out.push_str("Re-route options:\n");
    if t.reroute_options.is_empty() {
        out.push_str("- none at the site\n");
    }
    for r in &t.reroute_options {
        if r.available {
            out.push_str(&format!("- {}\n", r.description));
        } else {
            out.push_str(&format!(
                "- {} (not now: {})\n",
                r.description, r.unavailable_reason
            ));
        }
    }
    out.push_str("Relief to offer:\n");
    for r in &t.relief_options {
        out.push_str(&format!("- {}\n", r.description));
    }
    out
}
