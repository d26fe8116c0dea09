//! `concierge bench review|chase|control-doc`: the account manager's daily
//! reads and the chasing behind them, on PostgreSQL, each against a bare SQL
//! baseline measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::clock::SystemClock;
use concierge_common::principal::{Principal, Role};
use concierge_common::storage::Db;
use concierge_proto::concierge::cases::v1::*;

use super::{drop_database, fresh, percentile};

fn report(label: &str, lat: &[Duration]) -> Duration {
    let (p50, p99) = (
        percentile(lat.to_vec(), 0.5),
        percentile(lat.to_vec(), 0.99),
    );
    println!("{label:<44} p50 {p50:>10.3?}  p99 {p99:>10.3?}");
    p50
}

/// The portfolio review of a manager with `mine` open cases that need
/// action among `total` cases, through the gateway's review (every finding
/// source, ranked and counted), against the bare SQL read of the same rows.
pub async fn review(admin_url: &str, total: i64, mine: i64, rounds: usize) -> anyhow::Result<()> {
    let (name, db, svc, codec) = fresh(admin_url).await?;
    let Db::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL only")
    };
    // Bodies: a JP without a reason for the manager's, a quiet case for the
    // others; every fourth case of the manager's also breached.
    let jp = |i: i64| {
        prost::Message::encode_to_vec(&Case {
            title: format!("Order {i}"),
            r#type: CaseType::OrderNew as i32,
            state: case::State::Jeopardy as i32,
            account: format!("accounts/a{}", i % 50),
            jeopardy: Some(Jeopardy {
                flagged_missing_reason: true,
                ..Default::default()
            }),
            sla: (i % 4 == 0).then(|| CaseSlaSummary {
                state: SlaState::Breached as i32,
                breached_clock_keys: vec!["resolve".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let started = Instant::now();
    let quiet = prost::Message::encode_to_vec(&Case {
        title: "Quiet".into(),
        state: case::State::InProgress as i32,
        ..Default::default()
    });
    sqlx::query(
        "INSERT INTO cases (name, parent, account, create_time, update_time, delete_time, revision, body, account_manager, site, contact, owner, performing_team, type, priority, state, hand_off_code, presented_to_carrier, withheld_by_dependency, sla_state, sla_next_target_time, jeopardy_flagged, construction_required, resolve_time, finding_reason, finding_due_time, chase_highest_step) \
         SELECT 'cases/q' || lpad(i::text, 8, '0'), '', 'accounts/b' || (i % 1000), 1700000000000000 + i, 1700000000000000 + i, 0, 1, $1, 'staff/am' || (i % 200), '', '', '', '', 1, 3, 3, '', 0, 0, 1, 0, 0, 0, 0, CASE WHEN i % 10 = 0 THEN 6 ELSE 0 END, 1700000000000000 + i, 0 \
         FROM generate_series(1, $2) AS i",
    )
    .bind(&quiet)
    .bind(total - mine)
    .execute(pool)
    .await?;
    for chunk in (0..mine).collect::<Vec<_>>().chunks(5_000) {
        let names: Vec<String> = chunk.iter().map(|i| format!("cases/m{i:08}")).collect();
        let bodies: Vec<Vec<u8>> = chunk.iter().map(|i| jp(*i)).collect();
        let reasons: Vec<i64> = chunk
            .iter()
            .map(|i| if i % 4 == 0 { 1 } else { 2 })
            .collect();
        sqlx::query(
            "INSERT INTO cases (name, parent, account, create_time, update_time, delete_time, revision, body, account_manager, site, contact, owner, performing_team, type, priority, state, hand_off_code, presented_to_carrier, withheld_by_dependency, sla_state, sla_next_target_time, jeopardy_flagged, construction_required, resolve_time, finding_reason, finding_due_time, chase_highest_step) \
             SELECT n, '', 'accounts/a1', 1700000000000000, 1700000000000000, 0, 1, b, 'staff/ayse', '', '', '', '', 2, 3, 6, '', 0, 0, 0, 0, 1, 0, 0, r, 1700000000000000 + o, 0 FROM UNNEST($1::text[], $2::bytea[], $3::bigint[]) WITH ORDINALITY AS t(n, b, r, o)",
        )
        .bind(&names)
        .bind(&bodies)
        .bind(&reasons)
        .execute(pool)
        .await?;
    }
    sqlx::query("ANALYZE cases").execute(pool).await?;
    println!(
        "{total} cases ({mine} of staff/ayse need action) inserted in {:.1?}",
        started.elapsed()
    );

    let mut backends = std::collections::BTreeMap::new();
    backends.insert(
        concierge_cases::SERVICE_NAME,
        concierge_gateway::local(svc.server()),
    );
    let review = concierge_gateway::review::Review::new(
        concierge_gateway::review::sources(&backends, &codec),
        None,
        codec.clone(),
        Arc::new(SystemClock),
    );
    let caller = Principal {
        subject: "apiKeys/bench".into(),
        role: Role::Manager,
        account: None,
        staff_member: Some("staff/ayse".into()),
        display_name: "bench".into(),
    };
    let request = concierge_proto::concierge::gateway::v1::GetPortfolioReviewRequest {
        page_size: 50,
        ..Default::default()
    };
    let mut lat = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let page = review.page(&caller, "", &request).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(
            page.total_size as i64 == mine,
            "the whole portfolio: {}",
            page.total_size
        );
    }
    let whole = report("GetPortfolioReview (first page, whole review)", &lat);
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM cases WHERE account_manager = $1 AND finding_reason > 0 AND delete_time = 0 ORDER BY finding_reason, finding_due_time, name",
        )
        .bind("staff/ayse")
        .fetch_all(pool)
        .await?;
        bare.push(t.elapsed());
        anyhow::ensure!(rows.len() as i64 == mine);
    }
    let sql = report("bare SQL read of the same rows", &bare);
    println!(
        "review / bare SQL p50 ratio: {:.2}",
        whole.as_secs_f64() / sql.as_secs_f64()
    );
    drop_database(admin_url, db, &name).await
}

/// `count` cases whose JP condition has just become true, their first
/// chase step due: the service's sweep takes them all (note, step, next
/// step, events, summary), against a hand-written loop doing the same
/// writes (claim, note, step row, event) in one transaction per step.
pub async fn chase(admin_url: &str, count: usize) -> anyhow::Result<()> {
    let (name, db, svc, _codec) = fresh(admin_url).await?;
    let Db::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL only")
    };
    let now = jiff::Timestamp::now();
    let started = Instant::now();
    concierge_cases::bench::seed_jeopardy_runs(
        &svc,
        "accounts/a1",
        count,
        concierge_common::clock::to_micros(now),
    )
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    println!(
        "{count} JP cases with their runs started in {:.1?}",
        started.elapsed()
    );

    let started = Instant::now();
    let mut taken = 0;
    loop {
        let n = svc.sweep_timers("bench-sweeper", now).await?;
        if n == 0 {
            break;
        }
        taken += n;
    }
    let elapsed = started.elapsed();
    let steps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chase_steps WHERE state = 2")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(steps as usize == count, "{steps} steps done of {count}");
    let engine_rate = count as f64 / elapsed.as_secs_f64();
    println!("sweep: {taken} steps in {elapsed:.1?}");

    // The bare loop: the same writes, by hand.
    sqlx::query("INSERT INTO timers (id, kind, subject, due_time, payload) SELECT 'bare-' || i, 'bare', 'cases/chase-' || lpad(i::text, 7, '0'), 0, ''::bytea FROM generate_series(0, $1 - 1) AS i")
        .bind(count as i64)
        .execute(pool)
        .await?;
    let note = prost::Message::encode_to_vec(&Note {
        body: "provisioning: please give us the reason for the jeopardy".into(),
        visibility: note::Visibility::Internal as i32,
        ..Default::default()
    });
    let started = Instant::now();
    let mut bare = 0;
    loop {
        // Claimed 200 at a time with a lease, as the sweep claims; each
        // step then completes its timer with its writes in one transaction.
        let claimed: Vec<(String, String)> = sqlx::query_as(
            "UPDATE timers SET lease_owner = 'bare', lease_expire_time = 1 WHERE id IN \
             (SELECT id FROM timers WHERE kind = 'bare' AND lease_owner = '' ORDER BY due_time LIMIT 200 FOR UPDATE SKIP LOCKED) \
             RETURNING id, subject",
        )
        .fetch_all(pool)
        .await?;
        if claimed.is_empty() {
            break;
        }
        for (id, subject) in claimed {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM timers WHERE id = $1 AND lease_owner = 'bare'")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO notes (name, parent, account, create_time, update_time, delete_time, revision, body, visibility, origin, author) VALUES ($1, $2, 'accounts/a1', 1, 1, 0, 1, $3, 1, 2, 'system/chase-rules')")
                .bind(format!("{subject}/notes/{id}"))
                .bind(&subject)
                .bind(&note)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO chase_steps (name, parent, account, create_time, update_time, delete_time, revision, body, chase_run, rule, step_number, state, schedule_time, execute_time) VALUES ($1, $2, '', 1, 1, 0, 1, $3, $4, 'chaseRules/jeopardy-without-reason', 9, 2, 1, 1)")
                .bind(format!("{subject}/chaseSteps/{id}"))
                .bind(&subject)
                .bind(&note)
                .bind(format!("{subject}/chaseRuns/{id}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO outbox (id, type, subject, account, visibility, occur_time, event) VALUES ($1, 'concierge.cases.v1.chase_step_taken', $2, 'accounts/a1', 1, 1, $3)")
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&subject)
                .bind(&note)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            bare += 1;
        }
    }
    let bare_rate = bare as f64 / started.elapsed().as_secs_f64();
    println!(
        "hand-written loop (claim 200 with a lease; then per step: complete, note, step row, event): {bare_rate:>9.0} steps/s"
    );
    println!(
        "the chase sweep (prepare, lock case and run, note, step, next step and its timer, events, summary): {engine_rate:>9.0} steps/s  ratio {:.2}",
        engine_rate / bare_rate
    );
    drop_database(admin_url, db, &name).await
}

