//! The dispute life cycle: the transition table of DisputesService's
//! contract, one row per custom method, decided here and nowhere else.

use concierge_common::error::{Error, Reason, Result};
use concierge_proto::disputes::dispute::State;

/// A custom method that moves (or records an action on) a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Submit,
    StartVetting,
    RequestInformation,
    ProvideInformation,
    ProposeCredit,
    ApproveCredit,
    RejectCredit,
    Deny,
    IssueCredit,
    PublishPosition,
    ConfirmOutcome,
    RejectOutcome,
    Close,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::Submit,
        Action::StartVetting,
        Action::RequestInformation,
        Action::ProvideInformation,
        Action::ProposeCredit,
        Action::ApproveCredit,
        Action::RejectCredit,
        Action::Deny,
        Action::IssueCredit,
        Action::PublishPosition,
        Action::ConfirmOutcome,
        Action::RejectOutcome,
        Action::Close,
    ];

    /// The gRPC method, as the history records it.
    pub fn method(self) -> &'static str {
        match self {
            Action::Submit => "SubmitDispute",
            Action::StartVetting => "StartDisputeVetting",
            Action::RequestInformation => "RequestDisputeInformation",
            Action::ProvideInformation => "ProvideDisputeInformation",
            Action::ProposeCredit => "ProposeCredit",
            Action::ApproveCredit => "ApproveCredit",
            Action::RejectCredit => "RejectCredit",
            Action::Deny => "DenyDispute",
            Action::IssueCredit => "IssueCredit",
            Action::PublishPosition => "PublishPosition",
            Action::ConfirmOutcome => "ConfirmOutcome",
            Action::RejectOutcome => "RejectOutcome",
            Action::Close => "CloseDispute",
        }
    }

    /// The states the action applies from, and whether it needs a proposed
    /// credit waiting for a manager (`Some(true)`), needs none
    /// (`Some(false)`), or does not care (`None`).
    fn applies(self) -> (&'static [State], Option<bool>) {
        use State::*;
        match self {
            Action::Submit => (&[Draft], None),
            Action::StartVetting => (&[Submitted], None),
            Action::RequestInformation => (&[Vetting], Some(false)),
            Action::ProvideInformation => (&[InformationRequested], None),
            Action::ProposeCredit => (&[Vetting], Some(false)),
            Action::ApproveCredit | Action::RejectCredit => (&[Vetting], Some(true)),
            Action::Deny => (&[Vetting], Some(false)),
            Action::IssueCredit => (&[Approved, PartiallyApproved], None),
            Action::PublishPosition => (
                &[
                    Submitted,
                    Vetting,
                    InformationRequested,
                    Approved,
                    PartiallyApproved,
                    Denied,
                    CreditIssued,
                    ClientConfirmed,
                ],
                None,
            ),
            Action::ConfirmOutcome => (&[CreditIssued, Denied], None),
            Action::RejectOutcome => (&[Approved, PartiallyApproved, CreditIssued, Denied], None),
            Action::Close => (&[ClientConfirmed], None),
        }
    }
}

/// Where `action` takes a dispute in `from` (with a credit waiting for a
/// manager when `pending`). `credit_is_whole` says, for the actions that
/// decide a credit, whether it equals the total disputed; `needs_approval`
/// whether a proposal is above the threshold. Anything not in the table is
/// FAILED_PRECONDITION naming the dispute.
pub fn next(
    dispute: &str,
    action: Action,
    from: State,
    pending: bool,
    credit: Credit,
) -> Result<State> {
    let (states, wants_pending) = action.applies();
    if !states.contains(&from) {
        let allowed: Vec<&str> = states.iter().map(|s| s.as_str_name()).collect();
        return Err(Error::FailedPrecondition {
            reason: Reason::IllegalTransition,
            subject: dispute.to_string(),
            description: format!(
                "{dispute} is {}; {} applies only from {}",
                from.as_str_name(),
                action.method(),
                allowed.join(", ")
            ),
        });
    }
    match (wants_pending, pending) {
        (Some(true), false) => {
            return Err(Error::FailedPrecondition {
                reason: Reason::IllegalTransition,
                subject: dispute.to_string(),
                description: format!(
                    "{dispute} has no proposed credit waiting for a manager; {} applies only to one",
                    action.method()
                ),
            });
        }
        (Some(false), true) => {
            return Err(Error::FailedPrecondition {
                reason: Reason::ApprovalPending,
                subject: dispute.to_string(),
                description: format!(
                    "a proposed credit on {dispute} waits for a manager: approve or reject it before {}",
                    action.method()
                ),
            });
        }
        _ => {}
    }
    let decided = if credit.whole {
        State::Approved
    } else {
        State::PartiallyApproved
    };
    Ok(match action {
        Action::Submit => State::Submitted,
        Action::StartVetting | Action::ProvideInformation => State::Vetting,
        Action::RequestInformation => State::InformationRequested,
        Action::ProposeCredit if credit.needs_approval => State::Vetting,
        Action::ProposeCredit | Action::ApproveCredit => decided,
        Action::RejectCredit | Action::RejectOutcome => State::Vetting,
        Action::Deny => State::Denied,
        Action::IssueCredit => State::CreditIssued,
        Action::PublishPosition => from,
        Action::ConfirmOutcome => State::ClientConfirmed,
        Action::Close => State::Closed,
    })
}

