//! The case status machine. State changes only through one custom method per
//! transition (AIP-216); this table is the whole truth of which are legal,
//! and the contract's service comment (`cases_service.proto`) states it for
//! callers. Anything else is FAILED_PRECONDITION naming the current and the
//! requested state, and changes nothing.

use concierge_common::error::{Error, Result};
use concierge_proto::catalogue::{EventOf, cases};
use concierge_proto::concierge::cases::v1::Case;
use concierge_proto::concierge::cases::v1::case::State;

/// A change a caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Acknowledge a new case; counts as the first response.
    Open,
    /// The performing team starts work.
    StartWork,
    /// The case waits on the client: the client's clocks pause.
    PendOnClient,
    /// The case waits on the carrier: the carrier's clock runs.
    PendOnCarrier,
    /// Work goes on after a wait or a jeopardy.
    Resume,
    /// The case will miss its commitment. Legal again in jeopardy, to add
    /// the missing reason and revised ETA.
    MarkJeopardy,
    /// Done, with a root cause and resolution code.
    Resolve,
    /// The client accepted the resolution (or it aged out).
    Close,
    /// A resolved or closed case comes back.
    Reopen,
    /// No longer wanted.
    Cancel,
    /// A duplicate folded into another case.
    Merge,
}

impl Transition {
    pub const ALL: [Transition; 11] = [
        Transition::Open,
        Transition::StartWork,
        Transition::PendOnClient,
        Transition::PendOnCarrier,
        Transition::Resume,
        Transition::MarkJeopardy,
        Transition::Resolve,
        Transition::Close,
        Transition::Reopen,
        Transition::Cancel,
        Transition::Merge,
    ];

    /// The method that asks for it, for error messages.
    pub fn method(self) -> &'static str {
        match self {
            Transition::Open => "OpenCase",
            Transition::StartWork => "StartCaseWork",
            Transition::PendOnClient => "PendCaseOnClient",
            Transition::PendOnCarrier => "PendCaseOnCarrier",
            Transition::Resume => "ResumeCase",
            Transition::MarkJeopardy => "MarkCaseJeopardy",
            Transition::Resolve => "ResolveCase",
            Transition::Close => "CloseCase",
            Transition::Reopen => "ReopenCase",
            Transition::Cancel => "CancelCase",
            Transition::Merge => "MergeCase",
        }
    }

    /// The event that announces it. Moves within open work share one
    /// (the payload's state tells them apart); those that end or revive
    /// the work each have their own, for consumers that act on them
    /// (a satisfaction survey on resolution).
    pub fn event(self) -> EventOf<Case> {
        match self {
            Transition::Open
            | Transition::StartWork
            | Transition::PendOnClient
            | Transition::PendOnCarrier
            | Transition::Resume
            | Transition::MarkJeopardy => cases::CASE_STATE_CHANGED,
            Transition::Resolve => cases::CASE_RESOLVED,
            Transition::Close => cases::CASE_CLOSED,
            Transition::Reopen => cases::CASE_REOPENED,
            Transition::Cancel => cases::CASE_CANCELLED,
            Transition::Merge => cases::CASE_MERGED,
        }
    }

    /// The states it may start from, and the state it leads to.
    pub fn rule(self) -> (&'static [State], State) {
        use State::*;
        match self {
            Transition::Open => (&[New], Open),
            Transition::StartWork => (&[New, Open], InProgress),
            Transition::PendOnClient => {
                (&[Open, InProgress, PendingCarrier, Jeopardy], PendingClient)
            }
            Transition::PendOnCarrier => {
                (&[Open, InProgress, PendingClient, Jeopardy], PendingCarrier)
            }
            Transition::Resume => (&[PendingClient, PendingCarrier, Jeopardy], InProgress),
            Transition::MarkJeopardy => (
                &[Open, InProgress, PendingClient, PendingCarrier, Jeopardy],
                Jeopardy,
            ),
            Transition::Resolve => (
                &[Open, InProgress, PendingClient, PendingCarrier, Jeopardy],
                Resolved,
            ),
            Transition::Close => (&[Resolved], Closed),
            Transition::Reopen => (&[Resolved, Closed], InProgress),
            Transition::Cancel => (
                &[
                    New,
                    Open,
                    InProgress,
                    PendingClient,
                    PendingCarrier,
                    Jeopardy,
                ],
                Cancelled,
            ),
            Transition::Merge => (
                &[
                    New,
                    Open,
                    InProgress,
                    PendingClient,
                    PendingCarrier,
                    Jeopardy,
                    Resolved,
                ],
                Closed,
            ),
        }
    }
}

