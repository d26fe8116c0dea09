//! `concierge bench scores`: the CSAT service's score reads over
//! 10,000,000 survey responses on PostgreSQL, each against the same
//! aggregate (CSAT %, NPS, CES mean per group) written as one plain SQL
//! statement over the same rows, in the same run.
//!
//! The responses: 5,000 accounts in 200 portfolios, one year (December 2025
//! to November 2026) of surveys of the three kinds, four in five answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::clock::SystemClock;
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::storage::Db;
use concierge_csat::Csat;
use concierge_proto::csat::csat_service_server::{CsatService, SERVICE_NAME};
use concierge_proto::csat::*;

use super::{create_database, drop_database, percentile};

const ACCOUNTS: i64 = 5_000;
const PORTFOLIOS: i64 = 200;
/// 2025-12-01T00:00:00Z and a year on, in microseconds.
const FIRST: i64 = 1_764_547_200_000_000;
const YEAR: i64 = 365 * 86_400 * 1_000_000;

fn report(label: &str, lat: &[Duration]) -> (Duration, Duration) {
    let (p50, p99) = (
        percentile(lat.to_vec(), 0.5),
        percentile(lat.to_vec(), 0.99),
    );
    println!("  {label:<34} p50 {p50:>10.3?}  p99 {p99:>10.3?}");
    (p50, p99)
}

/// The same aggregate as one SQL statement: CSAT % (4-5 of answers), NPS
/// (% 9-10 minus % 0-6) and the CES mean per group.
fn plain_sql(group: &str, join: &str, filter: &str) -> String {
    format!(
        "SELECT {group} AS g, COUNT(*) AS sent, \
         100.0 * COUNT(*) FILTER (WHERE s.kind = 1 AND s.score >= 4) / NULLIF(COUNT(*) FILTER (WHERE s.kind = 1 AND s.score >= 1), 0) AS csat, \
         100.0 * (COUNT(*) FILTER (WHERE s.kind = 2 AND s.score >= 9) - COUNT(*) FILTER (WHERE s.kind = 2 AND s.score BETWEEN 0 AND 6)) \
           / NULLIF(COUNT(*) FILTER (WHERE s.kind = 2 AND s.score >= 0), 0) AS nps, \
         AVG(s.score) FILTER (WHERE s.kind = 3 AND s.score >= 1) AS ces \
         FROM surveys s {join} WHERE s.send_time > 0 AND s.send_time >= $1 AND s.send_time < $2 {filter} \
         GROUP BY 1 ORDER BY 1"
    )
}

const BY_MONTH: &str =
    "date_trunc('month', to_timestamp(s.send_time / 1000000.0) AT TIME ZONE 'UTC')";