/// What the credit-deciding actions need to know of the credit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credit {
    /// The credit equals the total disputed.
    pub whole: bool,
    /// The proposal is above the approval threshold.
    pub needs_approval: bool,
}

/// The states in which the vetting clock runs.
pub fn vetting_clock_runs(state: State) -> bool {
    matches!(state, State::Submitted | State::Vetting)
}

/// The states reached once the company has decided.
pub fn decided(state: State) -> bool {
    matches!(
        state,
        State::Approved
            | State::PartiallyApproved
            | State::Denied
            | State::CreditIssued
            | State::ClientConfirmed
            | State::Closed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    const STATES: [State; 10] = [
        Draft,
        Submitted,
        Vetting,
        InformationRequested,
        Approved,
        PartiallyApproved,
        Denied,
        CreditIssued,
        ClientConfirmed,
        Closed,
    ];

    /// The contract's table, written out again by hand: (action, from,
    /// pending) → to, for every pair that is allowed.
    fn contract(action: Action, from: State, pending: bool, credit: Credit) -> Option<State> {
        let decided = if credit.whole {
            Approved
        } else {
            PartiallyApproved
        };
        match (action, from, pending) {
            (Action::Submit, Draft, _) => Some(Submitted),
            (Action::StartVetting, Submitted, _) => Some(Vetting),
            (Action::RequestInformation, Vetting, false) => Some(InformationRequested),
            (Action::ProvideInformation, InformationRequested, _) => Some(Vetting),
            (Action::ProposeCredit, Vetting, false) if credit.needs_approval => Some(Vetting),
            (Action::ProposeCredit, Vetting, false) => Some(decided),
            (Action::ApproveCredit, Vetting, true) => Some(decided),
            (Action::RejectCredit, Vetting, true) => Some(Vetting),
            (Action::Deny, Vetting, false) => Some(Denied),
            (Action::IssueCredit, Approved | PartiallyApproved, _) => Some(CreditIssued),
            (Action::PublishPosition, s, _) if s != Draft && s != Closed => Some(s),
            (Action::ConfirmOutcome, CreditIssued | Denied, _) => Some(ClientConfirmed),
            (Action::RejectOutcome, Approved | PartiallyApproved | CreditIssued | Denied, _) => {
                Some(Vetting)
            }
            (Action::Close, ClientConfirmed, _) => Some(Closed),
            _ => None,
        }
    }

    #[test]
    fn every_action_from_every_state_follows_the_contract_table() {
        let mut allowed = 0;
        for action in Action::ALL {
            for from in STATES {
                for pending in [false, true] {
                    for whole in [false, true] {
                        for needs_approval in [false, true] {
                            let credit = Credit {
                                whole,
                                needs_approval,
                            };
                            let got = next("disputes/d", action, from, pending, credit);
                            match (contract(action, from, pending, credit), got) {
                                (Some(want), Ok(to)) => {
                                    allowed += 1;
                                    assert_eq!(to, want, "{action:?} from {from:?}");
                                }
                                (None, Err(Error::FailedPrecondition { subject, .. })) => {
                                    assert_eq!(subject, "disputes/d")
                                }
                                (want, got) => panic!(
                                    "{action:?} from {from:?} (pending {pending}): want {want:?}, got {got:?}"
                                ),
                            }
                        }
                    }
                }
            }
        }
        // Counted by hand from the table, 8 variants per (action, state),
        // 4 where pending must be one way: Submit 8, StartVetting 8,
        // RequestInformation 4, ProvideInformation 8, ProposeCredit 4,
        // ApproveCredit 4, RejectCredit 4, Deny 4, IssueCredit 16,
        // PublishPosition 64, ConfirmOutcome 16, RejectOutcome 32, Close 8.
        assert_eq!(allowed, 180);
    }

    #[test]
    fn a_pending_approval_blocks_a_second_proposal_with_its_own_reason() {
        let err = next(
            "disputes/d",
            Action::ProposeCredit,
            Vetting,
            true,
            Credit::default(),
        )
        .unwrap_err();
        let Error::FailedPrecondition { reason, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(reason, Reason::ApprovalPending);
    }
}
