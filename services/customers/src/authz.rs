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
