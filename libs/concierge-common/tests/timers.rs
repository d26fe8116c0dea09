//! Timers fire once across two instances sharing one database, and survive a
//! claimer that dies mid-way. Runs on SQLite and on PostgreSQL.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{TestClock, to_micros};
use concierge_common::testing::eventually;

use concierge_common::on_conn;
use concierge_common::storage::Db;
use concierge_common::testing::{Backend, TestDb};
use concierge_common::timers::{self, Claimed};
use jiff::{SignedDuration, Timestamp};
use sqlx::migrate::Migrator;

static NO_MIGRATIONS: Migrator = Migrator {
    migrations: Cow::Borrowed(&[]),
    ignore_missing: true,
    locking: true,
    no_tx: false,
};

async fn setup(backend: Backend, test: &str) -> Option<(TestDb, Db)> {
    let db = TestDb::new(backend, test).await?;
    db.db.migrate(&NO_MIGRATIONS, &NO_MIGRATIONS).await.unwrap();
    let mut tx = db.db.begin().await.unwrap();
    on_conn!(&mut tx.conn(), c => sqlx::query("CREATE TABLE fired (id TEXT PRIMARY KEY, owner TEXT NOT NULL)")
        .execute(&mut **c)
        .await
        .unwrap()
        .rows_affected());
    tx.commit().await.unwrap();
    // A second instance: its own pool on the same database.
    let other = Db::connect(&db.url, 4).await.unwrap();
    Some((db, other))
}

fn t0() -> Timestamp {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

/// The effect of a timer (here: a row) and its completion in one transaction.
async fn fire(db: &Db, owner: &str, timer: &Claimed) -> bool {
    let mut tx = db.begin().await.unwrap();
    if !timers::complete(&mut tx, owner, timer).await.unwrap() {
        return false;
    }
    on_conn!(&mut tx.conn(), c => sqlx::query("INSERT INTO fired (id, owner) VALUES ($1, $2)")
        .bind(&timer.id)
        .bind(owner)
        .execute(&mut **c)
        .await
        .unwrap()
        .rows_affected());
    tx.commit().await.unwrap();
    true
}

async fn fired(db: &Db) -> BTreeMap<String, String> {
    let mut c = db.acquire().await.unwrap();
    let rows: Vec<(String, String)> = on_conn!(&mut c.conn(), c => sqlx::query_as("SELECT id, owner FROM fired")
        .fetch_all(&mut **c)
        .await
        .unwrap());
    rows.into_iter().collect()
}

async fn each_timer_fires_once_with_two_instances(backend: Backend) {
    let Some((db, other)) = setup(backend, "each_timer_fires_once_with_two_instances").await else {
        return;
    };
    let mut tx = db.db.begin().await.unwrap();
    for i in 0..300 {
        timers::arm(
            &mut tx.conn(),
            &format!("cases/c{i}/slaClocks/resolve:breach"),
            "sla_breach",
            &format!("cases/c{i}"),
            at(i),
            b"",
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let run = |db: Db, owner: &'static str| {
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let batch =
                    timers::claim_due(&db, at(1000), owner, SignedDuration::from_secs(60), 16)
                        .await
                        .unwrap();
                if batch.is_empty() {
                    break n;
                }
                for t in &batch {
                    n += usize::from(fire(&db, owner, t).await);
                }
            }
        })
    };
    let a = run(db.db.clone(), "instance-a");
    let b = run(other.clone(), "instance-b");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a + b, 300, "every timer fired, none twice (a {a}, b {b})");
    assert_eq!(fired(&db.db).await.len(), 300);
    assert_eq!(timers::next_due(&db.db).await.unwrap(), None);
}

