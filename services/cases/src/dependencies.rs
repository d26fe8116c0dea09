//! A case that depends on another open case (a DEPENDS_ON link) and has not
//! been presented to the carrier is *withheld by dependency*: it cannot be
//! placed yet, so nobody should chase it. The flag is derived, kept current
//! inside the transaction of whatever changes it — the link, the hand-off
//! code, or the state of the case depended on.

use concierge_common::error::{Error, Result};
use concierge_common::on_conn;
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{Case, case, case_link};
use prost::Message;

use crate::lifecycle;
use crate::resources::CASES;

/// Whether `c` is withheld by an open case it depends on.
pub(crate) async fn withheld(conn: &mut Conn<'_>, c: &Case) -> Result<bool> {
    if c.presented_to_carrier {
        return Ok(false);
    }
    let states: Vec<i64> = on_conn!(conn, x => sqlx::query_scalar(
        "SELECT c.state FROM case_links l JOIN cases c ON c.name = l.target \
         WHERE l.parent = $1 AND l.type = $2 AND l.delete_time = 0")
        .bind(&c.name)
        .bind(case_link::Type::DependsOn as i64)
        .fetch_all(&mut **x)
        .await?);
    Ok(states.into_iter().any(|s| {
        lifecycle::is_open(case::State::try_from(s as i32).unwrap_or(case::State::Unspecified))
    }))
}

/// Re-derives the flag of a stored case, writing it (without a new revision:
/// nothing about the case itself changed) when it moved.
pub(crate) async fn refresh(conn: &mut Conn<'_>, case_name: &str) -> Result<()> {
    let Some(stored) = resource::get_for_update(conn, &CASES, case_name).await? else {
        return Ok(());
    };
    let mut c = Case::decode(stored.body.as_slice()).map_err(Error::internal)?;
    let now = withheld(conn, &c).await?;
    if now == c.withheld_by_dependency {
        return Ok(());
    }
    c.withheld_by_dependency = now;
    let next = resource::Stored {
        body: c.encode_to_vec(),
        ..stored.clone()
    };
    let columns = <Case as concierge_common::crud::Resource<crate::Rules>>::columns(&c);
    resource::update(conn, &CASES, &next, stored.revision, &columns).await
}

/// After `case_name` opened or closed: the cases that depend on it.
pub(crate) async fn refresh_dependents(conn: &mut Conn<'_>, case_name: &str) -> Result<()> {
    let dependents: Vec<String> = on_conn!(conn, x => sqlx::query_scalar(
        "SELECT parent FROM case_links WHERE target = $1 AND type = $2 AND delete_time = 0")
        .bind(case_name)
        .bind(case_link::Type::DependsOn as i64)
        .fetch_all(&mut **x)
        .await?);
    for d in dependents {
        refresh(conn, &d).await?;
    }
    Ok(())
}
