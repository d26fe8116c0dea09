//! `concierge bench storage`: keyset paging of ListCases and the SLA timer
//! sweep on PostgreSQL, each against a bare SQL baseline.

use std::time::Instant;

use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec};
use concierge_common::storage::Db;

use super::percentile;

pub async fn run(admin_url: &str, cases: i64, timer_count: i64) -> anyhow::Result<()> {
    use concierge_common::filter::Value;
    use concierge_common::paging::Cursor;
    use concierge_common::resource::{self, ListQuery, Scope};
    use concierge_common::storage::Conn;

    let (name, db, svc, codec) = super::fresh(admin_url).await?;
    let Db::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL only")
    };

    // A million cases, one body for all (paging reads rows, not bodies).
    let body = prost::Message::encode_to_vec(&concierge_proto::concierge::cases::v1::Case {
        title: "Circuit down".into(),
        ..Default::default()
    });
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO cases (name, parent, account, create_time, update_time, delete_time, revision, body, account_manager, site, contact, owner, performing_team, type, priority, state, hand_off_code, presented_to_carrier, withheld_by_dependency, sla_state, sla_next_target_time, jeopardy_flagged, construction_required, resolve_time) \
         SELECT 'cases/' || lpad(i::text, 8, '0'), '', 'accounts/a' || (i % 1000), 1700000000000000 + i * 1000000, 1700000000000000 + i * 1000000, 0, 1, $1, 'staff/am' || (i % 200), '', '', '', '', 1, 3, 2, '', 0, 0, 1, 0, 0, 0, 0 \
         FROM generate_series(1, $2) AS i",
    )
    .bind(&body)
    .bind(cases)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE cases").execute(pool).await?;
    println!("{cases} cases inserted in {:.1?}", started.elapsed());

    let kind = &concierge_cases::resources::CASES;
    let order = kind
        .fields
        .iter()
        .find(|f| f.name == "create_time")
        .copied();
    let page = |after: Option<Cursor>| ListQuery {
        scope: Scope::Parent(String::new()),
        account: None,
        filter: None,
        order: order.map(|f| (f, true)),
        show_deleted: false,
        after,
        limit: 50,
    };
    let deep = Cursor {
        name: format!("cases/{:08}", cases / 10),
        sort: Some(Value::Int(1_700_000_000_000_000 + (cases / 10) * 1_000_000)),
    };
    let measure = |label: &'static str, after: Option<Cursor>| {
        let db = db.clone();
        let q = page(after);
        async move {
            let mut lat = Vec::new();
            for _ in 0..200 {
                let mut c = db.acquire().await?;
                let mut conn: Conn<'_> = c.conn();
                let t = Instant::now();
                let p = resource::list(&mut conn, kind, &q).await?;
                lat.push(t.elapsed());
                anyhow::ensure!(p.items.len() == 50, "a full page");
            }
            let (p50, p99) = (percentile(lat.clone(), 0.5), percentile(lat, 0.99));
            println!("{label:<32} p50 {p50:>10.3?}  p99 {p99:>10.3?}");
            Ok::<_, anyhow::Error>(p50)
        }
    };
    let first = measure("ListCases page 1", None).await?;
    let deep_p50 = measure("ListCases at the 90% position", Some(deep)).await?;
    println!(
        "deep/page-1 p50 ratio: {:.2}",
        deep_p50.as_secs_f64() / first.as_secs_f64()
    );

    // The timer sweep against a bare SKIP LOCKED claim loop.
    let arm = async |prefix: &str| {
        sqlx::query("INSERT INTO timers (id, kind, subject, due_time, payload) SELECT $1 || i, 'sla_breach', 'cases/x', i, ''::bytea FROM generate_series(1, $2) AS i")
            .bind(prefix)
            .bind(timer_count)
            .execute(pool)
            .await
    };
    arm("bare-").await?;
    let started = Instant::now();
    let mut bare = 0u64;
    loop {
        let n = sqlx::query("DELETE FROM timers WHERE id IN (SELECT id FROM timers WHERE due_time <= $1 ORDER BY due_time LIMIT 100 FOR UPDATE SKIP LOCKED)")
            .bind(i64::MAX)
            .execute(pool)
            .await?
            .rows_affected();
        if n == 0 {
            break;
        }
        bare += n;
    }
    let bare_rate = bare as f64 / started.elapsed().as_secs_f64();
    arm("swept-").await?;
    let started = Instant::now();
    let mut swept = 0u64;
    let far = jiff::Timestamp::from_second(4_000_000_000).expect("a valid instant");
    loop {
        let batch = concierge_common::timers::claim_due(
            &db,
            far,
            "bench",
            jiff::SignedDuration::from_secs(60),
            100,
        )
        .await?;
        if batch.is_empty() {
            break;
        }
        for t in &batch {
            let mut tx = db.begin().await?;
            if concierge_common::timers::complete(&mut tx, "bench", t).await? {
                swept += 1;
            }
            tx.commit().await?;
        }
    }
    let swept_rate = swept as f64 / started.elapsed().as_secs_f64();
    let breach_rate = real_sweep(&svc, &codec, pool, timer_count).await?;
    println!("bare SKIP LOCKED delete loop: {bare_rate:>9.0} timers/s");
    println!(
        "claim + complete (one tx each): {swept_rate:>9.0} timers/s  ratio {:.2}",
        swept_rate / bare_rate
    );
    println!(
        "the SLA sweeper, breaches:       {breach_rate:>9.0} events/s  ratio {:.2}",
        breach_rate / bare_rate
    );
    super::drop_database(admin_url, db, &name).await
}

