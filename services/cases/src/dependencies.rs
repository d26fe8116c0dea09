//! A case that depends on another open case (a DEPENDS_ON link) and has not
//! been presented to the carrier is *withheld by dependency*: it cannot be
//! placed yet, so nobody should chase it. The flag is derived, kept current
//! inside the transaction of whatever changes it — the link, the hand-off
//! code, or the state of the case depended on.

use concierge_common::error::Result;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::Case;

use crate::{lifecycle, store};

/// Whether `c` is withheld by an open case it depends on.
pub(crate) async fn withheld(conn: &mut Conn<'_>, c: &Case) -> Result<bool> {
    if c.presented_to_carrier {
        return Ok(false);
    }
    let states = store::cases::dependency_states(conn, &c.name).await?;
    Ok(states.into_iter().any(lifecycle::is_open))
}

/// Re-derives the flag of a stored case, writing it when it moved: a chase
/// rule may start or stop with it (an order no longer withheld must now be
/// placed), at `now`, in the same transaction.
pub(crate) async fn refresh(conn: &mut Conn<'_>, case_name: &str, now: i64) -> Result<()> {
    store::cases::write_withheld(conn, case_name, async |conn, c| {
        let flag = withheld(conn, c).await?;
        if flag == c.withheld_by_dependency {
            return Ok(false);
        }
        c.withheld_by_dependency = flag;
        crate::chase::on_change(conn, c, now).await?;
        Ok(true)
    })
    .await
}

/// After `case_name` opened or closed: the cases that depend on it.
pub(crate) async fn refresh_dependents(
    conn: &mut Conn<'_>,
    case_name: &str,
    now: i64,
) -> Result<()> {
    for d in store::cases::dependents(conn, case_name).await? {
        refresh(conn, &d, now).await?;
    }
    Ok(())
}
