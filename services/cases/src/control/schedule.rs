//! The weekly run: a persisted timer ticks every quarter of an hour on
//! whichever replica claims it. The timer carries the instant its last tick
//! covered; each tick sends this week's document to every account at or
//! over an MRC threshold whose send time (a weekday and minute in the
//! account's own time zone) fell since then and that has had none this
//! week. A run that was down on Monday catches up when it is back; a run
//! started (or switched on) on a Thursday waits for next Monday.

use concierge_common::clock;
use concierge_common::crud::Ctx;
use concierge_common::error::{Error, Result};
use concierge_common::storage::Conn;
use concierge_common::timers;
use concierge_proto::concierge::cases::v1::*;
use jiff::{SignedDuration, Timestamp};

use super::issue::Issue;
use super::{week_key, zone};
use crate::{Cases, store};

/// The timer kind (and id) of the weekly run's tick.
pub(crate) const TICK: &str = "control_docs_tick";
/// How often the weekly run looks for accounts due.
const EVERY: SignedDuration = SignedDuration::from_mins(15);
/// The most accounts one threshold sends to in a tick.
const MAX_ACCOUNTS: usize = 10_000;

/// Arms the tick if it is not armed: at start, on every replica. Its
/// first window starts now.
pub(crate) async fn arm_tick(conn: &mut Conn<'_>, now: Timestamp) -> Result<()> {
    timers::arm_if_absent(conn, TICK, TICK, TICK, now, &covered(now)).await
}

fn covered(t: Timestamp) -> Vec<u8> {
    clock::to_micros(t).to_string().into_bytes()
}

fn covered_until(payload: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(payload)
        .ok()?
        .parse::<i64>()
        .ok()
        .map(clock::from_micros)
}

/// This week's send instant of an account in `tz`: the settings' weekday
/// and minute in the ISO week of `now`'s local date, with the week's key.
pub(crate) fn due_this_week(
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
    weekday: Weekday,
    minute: i32,
) -> Result<(Timestamp, String)> {
    let today = tz.to_datetime(now).date();
    let monday_offset = i64::from(today.weekday().to_monday_zero_offset());
    let target_offset = i64::from(weekday_number(weekday));
    let day = today
        .checked_add(SignedDuration::from_hours(
            24 * (target_offset - monday_offset),
        ))
        .map_err(Error::internal)?;
    let minute = minute.clamp(0, 24 * 60 - 1);
    let at = tz
        .to_timestamp(day.at((minute / 60) as i8, (minute % 60) as i8, 0, 0))
        .map_err(Error::internal)?;
    Ok((at, week_key(day)))
}

/// Whether (`since`, `now`] holds the send time in some time zone: every
/// zone's offset is a whole quarter of an hour between -12 and +14 hours, so
/// only those instants can be one. Outside them a tick asks nobody anything.
pub(crate) fn window_holds_a_send_time(
    since: Timestamp,
    now: Timestamp,
    weekday: Weekday,
    minute: i32,
) -> bool {
    let utc = jiff::tz::TimeZone::UTC;
    let Ok((this_week, _)) = due_this_week(now, &utc, weekday, minute) else {
        return true;
    };
    [0i64, 7, -7].iter().any(|weeks| {
        let base = this_week
            .checked_sub(SignedDuration::from_hours(24 * 7 * weeks))
            .unwrap_or(this_week);
        (-48i64..=56).any(|quarters| {
            let at = base
                .checked_sub(SignedDuration::from_mins(15 * quarters))
                .unwrap_or(base);
            since < at && at <= now
        })
    })
}

fn weekday_number(w: Weekday) -> i8 {
    match w {
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
        _ => 0,
    }
}

impl Cases {
    /// One tick: sends what is due, then arms the next tick; returns how
    /// many documents it issued.
    pub(crate) async fn weekly_control_documents(
        &self,
        owner: &str,
        timer: &timers::Claimed,
    ) -> Result<usize> {
        let now = clock::from_micros(self.store().now());
        let since =
            covered_until(&timer.payload).unwrap_or_else(|| now.checked_sub(EVERY).unwrap_or(now));
        let issued = self.send_due_documents(since, now).await;
        // A failed tick keeps its window: the next one tries it again, and
        // what went out meanwhile is not sent twice (one a week).
        let until = if issued.is_ok() { now } else { since };
        let mut tx = self.store().db().begin().await?;
        if timers::complete(&mut tx, owner, timer).await? {
            let next = now.checked_add(EVERY).unwrap_or(now);
            timers::arm(&mut tx.conn(), TICK, TICK, TICK, next, &covered(until)).await?;
        }
        tx.commit().await?;
        issued
    }

