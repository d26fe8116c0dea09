//! Who may do what with disputes. The gateway only says who the caller is;
//! this is where the answer to "may they?" lives.
//!
//! | role           | read                                   | write |
//! |----------------|----------------------------------------|-------|
//! | client         | its own account's disputes, without the company's internal working | create, edit and submit its own account's disputes, answer information requests, upload documents, confirm or reject the outcome |
//! | staff          | every dispute, its history and the settings | every transition; approving a credit is a manager's of the staff directory, never the proposer's |
//! | manager, admin | as staff                               | and the settings |
//!
//! A client asking about another account's dispute gets NOT_FOUND, exactly
//! as for a dispute that does not exist.

use concierge_common::crud::Authorize;
use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, Role};
use concierge_proto::disputes::{Dispute, DisputeDocument, DisputeHistoryEntry, DisputeSettings};
use concierge_proto::events::Visibility;

use crate::Rules;
use crate::transitions::Action;

fn not_found(name: &str) -> Error {
    Error::NotFound {
        resource_type: "Dispute",
        name: name.to_string(),
    }
}

pub(crate) fn staff_only(p: &Principal, what: &str) -> Result<()> {
    if p.role == Role::Client {
        return Err(Error::PermissionDenied(format!(
            "{what} are internal to the company"
        )));
    }
    Ok(())
}

/// Whether a client principal may take `action` at all (its account is
/// checked against the dispute's as for any write).
pub(crate) fn client_may(p: &Principal, action: Action) -> Result<()> {
    if p.role != Role::Client {
        return Ok(());
    }
    match action {
        Action::Submit
        | Action::ProvideInformation
        | Action::ConfirmOutcome
        | Action::RejectOutcome => Ok(()),
        other => Err(Error::PermissionDenied(format!(
            "{} is the company's to do; a client creates, edits and submits its disputes, answers questions and confirms or rejects the outcome",
            other.method()
        ))),
    }
}

/// A dispute as its client sees it: without the company's working (the
/// proposal, its approval, the internal reason of a denial).
pub fn client_view(mut d: Dispute) -> Dispute {
    d.credit_proposal = None;
    d.approval = None;
    if d.state == concierge_proto::disputes::dispute::State::Denied as i32 {
        d.state_reason.clear();
    }
    d
}

/// What `p` reads of a dispute: a client its own view, staff all of it.
pub fn for_reader(p: &Principal, d: Dispute) -> Dispute {
    if p.role == Role::Client {
        client_view(d)
    } else {
        d
    }
}

impl Authorize<Dispute> for Rules {
    type Facts = ();
    fn visibility(&self, _d: &Dispute) -> Visibility {
        Visibility::Public
    }
    /// A client's systems may receive the public events: they carry the
    /// client's view; the staff-only ones (a proposed or rejected credit)
    /// carry the working.
    fn event_payload(&self, d: &Dispute, audience: Visibility) -> Dispute {
        match audience {
            Visibility::Internal => d.clone(),
            _ => client_view(d.clone()),
        }
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_see(&self, p: &Principal, d: &Dispute) -> Result<()> {
        if p.role == Role::Client && p.account.as_deref() != Some(d.account.as_str()) {
            return Err(not_found(&d.name));
        }
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Ok(())
    }
    fn may_write(&self, p: &Principal, d: &Dispute, _facts: &()) -> Result<()> {
        self.may_see(p, d)
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(match p.role {
            Role::Client => p.account.clone(),
            _ => None,
        })
    }
}

impl Authorize<DisputeHistoryEntry> for Rules {
    type Facts = ();
    fn visibility(&self, _e: &DisputeHistoryEntry) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_only(p, "a dispute's history entries")
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Err(Error::PermissionDenied(
            "history entries are written by the service only".into(),
        ))
    }
    fn may_write(&self, _p: &Principal, _e: &DisputeHistoryEntry, _facts: &()) -> Result<()> {
        Err(Error::PermissionDenied(
            "history entries are written by the service only".into(),
        ))
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_only(p, "a dispute's history entries")?;
        Ok(None)
    }
}

impl Authorize<DisputeSettings> for Rules {
    type Facts = ();
    fn visibility(&self, _s: &DisputeSettings) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_only(p, "the disputes settings")
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        match p.role {
            Role::Manager | Role::Admin => Ok(()),
            _ => Err(Error::PermissionDenied(
                "only managers and admins change the disputes settings".into(),
            )),
        }
    }
    fn may_write(&self, p: &Principal, _s: &DisputeSettings, _facts: &()) -> Result<()> {
        Authorize::<DisputeSettings>::may_attempt_write(self, p, "")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_only(p, "the disputes settings")?;
        Ok(None)
    }
}

/// A document's dispute decides who sees it: the methods read the dispute
/// (as the caller may see it) before the document, and lists of a client
/// are confined to its account's rows.
impl Authorize<DisputeDocument> for Rules {
    type Facts = ();
    fn visibility(&self, _d: &DisputeDocument) -> Visibility {
        Visibility::Public
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Ok(())
    }
    fn may_write(&self, _p: &Principal, _d: &DisputeDocument, _facts: &()) -> Result<()> {
        Ok(())
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(match p.role {
            Role::Client => p.account.clone(),
            _ => None,
        })
    }
}