/// An account's control document with `requests` open requests: the time
/// to write its rows, CSV and HTML, against reading those cases from
/// PostgreSQL.
pub async fn control_doc(admin_url: &str, requests: usize, rounds: usize) -> anyhow::Result<()> {
    let (name, db, _svc, _codec) = fresh(admin_url).await?;
    let Db::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL only")
    };
    let cases: Vec<Case> = (0..requests)
        .map(|i| Case {
            name: format!("cases/d{i:06}"),
            title: format!("Request {i} <for> \"HQ\""),
            r#type: [CaseType::OrderNew, CaseType::Repair, CaseType::Billing][i % 3] as i32,
            state: if i % 7 == 0 {
                case::State::Jeopardy
            } else {
                case::State::InProgress
            } as i32,
            jeopardy: (i % 7 == 0).then(Jeopardy::default),
            performing_team: "provisioning".into(),
            account: "accounts/a1".into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_764_000_000 + i as i64,
                nanos: 0,
            }),
            ..Default::default()
        })
        .collect();
    let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
    let bodies: Vec<Vec<u8>> = cases.iter().map(prost::Message::encode_to_vec).collect();
    sqlx::query(
        "INSERT INTO cases (name, parent, account, create_time, update_time, delete_time, revision, body, account_manager, site, contact, owner, performing_team, type, priority, state, hand_off_code, presented_to_carrier, withheld_by_dependency, sla_state, sla_next_target_time, jeopardy_flagged, construction_required, resolve_time) \
         SELECT n, '', 'accounts/a1', 1, 1, 0, 1, b, 'staff/ayse', '', '', '', '', 1, 3, 3, '', 0, 0, 0, 0, 0, 0, 0 FROM UNNEST($1::text[], $2::bytea[]) AS t(n, b)",
    )
    .bind(&names)
    .bind(&bodies)
    .execute(pool)
    .await?;
    let mut read = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM cases WHERE account = $1 ORDER BY name")
                .bind("accounts/a1")
                .fetch_all(pool)
                .await?;
        read.push(t.elapsed());
        anyhow::ensure!(rows.len() == requests);
    }
    let mut write = Vec::new();
    let mut size = (0, 0);
    for _ in 0..rounds {
        let t = Instant::now();
        let (csv, html) =
            concierge_cases::bench::render_control_document(&cases, "America/Chicago")?;
        write.push(t.elapsed());
        size = (csv.len(), html.len());
    }
    let r = report(&format!("reading {requests} cases (bare SQL)"), &read);
    let w = report("rows, CSV and HTML of them", &write);
    println!(
        "CSV {} KiB, HTML {} KiB; writing / reading p50 ratio: {:.2}",
        size.0 / 1024,
        size.1 / 1024,
        w.as_secs_f64() / r.as_secs_f64()
    );
    drop_database(admin_url, db, &name).await
}