    /// Sends the documents whose send time fell in (`since`, `now`].
    async fn send_due_documents(&self, since: Timestamp, now: Timestamp) -> Result<usize> {
        let settings = self.control_settings().await?;
        if !settings.enabled || !self.mail().is_on() {
            return Ok(0);
        }
        let weekday = Weekday::try_from(settings.send_weekday).unwrap_or(Weekday::Monday);
        if !window_holds_a_send_time(since, now, weekday, settings.send_minute) {
            return Ok(0);
        }
        let ctx = Ctx::system("scheduler", "");
        let mut issued = 0;
        for threshold in &settings.mrc_thresholds {
            let accounts = self
                .directory()
                .accounts_at_or_over(threshold, MAX_ACCOUNTS)
                .await?;
            for account in accounts {
                let tz = zone(&account.time_zone);
                let (due, week) = due_this_week(now, &tz, weekday, settings.send_minute)?;
                if due <= since || due > now {
                    continue;
                }
                let already = {
                    let mut pooled = self.store().db().acquire().await?;
                    store::control::sent_in_week(&mut pooled.conn(), &account.name, &week).await?
                };
                if already.is_some() {
                    continue;
                }
                let sent = self
                    .issue_control_document(
                        &ctx,
                        Issue {
                            account: &account.name,
                            trigger: control_document::Trigger::Scheduled,
                            archive: true,
                            send: true,
                            extra_recipients: &[],
                            force: false,
                            once: None,
                        },
                    )
                    .await;
                match sent {
                    Ok(_) => issued += 1,
                    // A manual send got there first, or the account has
                    // nobody to send to (said once, here).
                    Err(Error::FailedPrecondition { description, .. }) => {
                        tracing::info!(account = %account.name, "{description}")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_window_around_the_send_time_somewhere_asks_for_accounts() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let monday_8 = |since: &str, now: &str| {
            window_holds_a_send_time(at(since), at(now), Weekday::Monday, 480)
        };
        // 08:00 in Istanbul (UTC+3) and in Chicago (UTC-6).
        assert!(monday_8("2026-11-30T04:50:00Z", "2026-11-30T05:05:00Z"));
        assert!(monday_8("2026-11-30T13:50:00Z", "2026-11-30T14:05:00Z"));
        // Wednesday noon is nobody's Monday 08:00.
        assert!(!monday_8("2026-12-02T11:50:00Z", "2026-12-02T12:05:00Z"));
        // Between two quarter hours, nothing.
        assert!(!monday_8("2026-11-30T05:01:00Z", "2026-11-30T05:14:00Z"));
        // A long gap across Monday holds them all.
        assert!(monday_8("2026-11-27T00:00:00Z", "2026-12-02T00:00:00Z"));
    }

    #[test]
    fn the_send_instant_is_the_weekday_and_time_in_the_accounts_zone() {
        let chicago = zone("America/Chicago");
        let istanbul = zone("Europe/Istanbul");
        let wed: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let (at, week) = due_this_week(wed, &chicago, Weekday::Monday, 480).unwrap();
        assert_eq!(at, "2026-11-30T14:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(week, "2026-W49");
        let (at, _) = due_this_week(wed, &istanbul, Weekday::Monday, 480).unwrap();
        assert_eq!(at, "2026-11-30T05:00:00Z".parse::<Timestamp>().unwrap());
        // Sunday evening in Chicago is still the week of that Monday.
        let sunday: Timestamp = "2026-12-07T03:00:00Z".parse().unwrap();
        let (_, week) = due_this_week(sunday, &chicago, Weekday::Monday, 480).unwrap();
        assert_eq!(week, "2026-W49");
        let (_, week) = due_this_week(sunday, &istanbul, Weekday::Monday, 480).unwrap();
        assert_eq!(week, "2026-W50");
    }
}