/// The state `transition` leads to from `current`, or FAILED_PRECONDITION
/// naming both.
pub fn next(case: &str, current: State, transition: Transition) -> Result<State> {
    let (from, to) = transition.rule();
    if from.contains(&current) {
        return Ok(to);
    }
    let allowed: Vec<_> = from.iter().map(|s| s.as_str_name()).collect();
    Err(Error::FailedPrecondition {
        reason: concierge_common::error::Reason::IllegalTransition,
        subject: case.to_string(),
        description: format!(
            "{case} is {}; {} (to {}) applies only from {}",
            current.as_str_name(),
            transition.method(),
            to.as_str_name(),
            allowed.join(", ")
        ),
    })
}

/// States in which a case is still being worked: its clocks run or pause,
/// chase rules look at it, the portfolio review lists it.
pub fn is_open(state: State) -> bool {
    matches!(
        state,
        State::New
            | State::Open
            | State::InProgress
            | State::PendingClient
            | State::PendingCarrier
            | State::Jeopardy
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    const STATES: [State; 9] = [
        New,
        Open,
        InProgress,
        PendingClient,
        PendingCarrier,
        Jeopardy,
        Resolved,
        Closed,
        Cancelled,
    ];

    /// The whole table, written out once more by hand: every (state,
    /// transition) pair is either this target or refused.
    fn expected(from: State, t: Transition) -> Option<State> {
        use Transition as T;
        Some(match (from, t) {
            (New, T::Open) => Open,
            (New | Open, T::StartWork) => InProgress,
            (Open | InProgress | PendingCarrier | Jeopardy, T::PendOnClient) => PendingClient,
            (Open | InProgress | PendingClient | Jeopardy, T::PendOnCarrier) => PendingCarrier,
            (PendingClient | PendingCarrier | Jeopardy, T::Resume) => InProgress,
            (Open | InProgress | PendingClient | PendingCarrier | Jeopardy, T::MarkJeopardy) => {
                Jeopardy
            }
            (Open | InProgress | PendingClient | PendingCarrier | Jeopardy, T::Resolve) => Resolved,
            (Resolved, T::Close) => Closed,
            (Resolved | Closed, T::Reopen) => InProgress,
            (New | Open | InProgress | PendingClient | PendingCarrier | Jeopardy, T::Cancel) => {
                Cancelled
            }
            (
                New | Open | InProgress | PendingClient | PendingCarrier | Jeopardy | Resolved,
                T::Merge,
            ) => Closed,
            _ => return None,
        })
    }

    #[test]
    fn the_transition_table_is_exactly_the_documented_one() {
        let mut legal = 0;
        for from in STATES {
            for t in Transition::ALL {
                let got = next("cases/c1", from, t).ok();
                assert_eq!(
                    got,
                    expected(from, t),
                    "{} from {}",
                    t.method(),
                    from.as_str_name()
                );
                legal += usize::from(got.is_some());
            }
        }
        assert_eq!(legal, 40);
    }

    #[test]
    fn an_illegal_transition_names_both_states() {
        let err = next("cases/c1", Closed, Transition::MarkJeopardy).unwrap_err();
        let Error::FailedPrecondition {
            reason,
            subject,
            description,
        } = err
        else {
            panic!()
        };
        assert_eq!(
            (reason, subject.as_str()),
            (
                concierge_common::error::Reason::IllegalTransition,
                "cases/c1"
            )
        );
        assert!(
            description.contains("STATE_CLOSED") && description.contains("STATE_JEOPARDY"),
            "{description}"
        );
    }

    #[test]
    fn terminal_states_are_not_open_and_only_reopen_leaves_them() {
        for s in [Closed, Cancelled] {
            assert!(!is_open(s));
        }
        assert!(
            Transition::ALL
                .iter()
                .all(|t| next("c", Cancelled, *t).is_err()),
            "a cancelled case stays cancelled"
        );
        assert_eq!(next("c", Closed, Transition::Reopen).unwrap(), InProgress);
    }
}
