//! Which chase rules hold on a case: the enabled rules with their
//! expressions parsed once, and each condition kind decided on the case as
//! it is about to be written (nothing here reads storage).

use concierge_common::filter::{self, Expr, Value};
use concierge_proto::concierge::cases::v1::*;

use crate::lifecycle;
use crate::resources::CASES;

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

pub(crate) fn is_open(c: &Case) -> bool {
    lifecycle::is_open(case::State::try_from(c.state).unwrap_or(case::State::Unspecified))
}

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
            Kind::JeopardyWithoutReason => {
                c.state == case::State::Jeopardy as i32
                    && c.jeopardy
                        .as_ref()
                        .is_some_and(|j| j.reason.trim().is_empty() || j.revised_eta_time.is_none())
            }
            Kind::ConstructionUndefined => c
                .construction
                .as_ref()
                .is_some_and(|k| k.required && k.definition.trim().is_empty()),
            Kind::NotPresentedToCarrier => {
                is_order(c)
                    && !c.hand_off_code.is_empty()
                    && !c.presented_to_carrier
                    && !c.withheld_by_dependency
            }
            Kind::SlaAtRisk => c
                .sla
                .as_ref()
                .is_some_and(|s| s.state == SlaState::AtRisk as i32),
            Kind::SlaBreached => c
                .sla
                .as_ref()
                .is_some_and(|s| s.state == SlaState::Breached as i32),
            Kind::ClientDeliverableOverdue => c
                .construction
                .as_ref()
                .is_some_and(|k| k.deliverables.iter().any(|d| d.overdue)),
            Kind::Expression => self.expression.is_some(),
        };
        situation
            && self
                .expression
                .as_ref()
                .is_none_or(|e| e.matches(&|column| case_column(c, column)))
    }
}

fn is_order(c: &Case) -> bool {
    matches!(
        CaseType::try_from(c.r#type).unwrap_or(CaseType::Unspecified),
        CaseType::OrderNew | CaseType::OrderMove | CaseType::OrderDisconnect
    )
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
