//! Who may do what in the cases domain. The gateway only says who the caller
//! is; this is where the answer to "may they?" lives. Nothing here reads or
//! writes storage: the store asks before it writes.
//!
//! | role                  | cases and notes | links | calendars, hand-off codes, SLA policies | SLA clocks |
//! |-----------------------|-----------------|-------|-----------------------------------------|------------|
//! | client                | opens cases for its own account (client-known fields only), reads them, posts and reads public updates; another account's are NOT_FOUND | nothing | nothing | reads its own cases' |
//! | agent, account manager| everything      | everything | read                                | read       |
//! | manager, admin        | everything      | everything | read and change                     | read       |
//!
//! Nobody writes an SLA clock: it follows from its case.

use concierge_common::crud::Authorize;
use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, Role};
use concierge_proto::concierge::cases::v1::{
    Calendar, Case, CaseLink, CasePriority, ChaseRule, ChaseRun, ChaseStep, ControlDocument,
    ControlDocumentSettings, Escalation, HandOffCode, Note, SlaClock, SlaPolicy, note,
};
use concierge_proto::events::Visibility;

use crate::Rules;

/// Staff only, for the company's own records.
pub(crate) fn staff_only(p: &Principal, what: &str) -> Result<()> {
    if p.role == Role::Client {
        return Err(Error::PermissionDenied(format!(
            "{what} are internal to the company"
        )));
    }
    Ok(())
}

/// A client principal asking about another account's case or note gets
/// NOT_FOUND, as for one that does not exist.
fn own_account(
    p: &Principal,
    resource_type: &'static str,
    name: &str,
    account: &str,
) -> Result<()> {
    if p.role == Role::Client && p.account.as_deref() != Some(account) {
        return Err(Error::NotFound {
            resource_type,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Company-wide configuration (calendars, hand-off codes): staff read it,
/// managers and admins change it, clients never see it.
macro_rules! configuration {
    ($ty:ty, $what:literal) => {
        impl Authorize<$ty> for Rules {
            type Facts = ();
            fn visibility(&self, _r: &$ty) -> Visibility {
                Visibility::Internal
            }
            fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
                staff_only(p, $what)
            }
            fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
                staff_only(p, $what)
            }
            fn may_write(&self, p: &Principal, _r: &$ty, _: &()) -> Result<()> {
                match p.role {
                    Role::Manager | Role::Admin => Ok(()),
                    _ => Err(Error::PermissionDenied(format!(
                        "only managers and admins change {}",
                        $what
                    ))),
                }
            }
            fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
                staff_only(p, $what).map(|()| None)
            }
        }
    };
}

configuration!(Calendar, "business calendars");
configuration!(HandOffCode, "hand-off codes");
configuration!(ChaseRule, "chase rules");
configuration!(ControlDocumentSettings, "control document settings");

/// Control documents: staff issue and send them; a client reads its own
/// account's issued documents (and learns nothing of another's).
impl Authorize<ControlDocument> for Rules {
    type Facts = ();
    fn visibility(&self, _r: &ControlDocument) -> Visibility {
        Visibility::Public
    }
    fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
        let account = concierge_common::crud::account_of(name).unwrap_or_default();
        own_account(p, "ControlDocument", name, &account)
    }
    fn may_see(&self, p: &Principal, r: &ControlDocument) -> Result<()> {
        let account = concierge_common::crud::account_of(&r.name).unwrap_or_default();
        own_account(p, "ControlDocument", &r.name, &account)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff_only(p, "control documents issued")
    }
    fn may_write(&self, p: &Principal, _r: &ControlDocument, _: &()) -> Result<()> {
        staff_only(p, "control documents issued")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
}

/// The company's own work on a case, which every staff member does and a
/// client never sees, nor learns exists: escalations, and the chase runs and
/// steps the chase rules take.
macro_rules! internal_work {
    ($ty:ty, $what:literal) => {
        impl Authorize<$ty> for Rules {
            type Facts = ();
            fn visibility(&self, _r: &$ty) -> Visibility {
                Visibility::Internal
            }
            fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
                staff_only(p, $what)
            }
            fn may_see(&self, p: &Principal, _r: &$ty) -> Result<()> {
                staff_only(p, $what)
            }
            fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
                staff_only(p, $what)
            }
            fn may_write(&self, p: &Principal, _r: &$ty, _: &()) -> Result<()> {
                staff_only(p, $what)
            }
            fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
                staff_only(p, $what).map(|()| None)
            }
        }
    };
}

internal_work!(Escalation, "escalations");
internal_work!(ChaseRun, "chase runs");
internal_work!(ChaseStep, "chase steps");

/// Cases: staff work every case; a client opens cases for its own account
/// and follows them, and changes nothing else.
impl Authorize<Case> for Rules {
    type Facts = ();

