//! Which chase rules hold on a case: the enabled rules with their
//! expressions parsed once, and each condition kind decided on the case as
//! it is about to be written (nothing here reads storage).

use concierge_common::filter::{self, Expr, Value};
use concierge_proto::concierge::cases::v1::*;

use crate::resources::CASES;
use crate::review;

/// An enabled rule, its expression parsed.
pub(crate) struct LiveRule {
    pub(crate) rule: ChaseRule,
    expression: Option<Expr>,
}

/// The enabled rules, as one change (or one snapshot) sees them.
#[derive(Default)]
pub(crate) struct LiveRules(Vec<LiveRule>);

impl LiveRules {
    /// The enabled ones among `rules`. A rule's expression was checked when
    /// it was written; one that no longer parses (a case field renamed
    /// since) holds nowhere rather than everywhere, and says so.
    pub(crate) fn new(rules: impl IntoIterator<Item = ChaseRule>) -> Self {
        let live = rules
            .into_iter()
            .filter(|r| r.enabled)
            .filter_map(|rule| {
                let text = rule
                    .condition
                    .as_ref()
                    .map(|c| c.expression.as_str())
                    .unwrap_or_default();
                match filter::parse(text, CASES.fields) {
                    Ok(expression) => Some(LiveRule { rule, expression }),
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = %e, "chase rule expression no longer parses; the rule holds nowhere");
                        None
                    }
                }
            })
            .collect();
        Self(live)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&LiveRule> {
        self.0.iter().find(|r| r.rule.name == name)
    }

    /// The names of the rules whose condition holds on `c`, in name order;
    /// none on a case that is no longer open.
    pub(crate) fn holding(&self, c: &Case) -> Vec<String> {
        if !is_open(c) {
            return Vec::new();
        }
        let mut names: Vec<String> = self
            .0
            .iter()
            .filter(|r| r.holds(c))
            .map(|r| r.rule.name.clone())
            .collect();
        names.sort();
        names
    }
}

pub(crate) use crate::review::is_open;

impl LiveRule {
    /// Whether the rule's condition holds on `c`: its kind's situation, and
    /// its expression when it has one.
    pub(crate) fn holds(&self, c: &Case) -> bool {
        let Some(condition) = &self.rule.condition else {
            return false;
        };
        use chase_condition::Kind;
        let situation = match Kind::try_from(condition.kind).unwrap_or(Kind::Unspecified) {
            Kind::Unspecified => false,
            Kind::JeopardyWithoutReason => review::jeopardy_without_reason(c),
            Kind::ConstructionUndefined => review::construction_undefined(c),
            Kind::NotPresentedToCarrier => review::not_presented_to_carrier(c),
            Kind::SlaAtRisk => review::sla_state(c) == SlaState::AtRisk,
            Kind::SlaBreached => review::sla_state(c) == SlaState::Breached,
            Kind::ClientDeliverableOverdue => review::overdue_deliverables(c).next().is_some(),
            Kind::Expression => self.expression.is_some(),
        };
        situation
            && self
                .expression
                .as_ref()
                .is_none_or(|e| e.matches(&|column| case_column(c, column)))
    }
}

/// A case's filter column as ListCases reads it from the row.
fn case_column(c: &Case, column: &str) -> Option<Value> {
    use concierge_common::crud::Resource;
    match column {
        "account" => Some(Value::Text(c.account.clone())),
        "create_time" => Some(crate::resources::time(&c.create_time)),
        "update_time" => Some(crate::resources::time(&c.update_time)),
        _ => <Case as Resource<crate::Rules>>::columns(c)
            .into_iter()
            .find(|(name, _)| *name == column)
            .map(|(_, v)| v),
    }
}

/// Fills a step's template: every placeholder was checked when the rule was
/// written, so one this does not know stays as written.
pub(crate) fn render(
    template: &str,
    c: &Case,
    rule: &ChaseRule,
    run: &ChaseRun,
    step: i32,
) -> String {
    let since = run
        .start_time
        .as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let missing = if run.missing_description.is_empty() {
        "what this rule asks for".to_string()
    } else {
        run.missing_description.clone()
    };
    let team = if c.performing_team.is_empty() {
        "performing team".to_string()
    } else {
        c.performing_team.clone()
    };
    [
        ("{{case.name}}", c.name.clone()),
        ("{{case.title}}", c.title.clone()),
        ("{{case.performing_team}}", team),
        ("{{missing}}", missing),
        ("{{step}}", step.to_string()),
        ("{{rule}}", rule.display_name.clone()),
        ("{{since}}", since),
    ]
    .iter()
    .fold(template.to_string(), |text, (placeholder, value)| {
        text.replace(placeholder, value)
    })
}
