//! What goes with a write of each customers resource, in its transaction:
//! the account an account-scoped write lands in (the fact its authorisation
//! in [`crate::authz`] is decided on), the rules between resources, and the
//! initial state of a new one. Nothing here decides who may.

use concierge_common::crud::{self, Ctx, Lifecycle, Store};
use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, Role};
use concierge_common::resource::{self, Scope};
use concierge_common::storage::Conn;
use concierge_proto::customers::{
    Account, Contact, FollowUp, Interaction, InventoryItem, Site, StaffMember, account, follow_up,
};

use crate::{Rules, resources, store};

/// The account a write lands in, which must exist and not be deleted.
async fn live_account(conn: &mut Conn<'_>, name: &str) -> Result<Account> {
    let stored = resource::get(conn, &resources::ACCOUNTS, name)
        .await?
        .filter(|s| s.delete_time == 0)
        .ok_or_else(|| Error::NotFound {
            resource_type: "Account",
            name: name.to_string(),
        })?;
    Store::decode::<_, Rules>(&stored)
}

/// Writes under an account need the account alive; the account record also
/// decides whether an account manager may write there. A client is refused
/// whatever the account, so nothing is read for one.
async fn account_of_write(
    conn: &mut Conn<'_>,
    p: &Principal,
    name: &str,
) -> Result<Option<Account>> {
    if p.role == Role::Client {
        return Ok(None);
    }
    match crud::account_of(name) {
        Some(account) => Ok(Some(live_account(conn, &account).await?)),
        None => Ok(None),
    }
}

async fn staff_exists(conn: &mut Conn<'_>, field: &str, name: &str) -> Result<()> {
    if resource::get(conn, &resources::STAFF_MEMBERS, name)
        .await?
        .is_none()
    {
        return Err(Error::invalid(
            field,
            format!("{name} is not in the staff directory"),
        ));
    }
    Ok(())
}

/// The hooks of a resource that lives under an account.
macro_rules! account_scoped {
    ($ty:ty $(, $($hooks:tt)*)?) => {
        impl Lifecycle<$ty> for Rules {
            async fn facts(&self, conn: &mut Conn<'_>, p: &Principal, r: &$ty) -> Result<Option<Account>> {
                account_of_write(conn, p, &r.name).await
            }
            $($($hooks)*)?
        }
    };
}

impl Lifecycle<Account> for Rules {
    async fn check_references(&self, conn: &mut Conn<'_>, a: &Account) -> Result<()> {
        if !a.account_manager.is_empty() {
            staff_exists(conn, "account.account_manager", &a.account_manager).await?;
        }
        Ok(())
    }
    fn on_create(&self, _ctx: &Ctx, a: &mut Account, _now: i64) {
        a.state = account::State::Active as i32;
    }
}

account_scoped!(
    Contact,
    /// At most one client delegate per account.
    async fn check_references(&self, conn: &mut Conn<'_>, c: &Contact) -> Result<()> {
        if !c.client_delegate {
            return Ok(());
        }
        let account = crud::account_of(&c.name).unwrap_or_default();
        let n = store::contacts::other_client_delegates(conn, &account, &c.name).await?;
        if n > 0 {
            return Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::ClientDelegateTaken,
                subject: account,
                description: "the account already has a client delegate; unset it there first"
                    .into(),
            });
        }
        Ok(())
    }
);

account_scoped!(
    Site,
    /// A site is deleted only once its inventory is gone.
    async fn check_delete(&self, conn: &mut Conn<'_>, s: &Site) -> Result<()> {
        let items = resource::count(
            conn,
            &resources::INVENTORY_ITEMS,
            &Scope::Parent(s.name.clone()),
        )
        .await?;
        if items > 0 {
            return Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::SiteHasInventory,
                subject: s.name.clone(),
                description: format!(
                    "{} still has {items} inventory items; delete or move them first",
                    s.name
                ),
            });
        }
        Ok(())
    }
);

account_scoped!(
    InventoryItem,
    /// An item is installed at a site that exists.
    async fn check_references(&self, conn: &mut Conn<'_>, item: &InventoryItem) -> Result<()> {
        let site = item
            .name
            .rsplitn(3, '/')
            .nth(2)
            .unwrap_or_default()
            .to_string();
        if resource::get(conn, &resources::SITES, &site)
            .await?
            .is_none()
        {
            return Err(Error::NotFound {
                resource_type: "Site",
                name: site,
            });
        }
        Ok(())
    }
);

account_scoped!(Interaction);

account_scoped!(
    FollowUp,
    fn on_create(&self, _ctx: &Ctx, f: &mut FollowUp, _now: i64) {
        f.state = follow_up::State::Open as i32;
    }
);

impl Lifecycle<StaffMember> for Rules {
    /// The manager exists, and the escalation chain stays a chain.
    async fn check_references(&self, conn: &mut Conn<'_>, s: &StaffMember) -> Result<()> {
        if s.manager.is_empty() {
            return Ok(());
        }
        staff_exists(conn, "staff_member.manager", &s.manager).await?;
        let mut next = s.manager.clone();
        for _ in 0..64 {
            if next == s.name {
                return Err(Error::invalid(
                    "staff_member.manager",
                    format!(
                        "{} reports to {} already: this would close a loop in the escalation chain",
                        s.manager, s.name
                    ),
                ));
            }
            match resource::get(conn, &resources::STAFF_MEMBERS, &next).await? {
                Some(stored) => {
                    let m: StaffMember = Store::decode::<_, Rules>(&stored)?;
                    if m.manager.is_empty() {
                        break;
                    }
                    next = m.manager;
                }
                None => break,
            }
        }
        Ok(())
    }
}