    fn visibility(&self, _r: &Case) -> Visibility {
        Visibility::Public
    }
    /// The public events carry the case as its client reads it: without
    /// how far the company's chase rules went.
    fn event_payload(&self, c: &Case, audience: Visibility) -> Case {
        let mut c = c.clone();
        if audience != Visibility::Internal {
            c.chase = None;
        }
        c
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_see(&self, p: &Principal, r: &Case) -> Result<()> {
        own_account(p, "Case", &r.name, &r.account)
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Ok(())
    }
    /// A client opens cases for its own account, with the fields a client
    /// knows (case.proto lists them); the rest are the company's to set.
    fn may_create(&self, p: &Principal, r: &Case, _: &()) -> Result<()> {
        own_account(p, "Case", &r.name, &r.account)?;
        if p.role == Role::Client {
            let staff_set = [
                ("case.owner", !r.owner.is_empty()),
                ("case.performing_team", !r.performing_team.is_empty()),
                ("case.carrier_reference", !r.carrier_reference.is_empty()),
                ("case.committed_time", r.committed_time.is_some()),
                ("case.construction", r.construction.is_some()),
                ("case.priority", r.priority == CasePriority::Critical as i32),
            ];
            if let Some((field, _)) = staff_set.iter().find(|(_, set)| *set) {
                return Err(Error::PermissionDenied(format!(
                    "{field} is set by the company, not by a client opening a case{}",
                    if *field == "case.priority" {
                        ": ask for HIGH and your account manager will escalate"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(())
    }
    fn may_write(&self, p: &Principal, r: &Case, _: &()) -> Result<()> {
        own_account(p, "Case", &r.name, &r.account)?;
        if p.role == Role::Client {
            return Err(Error::PermissionDenied(
                "clients follow their cases and add public updates; staff change them".into(),
            ));
        }
        Ok(())
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
}

/// Notes: internal notes are for staff only and do not exist for a client,
/// through any method; a client reads and posts public updates on its own
/// account's cases.
impl Authorize<Note> for Rules {
    type Facts = ();

    fn visibility(&self, r: &Note) -> Visibility {
        if r.visibility == note::Visibility::Public as i32 {
            Visibility::Public
        } else {
            Visibility::Internal
        }
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_see(&self, p: &Principal, r: &Note) -> Result<()> {
        own_account(p, "Note", &r.name, &r.account)?;
        if p.role == Role::Client && r.visibility != note::Visibility::Public as i32 {
            return Err(Error::NotFound {
                resource_type: "Note",
                name: r.name.clone(),
            });
        }
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Ok(())
    }
    fn may_write(&self, p: &Principal, r: &Note, _: &()) -> Result<()> {
        if p.role == Role::Client && r.visibility != note::Visibility::Public as i32 {
            return Err(Error::PermissionDenied(
                "clients post public updates only".into(),
            ));
        }
        Ok(())
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
    fn list_restriction(&self, p: &Principal) -> Option<concierge_common::filter::Expr> {
        (p.role == Role::Client).then_some(concierge_common::filter::Expr::Compare {
            column: "visibility",
            op: "=",
            value: concierge_common::filter::Value::Int(note::Visibility::Public as i64),
        })
    }
}

/// SLA policies: configuration like calendars, and every write keeps the
/// revision it produced, because cases stay on the revision they started with.
impl Authorize<SlaPolicy> for Rules {
    type Facts = ();

    fn visibility(&self, _r: &SlaPolicy) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_only(p, "SLA policies")
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff_only(p, "SLA policies")
    }
    fn may_write(&self, p: &Principal, _r: &SlaPolicy, _: &()) -> Result<()> {
        match p.role {
            Role::Manager | Role::Admin => Ok(()),
            _ => Err(Error::PermissionDenied(
                "only managers and admins change SLA policies".into(),
            )),
        }
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_only(p, "SLA policies").map(|()| None)
    }
}

/// SLA clocks: read by whoever may read their case (a client, its own
/// account's), written only by the service as its cases change.
impl Authorize<SlaClock> for Rules {
    type Facts = ();

    fn visibility(&self, _r: &SlaClock) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Err(Error::PermissionDenied(
            "SLA clocks follow from their case; change the case".into(),
        ))
    }
    fn may_write(&self, p: &Principal, r: &SlaClock, _: &()) -> Result<()> {
        <Self as Authorize<SlaClock>>::may_attempt_write(self, p, &r.name)
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
}

/// Links between cases: staff work with them (clients see their cases, not
/// the company's bookkeeping between them). Both cases must exist and belong
/// to the same account; the other case gets the inverse link in the same
/// transaction, and loses it with it.
impl Authorize<CaseLink> for Rules {
    type Facts = ();

    fn visibility(&self, _r: &CaseLink) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_only(p, "case links")
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff_only(p, "case links")
    }
    fn may_write(&self, p: &Principal, _r: &CaseLink, _: &()) -> Result<()> {
        staff_only(p, "case links")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_only(p, "case links").map(|()| None)
    }
}
