//! The cases service through its gRPC trait, with signed principals as the
//! gateway delivers them; once on SQLite, once on PostgreSQL.

use std::sync::Arc;

use concierge_cases::Cases;
use concierge_common::clock::TestClock;
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::testing::{Backend, TestDb};
use concierge_proto::concierge::cases::v1::cases_service_server::CasesService;
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::types::TimeZone;
use prost_types::{Duration, FieldMask, Timestamp};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

struct Harness {
    svc: Cases,
    codec: PrincipalCodec,
    _db: TestDb,
}

impl Harness {
    async fn new(backend: Backend, test: &str) -> Option<Self> {
        let db = TestDb::new(backend, test).await?;
        let codec = PrincipalCodec::new("cases-test-secret".into());
        let clock = TestClock::new("2026-11-02T09:00:00Z".parse().unwrap());
        let svc = Cases::open(db.db.clone(), codec.clone(), Arc::new(clock))
            .await
            .unwrap();
        Some(Self {
            svc,
            codec,
            _db: db,
        })
    }

    fn req<T>(&self, who: &Principal, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert(PRINCIPAL_HEADER, self.codec.encode(who).parse().unwrap());
        r
    }
}

fn who(role: Role) -> Principal {
    Principal {
        subject: format!("apiKeys/{role:?}"),
        role,
        account: (role == Role::Client).then(|| "accounts/acme".to_string()),
        staff_member: None,
        display_name: format!("{role:?}"),
    }
}

fn violations(status: &Status) -> Vec<String> {
    let mut v: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn ts(s: &str) -> Timestamp {
    let t: jiff::Timestamp = s.parse().unwrap();
    Timestamp {
        seconds: t.as_second(),
        nanos: 0,
    }
}

fn hours(h: i64) -> Duration {
    Duration {
        seconds: h * 3600,
        nanos: 0,
    }
}

/// Weekdays 09:00-17:00 in Chicago, with Thanksgiving 2026 off and the day
/// after a half day.
fn us_central() -> Calendar {
    let day = |weekday: Weekday| WorkingPeriod {
        weekday: weekday as i32,
        start_minute: 540,
        end_minute: 1020,
    };
    Calendar {
        display_name: "US Central business hours".into(),
        time_zone: Some(TimeZone {
            id: "America/Chicago".into(),
        }),
        working_periods: [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ]
        .into_iter()
        .map(day)
        .collect(),
        holidays: vec![
            Holiday {
                date: Some(LocalDate {
                    year: 2026,
                    month: 11,
                    day: 26,
                }),
                display_name: "Thanksgiving".into(),
                working_periods: vec![],
            },
            Holiday {
                date: Some(LocalDate {
                    year: 2026,
                    month: 11,
                    day: 27,
                }),
                display_name: "Day after Thanksgiving".into(),
                working_periods: vec![WorkingPeriod {
                    weekday: 0,
                    start_minute: 540,
                    end_minute: 780,
                }],
            },
        ],
        ..Default::default()
    }
}

macro_rules! suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                let h = super::Harness::new(concierge_common::testing::Backend::Sqlite, stringify!($test)).await.unwrap();
                super::$test(h).await;
            })+
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                let Some(h) = super::Harness::new(concierge_common::testing::Backend::Postgres, stringify!($test)).await else { return };
                super::$test(h).await;
            })+
        }
    };
}

suite!(
    business_time_across_a_holiday_weekend_and_in_a_sites_time_zone,
    calendars_are_checked_field_by_field_and_updated_by_mask,
    hand_off_codes_are_configuration,
    only_managers_change_configuration_and_clients_never_see_it,
);

