//! Who may do what in the customers domain. The gateway only says who the
//! caller is; this is where the answer to "may they?" lives.
//!
//! | role            | read                      | write                                                      |
//! |-----------------|---------------------------|------------------------------------------------------------|
//! | client          | its own account's account, contacts, sites, inventory; nothing else exists for it | nothing |
//! | agent           | everything                | interactions and follow-ups                                |
//! | account manager | everything                | its portfolio's accounts and their contacts, sites, inventory; interactions and follow-ups anywhere |
//! | manager, admin  | everything                | everything                                                 |
//!
//! Only managers and admins maintain the staff directory. A client asking
//! about another account gets NOT_FOUND, exactly as for an account that does
//! not exist, so that existence does not leak.

use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, Role};
use concierge_proto::customers::Account;

/// What a write touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The account record and its contacts, sites and inventory.
    AccountData,
    /// The interaction log and follow-ups.
    Activity,
    /// The staff directory.
    Directory,
}

use concierge_common::crud::account_of;

fn not_found(resource_type: &'static str, name: &str) -> Error {
    Error::NotFound {
        resource_type,
        name: name.to_string(),
    }
}

/// May `p` read `name` of an area whose client visibility is `client_visible`?
/// Checked before the database is asked, so a client learns nothing about
/// other accounts.
pub fn read(
    p: &Principal,
    resource_type: &'static str,
    name: &str,
    client_visible: bool,
) -> Result<()> {
    if p.role != Role::Client {
        return Ok(());
    }
    match (account_of(name), &p.account) {
        (Some(account), Some(own)) if &account == own => {
            if client_visible {
                Ok(())
            } else {
                Err(Error::PermissionDenied(format!(
                    "{resource_type} records are internal to the company"
                )))
            }
        }
        (None, _) => Err(Error::PermissionDenied(format!(
            "{resource_type} records are internal to the company"
        ))),
        // Another account is one the client cannot see at all: name it, not
        // the kind asked for under it ("Site accounts/globex" is no site).
        (Some(account), _) => Err(not_found("Account", &account)),
    }
}

/// May `p` write in `area` of `account` (the stored or, for a new account,
/// the requested account record)?
pub fn write(
    p: &Principal,
    area: Area,
    resource_type: &'static str,
    name: &str,
    account: Option<&Account>,
) -> Result<()> {
    match p.role {
        Role::Client => {
            read(p, resource_type, name, true)?;
            Err(Error::PermissionDenied(format!(
                "clients cannot change {resource_type} records; ask your account manager"
            )))
        }
        Role::Admin | Role::Manager => Ok(()),
        Role::AccountManager => match area {
            Area::Activity => Ok(()),
            Area::Directory => Err(Error::PermissionDenied(
                "only managers and admins maintain the staff directory".into(),
            )),
            Area::AccountData => {
                let mine = match (account, &p.staff_member) {
                    (Some(a), Some(me)) => &a.account_manager == me,
                    _ => false,
                };
                if mine {
                    Ok(())
                } else {
                    Err(Error::PermissionDenied(format!(
                        "{name} is outside your portfolio"
                    )))
                }
            }
        },
        Role::Agent => match area {
            Area::Activity => Ok(()),
            _ => Err(Error::PermissionDenied(format!(
                "agents log interactions and follow-ups; changing {resource_type} records needs the account manager"
            ))),
        },
    }
}

/// The matrix above, per resource kind: [`Authorize`] only decides; the
/// facts it decides on (the account as stored) are read by the store
/// through the kind's lifecycle hooks.
mod kinds {
    use concierge_common::crud::{Authorize, Resource};
    use concierge_common::error::Result;
    use concierge_common::principal::{Principal, Role};
    use concierge_proto::customers::{
        Account, Contact, FollowUp, Interaction, InventoryItem, Site, StaffMember,
    };
    use concierge_proto::events::Visibility;

    use super::{Area, read, write};
    use crate::Rules;

    /// A list by a client is confined to its own account, after checking
    /// the client may read the kind there at all.
    fn list_account(
        p: &Principal,
        resource_type: &'static str,
        parent: &str,
        client_visible: bool,
    ) -> Result<Option<String>> {
        if p.role != Role::Client {
            return Ok(None);
        }
        read(p, resource_type, parent, client_visible)?;
        Ok(p.account.clone())
    }

    /// Clients are refused before their input is looked at; staff are
    /// decided against the stored data.
    fn may_attempt_write(
        p: &Principal,
        area: Area,
        resource_type: &'static str,
        target: &str,
    ) -> Result<()> {
        if p.role == Role::Client {
            return write(p, area, resource_type, target, None);
        }
        Ok(())
    }

    /// The resources that live under an account: a write is decided against
    /// the account as stored (`facts`, absent for a client).
    macro_rules! account_scoped {
        ($ty:ty, $area:expr, $client_visible:expr) => {
            impl Authorize<$ty> for Rules {
                type Facts = Option<Account>;
                fn visibility(&self, _r: &$ty) -> Visibility {
                    if $client_visible {
                        Visibility::Public
                    } else {
                        Visibility::Internal
                    }
                }
                fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
                    read(
                        p,
                        <$ty as Resource<Rules>>::KIND.resource_type,
                        name,
                        $client_visible,
                    )
                }
                fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()> {
                    may_attempt_write(
                        p,
                        $area,
                        <$ty as Resource<Rules>>::KIND.resource_type,
                        target,
                    )
                }
                fn may_write(
                    &self,
                    p: &Principal,
                    r: &$ty,
                    account: &Option<Account>,
                ) -> Result<()> {
                    write(
                        p,
                        $area,
                        <$ty as Resource<Rules>>::KIND.resource_type,
                        &r.name,
                        account.as_ref(),
                    )
                }
                fn list_account(&self, p: &Principal, parent: &str) -> Result<Option<String>> {
                    list_account(
                        p,
                        <$ty as Resource<Rules>>::KIND.resource_type,
                        parent,
                        $client_visible,
                    )
                }
            }
        };
    }

    account_scoped!(Contact, Area::AccountData, true);
    account_scoped!(Site, Area::AccountData, true);
    account_scoped!(InventoryItem, Area::AccountData, true);
    account_scoped!(Interaction, Area::Activity, false);
    account_scoped!(FollowUp, Area::Activity, false);

    impl Authorize<Account> for Rules {
        type Facts = ();
        fn visibility(&self, _r: &Account) -> Visibility {
            Visibility::Public
        }
        fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
            read(p, "Account", name, true)
        }
        fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()> {
            may_attempt_write(p, Area::AccountData, "Account", target)
        }
        /// An account manager writes the accounts it owns: it can neither
        /// edit another portfolio's account nor hand one of its own to
        /// someone else.
        fn may_write(&self, p: &Principal, r: &Account, _: &()) -> Result<()> {
            write(p, Area::AccountData, "Account", &r.name, Some(r))
        }
        fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
            // A client's account list is its own account.
            Ok(if p.role == Role::Client {
                p.account.clone()
            } else {
                None
            })
        }
    }

    impl Authorize<StaffMember> for Rules {
        type Facts = ();
        fn visibility(&self, _r: &StaffMember) -> Visibility {
            Visibility::Internal
        }
        fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
            read(p, "StaffMember", name, false)
        }
        fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()> {
            may_attempt_write(p, Area::Directory, "StaffMember", target)
        }
        fn may_write(&self, p: &Principal, r: &StaffMember, _: &()) -> Result<()> {
            write(p, Area::Directory, "StaffMember", &r.name, None)
        }
        fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
            list_account(p, "StaffMember", "", false)
        }
    }
}
