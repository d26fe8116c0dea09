//! A case's SLA clocks read now: its pinned policy revision, its calendar
//! in the right time zone, and its state history, through the engines. Read
//! by the gRPC methods and by the timer sweep alike (nothing here is gRPC).

use std::collections::HashMap;

use concierge_common::clock;
use concierge_common::crud::Ctx;
use concierge_common::error::{Error, Result};
use concierge_common::names;
use concierge_proto::concierge::cases::v1::{
    Calendar, Case, SlaClock, SlaClockSegment, SlaPolicy, SlaTarget, case,
};

use crate::{Cases, RULES, calendar};

/// A clock read now: the clock, its ledger, its target and the states that
/// pause it.
pub(crate) type ReadClock = (SlaClock, Vec<SlaClockSegment>, SlaTarget, Vec<i32>);

/// What reading clocks looks up besides the case, kept across the cases of
/// one sweep.
#[derive(Default)]
pub(crate) struct Lookups {
    policies: HashMap<(String, String), SlaPolicy>,
    calendars: HashMap<String, calendar::BusinessCalendar>,
    zones: HashMap<String, String>,
}
impl Cases {
    /// A case with its clocks read now, each with its ledger.
    pub(crate) async fn case_clocks(&self, ctx: &Ctx, case_name: &str) -> Result<Vec<ReadClock>> {
        names::parse("parent", case_name, &["cases"])?;
        let c: Case = self.store().get(&RULES, ctx, case_name).await?;
        let history = self.case_histories(&[case_name]).await?;
        let history = history
            .get(case_name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.clocks_of(&c, history, &mut Lookups::default()).await
    }

    /// The clocks of `c` read now; `lookups` keeps the policies, calendars
    /// and time zones read on the way, for a sweep that reads many cases.
    pub(crate) async fn clocks_of(
        &self,
        c: &Case,
        history: &[crate::sla::StateChange<case::State>],
        lookups: &mut Lookups,
    ) -> Result<Vec<ReadClock>> {
        if c.sla_policy.is_empty() {
            return Ok(Vec::new());
        }
        let system = Ctx::system("cases", "");
        let key = (c.sla_policy.clone(), c.sla_policy_revision.clone());
        if !lookups.policies.contains_key(&key) {
            let policy = self
                .sla_policy_revision(&system, &c.sla_policy, &c.sla_policy_revision)
                .await?;
            lookups.policies.insert(key.clone(), policy);
        }
        let policy = &lookups.policies[&key];
        if !lookups.calendars.contains_key(&policy.calendar) {
            let stored: Calendar = self.store().get(&RULES, &system, &policy.calendar).await?;
            let cal = calendar::from_proto(&stored).map_err(Error::internal)?;
            lookups.calendars.insert(policy.calendar.clone(), cal);
        }
        let cal = lookups.calendars[&policy.calendar].clone();
        let cal = self
            .calendar_in_zone(&lookups.policies[&key], c, cal, &mut lookups.zones)
            .await?;
        let now = clock::from_micros(self.store().now());
        Ok(read_clocks(&lookups.policies[&key], c, &cal, history, now))
    }

    /// `cal` in the zone `policy` counts `c`'s business time in: the site's
    /// or the account's when it says so and they have one, else the
    /// calendar's own. `zones` keeps the zones looked up, by place.
    pub(crate) async fn calendar_in_zone(
        &self,
        policy: &SlaPolicy,
        c: &Case,
        cal: calendar::BusinessCalendar,
        zones: &mut HashMap<String, String>,
    ) -> Result<calendar::BusinessCalendar> {
        use concierge_proto::concierge::cases::v1::sla_policy::TimeZoneSource;
        // Site and account names never collide, so one cache holds both. A
        // case with no site, or a site with no zone, is read in the
        // account's zone, as the policy's contract says.
        let source =
            TimeZoneSource::try_from(policy.time_zone_source).unwrap_or(TimeZoneSource::Calendar);
        let places: Vec<&String> = match source {
            TimeZoneSource::Site if !c.site.is_empty() => vec![&c.site, &c.account],
            TimeZoneSource::Site | TimeZoneSource::Account => vec![&c.account],
            _ => vec![],
        };
        for place in places {
            if !zones.contains_key(place) {
                let zone = if *place == c.site {
                    self.directory().site_time_zone("", place).await?
                } else {
                    self.directory()
                        .account("", "case.account", place)
                        .await?
                        .time_zone
                };
                zones.insert(place.clone(), zone);
            }
            let zone = &zones[place];
            if !zone.is_empty() {
                return cal.in_time_zone(zone);
            }
        }
        Ok(cal)
    }

    /// The states each of `cases` entered, in order, in one query.
    pub(crate) async fn case_histories(
        &self,
        cases: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<crate::sla::StateChange<case::State>>>> {
        let mut pooled = self.store().db().acquire().await?;
        crate::store::cases::histories(&mut pooled.conn(), cases).await
    }
}

/// The clocks `policy` gives `c`, read at `now` in `cal` from the states
/// it entered: the one reading the gRPC methods, the timer sweep and a new
/// case's create all share.
pub(crate) fn read_clocks(
    policy: &SlaPolicy,
    c: &Case,
    cal: &calendar::BusinessCalendar,
    history: &[crate::sla::StateChange<case::State>],
    now: jiff::Timestamp,
) -> Vec<ReadClock> {
    let zone_name = cal.time_zone().iana_name().unwrap_or_default().to_string();
    let pauses: Vec<i32> = crate::policy::pause_states(policy)
        .into_iter()
        .map(|s| s as i32)
        .collect();
    crate::clocks::definitions(policy, c)
        .into_iter()
        .map(|def| {
            let r = crate::clocks::read(&def, policy, c, cal, history, now);
            let clock = crate::clocks::to_proto(&def, &r, policy, c, &zone_name, now);
            let segments = crate::clocks::segments(&r, &policy.calendar);
            (clock, segments, def.target.clone(), pauses.clone())
        })
        .collect()
}

/// `o` read at `now`: its down time so far (or in total once restored) and
/// the part of it during which the case waited on the client, from the
/// states it entered.
pub(crate) fn read_outage(
    o: &mut concierge_proto::concierge::cases::v1::Outage,
    history: &[crate::sla::StateChange<case::State>],
    now: jiff::Timestamp,
) {
    use jiff::SignedDuration;
    let instant = |t: &Option<prost_types::Timestamp>| t.as_ref().and_then(clock::from_proto);
    let Some(start) = instant(&o.start_time) else {
        o.duration = None;
        o.client_hold_duration = None;
        return;
    };
    let end = instant(&o.restore_time).unwrap_or(now).max(start);
    let mut held = SignedDuration::ZERO;
    for (i, change) in history.iter().enumerate() {
        if change.state != case::State::PendingClient {
            continue;
        }
        let left = history.get(i + 1).map_or(now, |next| next.at);
        let (from, to) = (change.at.max(start), left.min(end));
        if to > from {
            held += to.duration_since(from);
        }
    }
    let proto = concierge_common::bounded::Duration::to_proto;
    o.duration = Some(proto(end.duration_since(start)));
    o.client_hold_duration = Some(proto(held));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::StateChange;
    use concierge_proto::concierge::cases::v1::Outage;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_outage_leaves_out_only_the_wait_on_the_client_within_it() {
        let history = [
            StateChange {
                at: at("2026-11-02T08:00:00Z"),
                state: case::State::New,
            },
            StateChange {
                at: at("2026-11-02T09:00:00Z"),
                state: case::State::InProgress,
            },
            StateChange {
                at: at("2026-11-02T10:00:00Z"),
                state: case::State::PendingClient,
            },
            StateChange {
                at: at("2026-11-02T11:30:00Z"),
                state: case::State::InProgress,
            },
            // Waiting on the client again after the service came back.
            StateChange {
                at: at("2026-11-02T18:00:00Z"),
                state: case::State::PendingClient,
            },
        ];
        let mut o = Outage {
            start_time: Some(clock::to_proto(at("2026-11-02T08:30:00Z"))),
            restore_time: Some(clock::to_proto(at("2026-11-02T16:00:00Z"))),
            ..Default::default()
        };
        read_outage(&mut o, &history, at("2026-11-03T00:00:00Z"));
        assert_eq!(o.duration.unwrap().seconds, 7 * 3600 + 1800);
        assert_eq!(o.client_hold_duration.unwrap().seconds, 5400);
    }

    #[test]
    fn an_outage_still_running_counts_to_now() {
        let history = [StateChange {
            at: at("2026-11-02T08:00:00Z"),
            state: case::State::PendingClient,
        }];
        let mut o = Outage {
            start_time: Some(clock::to_proto(at("2026-11-02T09:00:00Z"))),
            ..Default::default()
        };
        read_outage(&mut o, &history, at("2026-11-02T10:00:00Z"));
        assert_eq!(o.duration.unwrap().seconds, 3600);
        assert_eq!(o.client_hold_duration.unwrap().seconds, 3600);
    }
}