/// The service's own sweeper over `count` repair cases whose first-response
/// clocks breached an hour ago, each with its breach timer due: every timer
/// is claimed, its case's clock read from the ledger, the breach event
/// recorded and the case's SLA summary written. Returns breaches per second.
async fn real_sweep(
    svc: &concierge_cases::Cases,
    codec: &PrincipalCodec,
    pool: &sqlx::PgPool,
    count: i64,
) -> anyhow::Result<f64> {
    use concierge_proto::concierge::cases::v1::cases_service_server::CasesService;
    use concierge_proto::concierge::cases::v1::*;
    fn signed<T>(codec: &PrincipalCodec, m: T) -> anyhow::Result<tonic::Request<T>> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut().insert(
            PRINCIPAL_HEADER,
            codec
                .encode(&Principal::system("bench"), concierge_cases::SERVICE_NAME)
                .parse()?,
        );
        Ok(r)
    }
    svc.create_calendar(signed(
        codec,
        CreateCalendarRequest {
            calendar: Some(Calendar {
                display_name: "Around the clock".into(),
                time_zone: Some(concierge_proto::types::TimeZone { id: "UTC".into() }),
                working_periods: (1..=7)
                    .map(|weekday| WorkingPeriod {
                        weekday,
                        start_minute: 0,
                        end_minute: 1440,
                    })
                    .collect(),
                ..Default::default()
            }),
            calendar_id: "always".into(),
            ..Default::default()
        },
    )?)
    .await?;
    let policy = svc
        .create_sla_policy(signed(
            codec,
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Repairs".into(),
                    case_types: vec![CaseType::Repair as i32],
                    calendar: "calendars/always".into(),
                    first_response: Some(SlaTarget {
                        key: "first_response".into(),
                        display_name: "First response".into(),
                        duration: Some(prost_types::Duration {
                            seconds: 3600,
                            nanos: 0,
                        }),
                        basis: 0,
                    }),
                    ..Default::default()
                }),
                sla_policy_id: "repairs".into(),
                ..Default::default()
            },
        )?)
        .await?
        .into_inner();

    let opened = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let opened_us = concierge_common::clock::to_micros(opened);
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(10_000) {
        let names: Vec<String> = chunk
            .iter()
            .map(|i| format!("cases/sweep-{i:07}"))
            .collect();
        let bodies: Vec<Vec<u8>> = names
            .iter()
            .map(|name| {
                prost::Message::encode_to_vec(&Case {
                    name: name.clone(),
                    account: "accounts/a1".into(),
                    title: "Circuit down".into(),
                    r#type: CaseType::Repair as i32,
                    state: case::State::New as i32,
                    sla_policy: policy.name.clone(),
                    sla_policy_revision: policy.revision_id.clone(),
                    ..Default::default()
                })
            })
            .collect();
        sqlx::query(
            "INSERT INTO cases (name, parent, account, create_time, update_time, delete_time, revision, body, account_manager, site, contact, owner, performing_team, type, priority, state, hand_off_code, presented_to_carrier, withheld_by_dependency, sla_state, sla_next_target_time, jeopardy_flagged, construction_required, resolve_time) \
             SELECT n, '', 'accounts/a1', $3, $3, 0, 1, b, 'staff/am', '', '', '', '', $4, 3, $5, '', 0, 0, 0, 0, 0, 0, 0 FROM UNNEST($1::text[], $2::bytea[]) AS t(n, b)",
        )
        .bind(&names)
        .bind(&bodies)
        .bind(opened_us)
        .bind(CaseType::Repair as i64)
        .bind(case::State::New as i64)
        .execute(pool)
        .await?;
        sqlx::query("INSERT INTO case_states (case_name, seq, state, enter_time, reason, actor) SELECT n, 1, $2, $3, '', 'bench' FROM UNNEST($1::text[]) AS t(n)")
            .bind(&names)
            .bind(case::State::New as i64)
            .bind(opened_us)
            .execute(pool)
            .await?;
        // Each clock's index row, as the case's last change left it.
        sqlx::query("INSERT INTO sla_clocks (name, parent, account, create_time, update_time, revision, body, clock_key, kind, state, status, target_time, breach_time, sla_policy) SELECT n || '/slaClocks/first_response', n, 'accounts/a1', $2, $2, 1, ''::bytea, 'first_response', $3, $4, $5, $6, 0, $7 FROM UNNEST($1::text[]) AS t(n)")
            .bind(&names)
            .bind(opened_us)
            .bind(sla_clock::Kind::Client as i64)
            .bind(SlaState::OnTrack as i64)
            .bind(sla_clock::Status::Running as i64)
            .bind(opened_us + 3_600_000_000)
            .bind(&policy.name)
            .execute(pool)
            .await?;
        sqlx::query("INSERT INTO timers (id, kind, subject, due_time, payload) SELECT n || '/slaClocks/first_response:sla_breach', 'sla_breach', n, $2, $3 FROM UNNEST($1::text[]) AS t(n)")
            .bind(&names)
            .bind(opened_us + 3_600_000_000)
            .bind(b"first_response".as_slice())
            .execute(pool)
            .await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    println!(
        "{count} breached repair cases and their timers set up in {:.1?}",
        started.elapsed()
    );
    let started = Instant::now();
    let fired = svc
        .sweep_timers("bench-sweeper", jiff::Timestamp::now())
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        fired as i64 == count,
        "every due breach fires once: {fired} of {count}"
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE type = 'concierge.cases.v1.sla_clock_breached'",
    )
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(events == count, "{events} breach events in the outbox");
    Ok(count as f64 / elapsed.as_secs_f64())
}