async fn create_calendar(h: &Harness, id: &str, c: Calendar) -> Result<Calendar, Status> {
    h.svc
        .create_calendar(h.req(
            &who(Role::Admin),
            CreateCalendarRequest {
                calendar: Some(c),
                calendar_id: id.into(),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn business_time_across_a_holiday_weekend_and_in_a_sites_time_zone(h: Harness) {
    let cal = create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    assert_eq!(cal.name, "calendars/us-central");
    // Wednesday 2026-11-25 15:00 CST (21:00Z) + 8 business hours: 2 h Wednesday,
    // Thanksgiving off, 4 h on the half day, weekend, 2 h Monday → Monday 11:00 CST.
    let add = |start: &str, h_: i64, tz: Option<&str>| AddBusinessTimeRequest {
        calendar: "calendars/us-central".into(),
        start_time: Some(ts(start)),
        duration: Some(hours(h_)),
        time_zone: tz.map(|t| TimeZone { id: t.into() }),
    };
    let agent = who(Role::Agent);
    let r = h
        .svc
        .add_business_time(h.req(&agent, add("2026-11-25T21:00:00Z", 8, None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.end_time, Some(ts("2026-11-30T17:00:00Z")));
    assert_eq!(r.wall_clock_duration, Some(hours(116)));
    let m = h
        .svc
        .measure_business_time(h.req(
            &agent,
            MeasureBusinessTimeRequest {
                calendar: "calendars/us-central".into(),
                start_time: Some(ts("2026-11-25T21:00:00Z")),
                end_time: Some(ts("2026-11-30T17:00:00Z")),
                time_zone: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.business_duration, Some(hours(8)));
    assert_eq!(m.out_of_hours_duration, Some(hours(108)));
    // The same hours read at a site in Istanbul: Wednesday 15:00 CST is
    // 00:00 Thursday there, a holiday; the half day, then Monday 09:00-13:00 +03.
    let istanbul = h
        .svc
        .add_business_time(h.req(
            &agent,
            add("2026-11-25T21:00:00Z", 8, Some("Europe/Istanbul")),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(istanbul.end_time, Some(ts("2026-11-30T10:00:00Z")));

    for (bad, field) in [
        (
            AddBusinessTimeRequest {
                duration: Some(hours(-1)),
                ..add("2026-11-25T21:00:00Z", 1, None)
            },
            "duration",
        ),
        (
            AddBusinessTimeRequest {
                start_time: None,
                ..add("2026-11-25T21:00:00Z", 1, None)
            },
            "start_time",
        ),
        (
            add("2026-11-25T21:00:00Z", 1, Some("Nowhere/Land")),
            "time_zone.id",
        ),
        (
            AddBusinessTimeRequest {
                calendar: String::new(),
                ..add("2026-11-25T21:00:00Z", 1, None)
            },
            "calendar",
        ),
    ] {
        let err = h
            .svc
            .add_business_time(h.req(&agent, bad))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), violations(&err)),
            (Code::InvalidArgument, vec![field.to_string()])
        );
    }
    let missing = h
        .svc
        .add_business_time(h.req(
            &agent,
            AddBusinessTimeRequest {
                calendar: "calendars/nope".into(),
                ..add("2026-11-25T21:00:00Z", 1, None)
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn calendars_are_checked_field_by_field_and_updated_by_mask(h: Harness) {
    let mut bad = us_central();
    bad.display_name.clear();
    bad.time_zone = Some(TimeZone {
        id: "Mars/Olympus".into(),
    });
    bad.working_periods[0].end_minute = 2000;
    bad.working_periods[1].weekday = 0;
    bad.holidays[0].date = Some(LocalDate {
        year: 2026,
        month: 2,
        day: 30,
    });
    let err = create_calendar(&h, "bad", bad).await.unwrap_err();
    assert_eq!(
        violations(&err),
        vec![
            "calendar.display_name",
            "calendar.holidays[0].date",
            "calendar.time_zone",
            "calendar.working_periods[0]",
            "calendar.working_periods[1].weekday",
        ]
    );
    let none = Calendar {
        working_periods: vec![],
        ..us_central()
    };
    assert_eq!(
        violations(&create_calendar(&h, "none", none).await.unwrap_err()),
        vec!["calendar.working_periods"]
    );

    let cal = create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    let moved = h
        .svc
        .update_calendar(h.req(
            &who(Role::Manager),
            UpdateCalendarRequest {
                calendar: Some(Calendar {
                    name: cal.name.clone(),
                    time_zone: Some(TimeZone {
                        id: "America/New_York".into(),
                    }),
                    etag: cal.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["time_zone".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.time_zone.unwrap().id, "America/New_York");
    assert_eq!(moved.holidays.len(), 2, "fields outside the mask stay");
    let listed = h
        .svc
        .list_calendars(h.req(
            &who(Role::Agent),
            ListCalendarsRequest {
                filter: r#"time_zone.id = "America/New_York""#.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.calendars.len(), 1);
    let stale = h
        .svc
        .delete_calendar(h.req(
            &who(Role::Admin),
            DeleteCalendarRequest {
                name: cal.name.clone(),
                etag: cal.etag,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
}

async fn hand_off_codes_are_configuration(h: Harness) {
    let admin = who(Role::Admin);
    for (code, name, presented) in [
        ("NR", "Not released", false),
        ("HE", "Held", false),
        ("EN", "Entered", false),
        ("PE", "Presented", true),
    ] {
        h.svc
            .create_hand_off_code(h.req(
                &admin,
                CreateHandOffCodeRequest {
                    hand_off_code: Some(HandOffCode {
                        display_name: name.into(),
                        presented_to_carrier: presented,
                        case_types: vec![CaseType::OrderNew as i32, CaseType::OrderMove as i32],
                        ..Default::default()
                    }),
                    hand_off_code_id: code.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    let not_presented = h
        .svc
        .list_hand_off_codes(h.req(
            &who(Role::Agent),
            ListHandOffCodesRequest {
                filter: "presented_to_carrier = false AND case_types:ORDER_MOVE".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        not_presented
            .hand_off_codes
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["handOffCodes/EN", "handOffCodes/HE", "handOffCodes/NR"]
    );
    let bad = h
        .svc
        .create_hand_off_code(h.req(
            &admin,
            CreateHandOffCodeRequest {
                hand_off_code: Some(HandOffCode {
                    case_types: vec![99],
                    ..Default::default()
                }),
                hand_off_code_id: "no spaces".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&bad),
        vec![
            "hand_off_code.case_types[0]",
            "hand_off_code.display_name",
            "hand_off_code_id"
        ]
    );
    let dup = h
        .svc
        .create_hand_off_code(h.req(
            &admin,
            CreateHandOffCodeRequest {
                hand_off_code: Some(HandOffCode {
                    display_name: "x".into(),
                    ..Default::default()
                }),
                hand_off_code_id: "NR".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
}

async fn only_managers_change_configuration_and_clients_never_see_it(h: Harness) {
    create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    let agent_write = h
        .svc
        .create_calendar(h.req(
            &who(Role::Agent),
            CreateCalendarRequest {
                calendar: Some(us_central()),
                calendar_id: "mine".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(agent_write.code(), Code::PermissionDenied);
    let am_write = h
        .svc
        .create_calendar(h.req(
            &who(Role::AccountManager),
            CreateCalendarRequest {
                calendar: Some(us_central()),
                calendar_id: "mine".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(am_write.code(), Code::PermissionDenied);
    let client = who(Role::Client);
    let read = h
        .svc
        .get_calendar(h.req(
            &client,
            GetCalendarRequest {
                name: "calendars/us-central".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied);
    let list = h
        .svc
        .list_hand_off_codes(h.req(&client, ListHandOffCodesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied);
    let time = h
        .svc
        .add_business_time(h.req(
            &client,
            AddBusinessTimeRequest {
                calendar: "calendars/us-central".into(),
                start_time: Some(ts("2026-11-25T21:00:00Z")),
                duration: Some(hours(1)),
                time_zone: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(time.code(), Code::PermissionDenied);
}