async fn a_claimer_that_dies_is_replaced_after_its_lease(backend: Backend) {
    let Some((db, other)) = setup(backend, "a_claimer_that_dies_is_replaced_after_its_lease").await
    else {
        return;
    };
    let mut tx = db.db.begin().await.unwrap();
    timers::arm(
        &mut tx.conn(),
        "x",
        "sla_breach",
        "cases/x",
        at(0),
        b"payload",
    )
    .await
    .unwrap();
    timers::arm(&mut tx.conn(), "y", "sla_breach", "cases/y", at(100), b"")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let lease = SignedDuration::from_secs(60);

    let taken = timers::claim_due(&db.db, at(10), "a", lease, 10)
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["x"],
        "y is not due yet"
    );
    // "a" dies here. Within its lease nobody else takes x.
    assert!(
        timers::claim_due(&other, at(40), "b", lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retaken = timers::claim_due(&other, at(71), "b", lease, 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(
        (retaken[0].attempts, retaken[0].payload.as_slice()),
        (2, &b"payload"[..])
    );
    assert!(fire(&other, "b", &retaken[0]).await);
    assert!(
        !fire(&db.db, "a", &taken[0]).await,
        "the dead claimer's late completion changes nothing"
    );
    assert_eq!(fired(&db.db).await.get("x").map(String::as_str), Some("b"));

    // A deadline moved later does not fire at the old time; moved earlier, it does.
    let mut tx = db.db.begin().await.unwrap();
    timers::arm(&mut tx.conn(), "y", "sla_breach", "cases/y", at(500), b"")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        timers::claim_due(&db.db, at(200), "a", lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut tx = db.db.begin().await.unwrap();
    timers::arm(&mut tx.conn(), "y", "sla_breach", "cases/y", at(150), b"")
        .await
        .unwrap();
    assert!(timers::disarm(&mut tx.conn(), "nothing").await.is_ok());
    tx.commit().await.unwrap();
    assert_eq!(
        timers::claim_due(&db.db, at(200), "a", lease, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn lease_expire(db: &Db, id: &str) -> i64 {
    let mut c = db.acquire().await.unwrap();
    on_conn!(&mut c.conn(), c => sqlx::query_scalar("SELECT lease_expire_time FROM timers WHERE id = $1")
        .bind(id)
        .fetch_one(&mut **c)
        .await
        .unwrap())
}

async fn a_dead_claimers_timers_are_taken_over_within_the_short_lease(backend: Backend) {
    let Some((db, other)) = setup(
        backend,
        "a_dead_claimers_timers_are_taken_over_within_the_short_lease",
    )
    .await
    else {
        return;
    };
    let mut tx = db.db.begin().await.unwrap();
    timers::arm(&mut tx.conn(), "x", "sla_breach", "cases/x", at(0), b"")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let lease = timers::LEASE;
    let clock = TestClock::new(at(10));
    let taken = timers::claim_due_until(&db.db, at(10), "a", at(10) + lease, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let heartbeat = timers::Heartbeat::start_every(
        db.db.clone(),
        "a".into(),
        vec!["x".into()],
        Arc::new(clock.clone()),
        lease,
        Duration::from_millis(20),
    );

    // "a" is alive and slow: its lease is renewed past the first one's end,
    // and nobody takes the batch from it.
    clock.set(at(18));
    eventually(Duration::from_secs(10), "the lease renewed", || async {
        lease_expire(&db.db, "x").await >= to_micros(at(18) + lease)
    })
    .await;
    clock.set(at(25));
    assert!(
        timers::claim_due(&other, at(25), "b", lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a live claimer keeps its timers beyond one lease"
    );

    // "a" dies: within one short lease another instance has the timer.
    drop(heartbeat);
    let died = at(25);
    let retaken = timers::claim_due(
        &other,
        died + lease + SignedDuration::from_secs(1),
        "b",
        lease,
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        retaken.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["x"],
        "taken over {}s after the claimer died",
        lease.as_secs() + 1
    );
    assert!(
        lease <= SignedDuration::from_secs(15),
        "the lease is seconds, not a minute"
    );
    assert!(fire(&other, "b", &retaken[0]).await);
}

/// Arming several timers in one statement keeps what arming one does: the
/// same instant keeps a claim in flight, a new one drops it; disarming
/// several removes exactly those.
async fn timers_armed_together_keep_the_claim_rules(backend: Backend) {
    let Some((db, _other)) = setup(backend, "arm_many").await else {
        return;
    };
    let arm = |id: &str, secs: i64| timers::Arm {
        id: id.to_string(),
        kind: "k",
        subject: "s",
        due: at(secs),
        payload: b"",
    };
    let mut tx = db.db.begin().await.unwrap();
    timers::arm_many(&mut tx.conn(), &[arm("a", 10), arm("b", 10), arm("c", 10)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let claimed = timers::claim_due(&db.db, at(10), "one", SignedDuration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);

    // a at the same instant, b moved: a stays claimed, b is free again.
    let mut tx = db.db.begin().await.unwrap();
    timers::arm_many(&mut tx.conn(), &[arm("a", 10), arm("b", 20)])
        .await
        .unwrap();
    assert_eq!(
        timers::disarm_many(&mut tx.conn(), &["c".to_string(), "zz".to_string()])
            .await
            .unwrap(),
        1
    );
    tx.commit().await.unwrap();
    let again = timers::claim_due(&db.db, at(20), "two", SignedDuration::from_secs(60), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = again.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["b"], "a is still claimed by one; c is gone");
}

/// Work that fails is tried again later, each wait twice the one before,
/// and the timer counts its attempts across retries.
async fn a_retried_timer_backs_off_and_counts_its_attempts(backend: Backend) {
    let Some((db, _other)) = setup(backend, "a_retried_timer_backs_off").await else {
        return;
    };
    let db = &db.db;
    let mut conn = db.acquire().await.unwrap();
    timers::arm(&mut conn.conn(), "mail", "mail", "x", t0(), b"p")
        .await
        .unwrap();
    drop(conn);
    let mut now = t0();
    for (attempt, wait) in [(1, 30), (2, 60), (3, 120), (4, 240)] {
        let claimed = timers::claim_due(db, now, "a", timers::LEASE, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        assert_eq!(claimed[0].attempts, attempt);
        assert_eq!(claimed[0].payload, b"p");
        timers::retry_later(db, now, "a", &claimed[0])
            .await
            .unwrap();
        let later = now.checked_add(SignedDuration::from_secs(wait)).unwrap();
        let early = later.checked_sub(SignedDuration::from_secs(1)).unwrap();
        assert!(
            timers::claim_due(db, early, "a", timers::LEASE, 10)
                .await
                .unwrap()
                .is_empty(),
            "not before {wait} s"
        );
        now = later;
    }
    // Someone whose claim it is not moves nothing: once the lease runs out
    // the timer is due as it was.
    let claimed = timers::claim_due(db, now, "a", timers::LEASE, 10)
        .await
        .unwrap();
    timers::retry_later(db, now, "b", &claimed[0])
        .await
        .unwrap();
    let after_lease = now.checked_add(timers::LEASE).unwrap();
    let again = timers::claim_due(db, after_lease, "c", timers::LEASE, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].due_time, again[0].attempts), (to_micros(now), 6));
}

concierge_common::both_backends!(
    multi_thread;
    each_timer_fires_once_with_two_instances,
    a_claimer_that_dies_is_replaced_after_its_lease,
    a_dead_claimers_timers_are_taken_over_within_the_short_lease,
    timers_armed_together_keep_the_claim_rules,
    a_retried_timer_backs_off_and_counts_its_attempts
);
