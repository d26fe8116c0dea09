//! Re-arm jobs (`calendar_rearms`): one per changed calendar, with how far
//! its walk through the open cases got.

use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Conn;

/// A re-arm job as stored.
pub(crate) struct Job {
    pub(crate) calendar: String,
    pub(crate) calendar_etag: String,
    pub(crate) generation: i64,
    /// The last case re-armed; the next batch starts after it.
    pub(crate) after_case: String,
}

/// Records (or restarts from the first case) the job of `calendar`, as of
/// its `etag`.
pub(crate) async fn record(
    conn: &mut Conn<'_>,
    calendar: &str,
    etag: &str,
    now: i64,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO calendar_rearms (calendar, calendar_etag, generation, after_case, create_time) \
         VALUES ($1, $2, 1, '', $3) \
         ON CONFLICT (calendar) DO UPDATE SET calendar_etag = excluded.calendar_etag, \
         generation = calendar_rearms.generation + 1, after_case = '', create_time = excluded.create_time")
        .bind(calendar)
        .bind(etag)
        .bind(now)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// The oldest job, if any.
pub(crate) async fn oldest(conn: &mut Conn<'_>) -> Result<Option<Job>> {
    let job: Option<(String, String, i64, String)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT calendar, calendar_etag, generation, after_case FROM calendar_rearms ORDER BY create_time, calendar LIMIT 1")
        .fetch_optional(&mut **c)
        .await?);
    Ok(
        job.map(|(calendar, calendar_etag, generation, after_case)| Job {
            calendar,
            calendar_etag,
            generation,
            after_case,
        }),
    )
}

/// Ends the job, or moves its mark past `last_case`; either only while no
/// newer change of the calendar restarted it (its `generation`).
pub(crate) async fn progress(
    conn: &mut Conn<'_>,
    job: &Job,
    last_case: Option<&str>,
) -> Result<()> {
    on_conn!(conn, c => {
        match last_case {
            None => sqlx::query("DELETE FROM calendar_rearms WHERE calendar = $1 AND generation = $2")
                .bind(&job.calendar)
                .bind(job.generation)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Some(last) => sqlx::query("UPDATE calendar_rearms SET after_case = $3 WHERE calendar = $1 AND generation = $2")
                .bind(&job.calendar)
                .bind(job.generation)
                .bind(last)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        }
    });
    Ok(())
}
