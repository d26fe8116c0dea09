//! Which SLA policy a case gets. Policies match on case type, priority and
//! account tier (an empty list matches everything); when several match, the
//! lowest `precedence` wins, then the most specific, then the oldest. The
//! case keeps the revision it was given, so later edits never move its
//! running deadlines.

use concierge_proto::concierge::cases::v1::{CasePriority, CaseType, SlaPolicy, case::State};

/// What a policy is matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    pub case_type: CaseType,
    pub priority: CasePriority,
    /// As the customers service spells it, e.g. "TIER_ENTERPRISE".
    pub tier: String,
}

fn matches(policy: &SlaPolicy, facts: &CaseFacts) -> bool {
    policy.delete_time.is_none()
        && (policy.case_types.is_empty() || policy.case_types.contains(&(facts.case_type as i32)))
        && (policy.priorities.is_empty() || policy.priorities.contains(&(facts.priority as i32)))
        && (policy.account_tiers.is_empty()
            || policy.account_tiers.iter().any(|t| t == &facts.tier))
}

fn specificity(policy: &SlaPolicy) -> usize {
    [
        !policy.case_types.is_empty(),
        !policy.priorities.is_empty(),
        !policy.account_tiers.is_empty(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count()
}

/// The policy a new case with `facts` gets, if any matches.
pub fn choose<'a>(policies: &'a [SlaPolicy], facts: &CaseFacts) -> Option<&'a SlaPolicy> {
    policies
        .iter()
        .filter(|p| matches(p, facts))
        .min_by(|a, b| {
            let created = |p: &SlaPolicy| p.create_time.map(|t| (t.seconds, t.nanos));
            a.precedence
                .cmp(&b.precedence)
                .then(specificity(b).cmp(&specificity(a)))
                .then(created(a).cmp(&created(b)))
                .then(a.name.cmp(&b.name))
        })
}

/// The states in which the policy's client clocks pause.
pub fn pause_states(policy: &SlaPolicy) -> Vec<State> {
    let states: Vec<State> = policy
        .pause_states
        .iter()
        .filter_map(|s| State::try_from(*s).ok())
        .filter(|s| *s != State::Unspecified)
        .collect();
    if states.is_empty() {
        vec![State::PendingClient]
    } else {
        states
    }
}

/// The share of a target after which a clock is at risk, in percent.
pub fn at_risk_percent(policy: &SlaPolicy) -> u8 {
    match policy.at_risk_percent {
        1..=99 => policy.at_risk_percent as u8,
        _ => 80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        name: &str,
        precedence: i32,
        types: &[CaseType],
        priorities: &[CasePriority],
        tiers: &[&str],
        created: i64,
    ) -> SlaPolicy {
        SlaPolicy {
            name: format!("slaPolicies/{name}"),
            precedence,
            case_types: types.iter().map(|t| *t as i32).collect(),
            priorities: priorities.iter().map(|p| *p as i32).collect(),
            account_tiers: tiers.iter().map(|t| t.to_string()).collect(),
            create_time: Some(prost_types::Timestamp {
                seconds: created,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    fn facts(t: CaseType, p: CasePriority, tier: &str) -> CaseFacts {
        CaseFacts {
            case_type: t,
            priority: p,
            tier: tier.into(),
        }
    }

    #[test]
    fn the_most_specific_matching_policy_wins_within_a_precedence() {
        let policies = vec![
            policy("default", 100, &[], &[], &[], 1),
            policy("repairs", 100, &[CaseType::Repair], &[], &[], 2),
            policy(
                "enterprise-p1-repairs",
                100,
                &[CaseType::Repair],
                &[CasePriority::Critical],
                &["TIER_ENTERPRISE"],
                3,
            ),
            policy(
                "orders",
                100,
                &[CaseType::OrderNew, CaseType::OrderMove],
                &[],
                &[],
                4,
            ),
        ];
        let pick = |f: CaseFacts| choose(&policies, &f).map(|p| p.name.as_str());
        assert_eq!(
            pick(facts(
                CaseType::Repair,
                CasePriority::Critical,
                "TIER_ENTERPRISE"
            )),
            Some("slaPolicies/enterprise-p1-repairs")
        );
        assert_eq!(
            pick(facts(
                CaseType::Repair,
                CasePriority::Critical,
                "TIER_STANDARD"
            )),
            Some("slaPolicies/repairs")
        );
        assert_eq!(
            pick(facts(
                CaseType::OrderMove,
                CasePriority::Low,
                "TIER_STANDARD"
            )),
            Some("slaPolicies/orders")
        );
        assert_eq!(
            pick(facts(
                CaseType::Training,
                CasePriority::Low,
                "TIER_STANDARD"
            )),
            Some("slaPolicies/default")
        );
    }

    #[test]
    fn precedence_beats_specificity_age_breaks_ties_and_deleted_policies_never_match() {
        let mut policies = vec![
            policy("catch-all-first", 1, &[], &[], &[], 5),
            policy("specific", 10, &[CaseType::Billing], &[], &[], 1),
            policy("twin-old", 1, &[], &[], &[], 2),
        ];
        let f = facts(CaseType::Billing, CasePriority::Medium, "TIER_PREMIUM");
        assert_eq!(choose(&policies, &f).unwrap().name, "slaPolicies/twin-old");
        policies[2].delete_time = Some(prost_types::Timestamp {
            seconds: 9,
            nanos: 0,
        });
        assert_eq!(
            choose(&policies, &f).unwrap().name,
            "slaPolicies/catch-all-first"
        );
        assert!(choose(&[], &f).is_none());
    }

    #[test]
    fn defaults_pause_on_the_client_and_warn_at_eighty_percent() {
        let mut p = SlaPolicy::default();
        assert_eq!(pause_states(&p), vec![State::PendingClient]);
        assert_eq!(at_risk_percent(&p), 80);
        p.pause_states = vec![State::PendingClient as i32, State::PendingCarrier as i32];
        p.at_risk_percent = 90;
        assert_eq!(
            pause_states(&p),
            vec![State::PendingClient, State::PendingCarrier]
        );
        assert_eq!(at_risk_percent(&p), 90);
    }
}