pub async fn run(admin_url: &str, responses: i64, rounds: usize, keep: bool) -> anyhow::Result<()> {
    let (name, url) = create_database(admin_url).await?;
    let db = Db::connect(&url, 8).await?;
    let codec = PrincipalCodec::new("bench-secret-bench-secret".into());
    let nowhere = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let svc = Csat::open(
        db.clone(),
        codec.clone(),
        Arc::new(SystemClock),
        nowhere.clone(),
        nowhere,
    )
    .await?;
    let Db::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL only")
    };

    // Loaded without the secondary indexes, which are built afterwards
    // exactly as the migrations declare them.
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    sqlx::query("SET maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'surveys' AND indexname <> 'surveys_pkey'",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (index, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {index}"))
            .execute(&mut *conn)
            .await?;
    }
    let body = prost::Message::encode_to_vec(&Survey {
        state: survey::State::Answered as i32,
        ..Default::default()
    });
    sqlx::query(
        "INSERT INTO surveys (name, parent, account, create_time, update_time, delete_time, revision, body, \
         account_manager, contact, case_name, case_type, kind, state, detractor, survey_trigger, send_time, submit_time, score) \
         SELECT 'surveys/s' || i, '', 'accounts/a' || (i % $2), t, t, 0, 1, $1, \
         'staff/am' || ((i % $2) % $3), 'accounts/a' || (i % $2) || '/contacts/c', 'cases/c' || (i / 3), 1 + i % 5, k, \
         CASE WHEN i % 5 = 0 THEN 2 ELSE 3 END, 0, '', t, CASE WHEN i % 5 = 0 THEN 0 ELSE t + 3600000000 END, \
         CASE WHEN i % 5 = 0 THEN -1 WHEN k = 1 THEN 1 + r % 5 WHEN k = 2 THEN r % 11 ELSE 1 + r % 7 END \
         FROM (SELECT i, 1 + i % 3 AS k, (i * 7919) % 101 AS r, $4 + i * ($5 / $6) AS t FROM generate_series(CAST(0 AS BIGINT), $6 - 1) AS i) AS g",
    )
    .bind(&body)
    .bind(ACCOUNTS)
    .bind(PORTFOLIOS)
    .bind(FIRST)
    .bind(YEAR)
    .bind(responses)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO portfolios (account, account_manager, update_time, display_name) \
         SELECT 'accounts/a' || a, 'staff/am' || (a % $2), 0, 'Account ' || a FROM generate_series(CAST(0 AS BIGINT), $1 - 1) AS a",
    )
    .bind(ACCOUNTS)
    .bind(PORTFOLIOS)
    .execute(&mut *conn)
    .await?;
    for (_, definition) in &indexes {
        sqlx::query(definition).execute(&mut *conn).await?;
    }
    sqlx::query("ANALYZE surveys").execute(&mut *conn).await?;
    sqlx::query("ANALYZE portfolios")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    println!(
        "{responses} survey responses ({ACCOUNTS} accounts, {PORTFOLIOS} portfolios, 12 months) loaded and indexed in {:.1?}",
        started.elapsed()
    );

    let manager = Principal {
        subject: "apiKeys/bench".into(),
        role: Role::Manager,
        account: None,
        staff_member: Some("staff/am7".into()),
        display_name: "bench".into(),
    };
    let signed = codec.encode(&manager, SERVICE_NAME);
    fn req<M>(signed: &str, m: M) -> tonic::Request<M> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut()
            .insert(PRINCIPAL_HEADER, signed.parse().expect("a header"));
        r
    }
    let month = |year, month| Some(Month { year, month });
    let year = (month(2025, 12), month(2026, 11));
    let november_from = FIRST + 335 * 86_400 * 1_000_000;
    let all_from = FIRST;
    let all_to = FIRST + YEAR;

    struct Shape {
        label: &'static str,
        request: QueryScoresRequest,
        sql: String,
        binds: Vec<String>,
        from: i64,
        to: i64,
        rows: usize,
    }
    let shapes = [
        Shape {
            label: "whole company, 12 months by month",
            request: QueryScoresRequest {
                start_month: year.0,
                end_month: year.1,
                group_by: vec![Dimension::Month as i32],
                ..Default::default()
            },
            sql: plain_sql(BY_MONTH, "", ""),
            binds: vec![],
            from: all_from,
            to: all_to,
            rows: 12,
        },
        Shape {
            label: "one portfolio by account, 1 month",
            request: QueryScoresRequest {
                start_month: month(2026, 11),
                end_month: month(2026, 11),
                group_by: vec![Dimension::Account as i32],
                filter: "portfolio = \"staff/am7\"".into(),
                ..Default::default()
            },
            sql: plain_sql(
                "s.account",
                "LEFT JOIN portfolios p ON p.account = s.account",
                "AND COALESCE(p.account_manager, s.account_manager) = $3",
            ),
            binds: vec!["staff/am7".into()],
            from: november_from,
            to: all_to,
            rows: (ACCOUNTS / PORTFOLIOS) as usize,
        },
        Shape {
            label: "one account, 12 months by month",
            request: QueryScoresRequest {
                start_month: year.0,
                end_month: year.1,
                group_by: vec![Dimension::Month as i32],
                filter: "account = \"accounts/a42\"".into(),
                ..Default::default()
            },
            sql: plain_sql(BY_MONTH, "", "AND s.account = $3"),
            binds: vec!["accounts/a42".into()],
            from: all_from,
            to: all_to,
            rows: 12,
        },
    ];
    let mut summary = Vec::new();
    for shape in &shapes {
        println!("{}:", shape.label);
        let mut ours = Vec::new();
        let mut answer = QueryScoresResponse::default();
        for _ in 0..rounds {
            let t = Instant::now();
            answer = svc
                .query_scores(req(&signed, shape.request.clone()))
                .await
                .map_err(|s| anyhow::anyhow!("QueryScores: {s:?}"))?
                .into_inner();
            ours.push(t.elapsed());
        }
        anyhow::ensure!(
            answer.rows.len() == shape.rows,
            "{} rows, not {}",
            answer.rows.len(),
            shape.rows
        );
        let mut bare = Vec::new();
        let mut plain: Vec<(i64, Option<f64>)> = Vec::new();
        let sql = format!(
            "SELECT sent, CAST(csat AS DOUBLE PRECISION) FROM ({}) AS x",
            shape.sql
        );
        for _ in 0..rounds {
            let t = Instant::now();
            let mut q = sqlx::query_as::<_, (i64, Option<f64>)>(&sql)
                .bind(shape.from)
                .bind(shape.to);
            for b in &shape.binds {
                q = q.bind(b);
            }
            plain = q.fetch_all(pool).await?;
            bare.push(t.elapsed());
        }
        // Same rows, same figures: the comparison is of equal work.
        let ours_sent: i64 = answer
            .rows
            .iter()
            .map(|r| r.scores.unwrap_or_default().sent_count)
            .sum();
        let plain_sent: i64 = plain.iter().map(|(n, _)| n).sum();
        anyhow::ensure!(
            ours_sent == plain_sent,
            "QueryScores counted {ours_sent} surveys, the plain SQL {plain_sent}"
        );
        let mut ours_csat: Vec<f64> = answer
            .rows
            .iter()
            .map(|r| r.scores.unwrap_or_default().csat_percent)
            .collect();
        let mut plain_csat: Vec<f64> = plain.iter().map(|(_, c)| c.unwrap_or_default()).collect();
        ours_csat.sort_by(f64::total_cmp);
        plain_csat.sort_by(f64::total_cmp);
        anyhow::ensure!(
            ours_csat.len() == plain_csat.len()
                && ours_csat
                    .iter()
                    .zip(&plain_csat)
                    .all(|(a, b)| (a - b).abs() < 1e-6),
            "CSAT % per group {ours_csat:?} against {plain_csat:?}"
        );
        let (p50, p99) = report("QueryScores", &ours);
        let (b50, b99) = report("plain SQL, same aggregate", &bare);
        summary.push((shape.label, p50, p99, b50, b99));
    }

    // Each client's level and trend: two 90-day windows, twelve months and
    // the last answer of 100 accounts; the plain SQL reads the same three.
    println!("BatchGetClientSatisfactions, 100 accounts:");
    let names: Vec<String> = (0..100)
        .map(|a| format!("accounts/a{a}/satisfaction"))
        .collect();
    let accounts: Vec<String> = (0..100).map(|a| format!("accounts/a{a}")).collect();
    let mut ours = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let got = svc
            .batch_get_client_satisfactions(req(
                &signed,
                BatchGetClientSatisfactionsRequest {
                    names: names.clone(),
                },
            ))
            .await
            .map_err(|s| anyhow::anyhow!("BatchGetClientSatisfactions: {s:?}"))?
            .into_inner();
        ours.push(t.elapsed());
        anyhow::ensure!(got.client_satisfactions.len() == 100);
    }
    let now = concierge_common::clock::to_micros(jiff::Timestamp::now());
    let window = 90 * 86_400 * 1_000_000_i64;
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let rows: Vec<(String, bool, Option<f64>)> = sqlx::query_as(
            "SELECT s.account, s.send_time >= $2 AS current, \
             CAST(100.0 * COUNT(*) FILTER (WHERE s.kind = 1 AND s.score >= 4) / NULLIF(COUNT(*) FILTER (WHERE s.kind = 1 AND s.score >= 1), 0) AS DOUBLE PRECISION) \
             FROM surveys s WHERE s.account = ANY($4) AND s.send_time > 0 AND s.send_time >= $1 AND s.send_time < $3 GROUP BY 1, 2",
        )
        .bind(now - 2 * window)
        .bind(now - window)
        .bind(now)
        .bind(&accounts)
        .fetch_all(pool)
        .await?;
        anyhow::ensure!(!rows.is_empty());
        let months: Vec<(String, Option<f64>)> = sqlx::query_as(&format!(
            "SELECT g, CAST(csat AS DOUBLE PRECISION) FROM ({}) AS x",
            plain_sql(
                &format!("s.account || ' ' || CAST({BY_MONTH} AS TEXT)"),
                "",
                "AND s.account = ANY($3)"
            )
        ))
        .bind(now - 365 * 86_400 * 1_000_000)
        .bind(now)
        .bind(&accounts)
        .fetch_all(pool)
        .await?;
        let last: Vec<(String, i64)> = sqlx::query_as(
            "SELECT account, MAX(submit_time) FROM surveys WHERE submit_time > 0 AND submit_time <= $1 AND account = ANY($2) GROUP BY account",
        )
        .bind(now)
        .bind(&accounts)
        .fetch_all(pool)
        .await?;
        bare.push(t.elapsed());
        anyhow::ensure!(!months.is_empty() && !last.is_empty());
    }
    let (p50, p99) = report("BatchGetClientSatisfactions", &ours);
    let (b50, b99) = report("plain SQL: windows, months, last", &bare);
    summary.push(("100 clients' satisfaction", p50, p99, b50, b99));

    println!("\nratios (ours / plain SQL):");
    for (label, p50, p99, b50, b99) in summary {
        println!(
            "  {label:<36} p50 {:.2}  p99 {:.2}",
            p50.as_secs_f64() / b50.as_secs_f64(),
            p99.as_secs_f64() / b99.as_secs_f64()
        );
    }
    if keep {
        println!("kept {url}");
        return Ok(());
    }
    drop_database(admin_url, db, &name).await
}
