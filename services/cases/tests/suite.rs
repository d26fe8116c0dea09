//! The cases service through its gRPC trait, with signed principals as the
//! gateway delivers them; once on SQLite, once on PostgreSQL.

use std::sync::Arc;

use concierge_cases::Cases;
use concierge_common::clock::TestClock;
use concierge_common::kit::Peers;
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::testing::{self, Backend};
use concierge_customers::Customers;
use concierge_proto::concierge::cases::v1::cases_service_server::CasesService;
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::types::TimeZone;
use prost_types::{Duration, FieldMask, Timestamp};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// A cases service, and the customers service it asks about accounts
/// (acme, owned by ayse; globex, owned by bob) on a loopback port.
struct Harness {
    cases: testing::Harness<Cases>,
    customers_url: String,
    _customers: (
        testing::Harness<Customers>,
        concierge_common::server::Running,
    ),
}

impl std::ops::Deref for Harness {
    type Target = testing::Harness<Cases>;
    fn deref(&self) -> &Self::Target {
        &self.cases
    }
}

impl Harness {
    async fn new(backend: Backend, test: &str) -> Option<Self> {
        let codec = PrincipalCodec::new("cases-test-secret".into());
        let clock = TestClock::new(testing::TEST_EPOCH.parse().unwrap());
        let customers = testing::Harness::<Customers>::open(
            Backend::Sqlite,
            test,
            codec.clone(),
            clock.clone(),
            Peers::default(),
        )
        .await
        .unwrap();
        seed_customers(&customers).await;
        let (running, channel) = customers.serve().await;
        let mut peers = Peers::default();
        peers.insert("customers", channel);
        let cases = testing::Harness::open(backend, test, codec, clock, peers).await?;
        Some(Self {
            cases,
            customers_url: format!("http://{}", running.addr),
            _customers: (customers, running),
        })
    }
}

async fn seed_customers(customers: &testing::Harness<Customers>) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    use concierge_proto::customers::*;
    let admin = who(Role::Admin);
    // Ayse's escalations go to Cem, her manager; Bob has nobody above him.
    for (id, role, manager) in [
        ("cem", StaffRole::Manager, ""),
        ("ayse", StaffRole::AccountManager, "staff/cem"),
        ("bob", StaffRole::AccountManager, ""),
    ] {
        customers
            .svc
            .create_staff_member(customers.req(
                &admin,
                CreateStaffMemberRequest {
                    staff_member: Some(StaffMember {
                        display_name: id.into(),
                        email: format!("{id}@example.com"),
                        role: role as i32,
                        manager: manager.into(),
                        active: true,
                        ..Default::default()
                    }),
                    staff_member_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    for (id, am, tier) in [
        ("acme", "staff/ayse", Tier::Enterprise),
        ("globex", "staff/bob", Tier::Standard),
    ] {
        customers
            .svc
            .create_account(customers.req(
                &admin,
                CreateAccountRequest {
                    account: Some(Account {
                        display_name: id.into(),
                        tier: tier as i32,
                        account_manager: am.into(),
                        time_zone: "America/Chicago".into(),
                        ..Default::default()
                    }),
                    account_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
        // Each account's HQ is in New York, an hour ahead of the accounts.
        customers
            .svc
            .create_site(customers.req(
                &admin,
                CreateSiteRequest {
                    parent: format!("accounts/{id}"),
                    site: Some(Site {
                        display_name: "HQ".into(),
                        time_zone: "America/New_York".into(),
                        ..Default::default()
                    }),
                    site_id: "hq".into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    customers
        .svc
        .create_contact(customers.req(
            &admin,
            CreateContactRequest {
                parent: "accounts/acme".into(),
                contact: Some(Contact {
                    display_name: "Deniz".into(),
                    email: "deniz@acme.example".into(),
                    roles: vec![ContactRole::Primary as i32],
                    client_delegate: true,
                    ..Default::default()
                }),
                contact_id: "deniz".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
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

concierge_common::both_backends!(
    harness = Harness;
    business_time_across_a_holiday_weekend_and_in_a_sites_time_zone,
    calendars_are_checked_field_by_field_and_updated_by_mask,
    hand_off_codes_are_configuration,
    only_managers_change_configuration_and_clients_never_see_it,
    a_case_moves_through_its_lifecycle_and_keeps_its_history,
    jeopardy_without_a_reason_is_flagged_until_one_is_given,
    cases_are_filed_under_the_accounts_portfolio_and_checked,
    a_client_sees_its_own_cases_and_public_updates_only,
    duplicates_merge_into_an_open_case_of_the_same_account,
    a_repair_at_a_site_in_another_zone_shows_its_clocks_through_a_holiday_weekend,
    the_breach_event_fires_once_with_two_instances_and_waits_out_a_pause,
    milestones_stop_their_clocks_and_a_calendar_change_moves_deadlines,
    orders_carry_hand_off_codes_and_cases_have_watchers,
    links_come_in_pairs_within_one_account,
    an_order_is_withheld_while_it_depends_on_an_open_case,
    sla_policy_updates_can_be_checked_first_and_rolled_back,
    clocks_across_cases_filter_by_state_and_page_by_target_time,
    out_of_range_times_durations_and_filters_are_refused_and_change_nothing,
    clocks_say_how_far_past_and_project_while_paused,
    a_client_opens_cases_with_its_own_fields_only,
    configuration_in_use_is_kept_and_checked_like_a_real_write,
    a_case_without_a_site_counts_in_its_accounts_zone,
    a_change_whose_timers_fail_to_arm_is_finished_by_the_sweep,
    a_new_case_is_matched_against_a_policy_changed_on_another_replica,
    a_calendar_change_re_arms_open_cases_in_the_background_and_resumes_after_a_crash,
    a_refusal_by_the_customers_service_keeps_its_meaning,
    a_jeopardy_reason_reaches_the_client_as_a_public_update,
    every_event_is_declared_in_the_catalogue,
    chase_rules_ship_built_in_and_are_edited_not_deleted,
    chase_rules_are_checked_field_by_field_and_nothing_is_stored,
    chase_rules_are_applied_from_a_file_as_upserts,
    escalations_are_raised_taken_and_closed_by_staff_only,
    the_jeopardy_chase_asks_then_escalates_after_48_hours_unless_cleared,
    the_construction_chase_waits_five_business_days_across_a_holiday,
    chase_runs_are_cancelled_by_staff_and_by_disabling_their_rule,
    escalations_are_e_mailed_to_their_target_in_its_language,
    a_repair_is_triaged_with_its_sites_failover_paths,
    a_portfolio_lists_its_cases_that_need_action_most_severe_first,
    a_control_document_lists_open_requests_and_is_archived_as_sent,
    the_weekly_run_mails_each_big_account_once_in_its_own_time_zone,
    control_document_settings_default_and_are_changed_by_managers,
    a_chase_notification_is_e_mailed_to_the_staff_member_it_names,
    a_deliverable_falls_overdue_at_its_due_time,
    an_account_changing_hands_moves_its_open_cases_to_the_new_managers_portfolio,
    an_escalations_delivery_follows_the_gateways_outcomes,
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

fn case(account: &str, title: &str) -> Case {
    Case {
        title: title.into(),
        r#type: CaseType::Repair as i32,
        account: format!("accounts/{account}"),
        site: format!("accounts/{account}/sites/hq"),
        ..Default::default()
    }
}

async fn create_case(h: &Harness, p: &Principal, c: Case) -> Result<Case, Status> {
    h.svc
        .create_case(h.req(
            p,
            CreateCaseRequest {
                case: Some(c),
                case_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn history(h: &Harness, name: &str) -> Vec<i64> {
    let mut c = h.svc.db().acquire().await.unwrap();
    concierge_common::on_conn!(&mut c.conn(), x => sqlx::query_scalar("SELECT state FROM case_states WHERE case_name = $1 ORDER BY seq")
        .bind(name)
        .fetch_all(&mut **x)
        .await
        .unwrap())
}

fn agent() -> Principal {
    Principal {
        staff_member: Some("staff/zeki".into()),
        ..who(Role::Agent)
    }
}

async fn a_case_moves_through_its_lifecycle_and_keeps_its_history(h: Harness) {
    let c = create_case(&h, &agent(), case("acme", "Circuit down at HQ"))
        .await
        .unwrap();
    assert_eq!(c.state, case::State::New as i32);
    assert_eq!(
        (c.account_manager.as_str(), c.account_tier.as_str()),
        ("staff/ayse", "TIER_ENTERPRISE"),
        "from the customers service"
    );
    assert_eq!(
        c.priority,
        CasePriority::Medium as i32,
        "medium unless said otherwise"
    );
    assert_eq!(c.creator, "apiKeys/Agent");
    let a = agent();
    let opened = h
        .svc
        .open_case(h.req(
            &a,
            OpenCaseRequest {
                name: c.name.clone(),
                owner: String::new(),
                etag: c.etag.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        opened.owner, "staff/zeki",
        "the caller owns it when nobody does"
    );
    assert!(opened.first_response_time.is_some());
    let no_reason = h
        .svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: c.name.clone(),
                reason: " ".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&no_reason), vec!["reason"]);
    let pend = |reason: &str| PendCaseOnClientRequest {
        name: c.name.clone(),
        reason: reason.into(),
        etag: String::new(),
        request_id: "pend-for-access".into(),
    };
    let pending = h
        .svc
        .pend_case_on_client(h.req(&a, pend("Site access for the technician")))
        .await
        .unwrap()
        .into_inner();
    // A retry (the reply was lost) gets the same reply, not "already
    // pending"; the same id for something else is refused.
    let retried = h
        .svc
        .pend_case_on_client(h.req(&a, pend("Site access for the technician")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, pending);
    let reused = h
        .svc
        .pend_case_on_client(h.req(&a, pend("Something else")))
        .await
        .unwrap_err();
    assert_eq!(violations(&reused), vec!["request_id"]);
    assert_eq!(
        (pending.state, pending.state_reason.as_str()),
        (
            case::State::PendingClient as i32,
            "Site access for the technician"
        )
    );
    let illegal = h
        .svc
        .close_case(h.req(
            &a,
            CloseCaseRequest {
                name: c.name.clone(),
                reason: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(illegal.code(), Code::FailedPrecondition);
    assert!(
        illegal.message().contains("STATE_PENDING_CLIENT")
            && illegal.message().contains("STATE_CLOSED"),
        "{}",
        illegal.message()
    );
    h.svc
        .resume_case(h.req(
            &a,
            ResumeCaseRequest {
                name: c.name.clone(),
                reason: "access granted".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let incomplete = h
        .svc
        .resolve_case(h.req(
            &a,
            ResolveCaseRequest {
                name: c.name.clone(),
                resolution: Some(Resolution {
                    resolution_code: "FIXED".into(),
                    ..Default::default()
                }),
                restore_time: None,
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&incomplete),
        vec!["resolution.root_cause", "resolution.summary"]
    );
    let resolved = h
        .svc
        .resolve_case(h.req(
            &a,
            ResolveCaseRequest {
                name: c.name.clone(),
                resolution: Some(Resolution {
                    root_cause: "Fibre cut by excavation".into(),
                    resolution_code: "FIXED".into(),
                    summary: "Fibre spliced".into(),
                    resolver: String::new(),
                }),
                restore_time: Some(ts("2026-11-02T10:00:00Z")),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.resolution.as_ref().unwrap().resolver, "staff/zeki");
    assert!(resolved.resolve_time.is_some());
    h.svc
        .close_case(h.req(
            &a,
            CloseCaseRequest {
                name: c.name.clone(),
                reason: "client confirmed".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let reopened = h
        .svc
        .reopen_case(h.req(
            &a,
            ReopenCaseRequest {
                name: c.name.clone(),
                reason: "dropped again".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reopened.state, reopened.reopen_count),
        (case::State::InProgress as i32, 1)
    );
    use case::State::*;
    assert_eq!(
        history(&h, &c.name).await,
        [
            New,
            Open,
            PendingClient,
            InProgress,
            Resolved,
            Closed,
            InProgress
        ]
        .map(|s| s as i64)
        .to_vec(),
        "every state entered, in order: what SLA clocks are read from"
    );
}

async fn jeopardy_without_a_reason_is_flagged_until_one_is_given(h: Harness) {
    let a = agent();
    let c = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "New 100 Mb circuit")
        },
    )
    .await
    .unwrap();
    h.svc
        .start_case_work(h.req(
            &a,
            StartCaseWorkRequest {
                name: c.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let jp = h
        .svc
        .mark_case_jeopardy(h.req(
            &a,
            MarkCaseJeopardyRequest {
                name: c.name.clone(),
                reason: String::new(),
                revised_eta_time: None,
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(jp.jeopardy.as_ref().unwrap().flagged_missing_reason);
    let flagged = h
        .svc
        .list_cases(h.req(
            &a,
            ListCasesRequest {
                filter: "jeopardy.flagged_missing_reason = true".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(flagged.cases.len(), 1);
    let explained = h
        .svc
        .mark_case_jeopardy(h.req(
            &a,
            MarkCaseJeopardyRequest {
                name: c.name.clone(),
                reason: "Carrier needs a permit".into(),
                revised_eta_time: Some(ts("2026-12-15T17:00:00Z")),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let j = explained.jeopardy.unwrap();
    assert!(!j.flagged_missing_reason);
    assert_eq!(
        (j.reason.as_str(), j.revised_eta_time),
        ("Carrier needs a permit", Some(ts("2026-12-15T17:00:00Z")))
    );
    assert_eq!(
        j.enter_time,
        jp.jeopardy.unwrap().enter_time,
        "still the same jeopardy"
    );
    assert_eq!(
        history(&h, &c.name).await.len(),
        3,
        "NEW, IN_PROGRESS, JEOPARDY: adding the reason is not a new state"
    );
}

async fn cases_are_filed_under_the_accounts_portfolio_and_checked(h: Harness) {
    let a = agent();
    for (account, title) in [("acme", "one"), ("globex", "two"), ("acme", "three")] {
        create_case(&h, &a, case(account, title)).await.unwrap();
        h.clock.advance(jiff::SignedDuration::from_mins(5));
    }
    let ayse = h
        .svc
        .list_cases(h.req(
            &a,
            ListCasesRequest {
                filter: r#"account_manager = "staff/ayse" AND state = NEW"#.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ayse.cases
            .iter()
            .map(|c| c.title.as_str())
            .collect::<Vec<_>>(),
        vec!["three", "one"],
        "the portfolio, newest first"
    );
    let missing = create_case(&h, &a, case("nope", "x")).await.unwrap_err();
    assert_eq!(violations(&missing), vec!["case.account"]);
    let bad = create_case(
        &h,
        &a,
        Case {
            site: "accounts/globex/sites/hq".into(),
            r#type: 0,
            title: String::new(),
            ..case("acme", "x")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        violations(&bad),
        vec!["case.site", "case.title", "case.type"]
    );
    let unknown = h
        .svc
        .list_cases(h.req(
            &a,
            ListCasesRequest {
                filter: "colour = red".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&unknown), vec!["filter"]);
}

async fn a_client_sees_its_own_cases_and_public_updates_only(h: Harness) {
    let a = agent();
    let client = who(Role::Client);
    let mine = create_case(&h, &client, case("acme", "Opened from the client portal"))
        .await
        .unwrap();
    assert_eq!(mine.creator, "apiKeys/Client");
    let theirs = create_case(&h, &a, case("globex", "Not yours"))
        .await
        .unwrap();
    let foreign = create_case(&h, &client, case("globex", "sneaky"))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    let listed = h
        .svc
        .list_cases(h.req(&client, ListCasesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .cases
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec![mine.name.as_str()]
    );
    assert_eq!(
        h.svc
            .get_case(h.req(
                &client,
                GetCaseRequest {
                    name: theirs.name.clone()
                }
            ))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let change = h
        .svc
        .open_case(h.req(
            &client,
            OpenCaseRequest {
                name: mine.name.clone(),
                owner: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(change.code(), Code::PermissionDenied);

    let post = |p: &Principal, parent: &str, visibility: note::Visibility, body: &str| {
        h.svc.create_note(h.req(
            p,
            CreateNoteRequest {
                parent: parent.into(),
                note: Some(Note {
                    visibility: visibility as i32,
                    body: body.into(),
                    ..Default::default()
                }),
                note_id: String::new(),
                notify_client: false,
                request_id: String::new(),
            },
        ))
    };
    let internal = post(
        &a,
        &mine.name,
        note::Visibility::Internal,
        "Carrier says the client's router is misconfigured",
    )
    .await
    .unwrap()
    .into_inner();
    post(
        &a,
        &mine.name,
        note::Visibility::Public,
        "A technician is on the way",
    )
    .await
    .unwrap();
    post(
        &client,
        &mine.name,
        note::Visibility::Public,
        "Thanks, the gate code is 1234",
    )
    .await
    .unwrap();
    let hidden = post(&client, &mine.name, note::Visibility::Internal, "x")
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::PermissionDenied);
    assert_eq!(
        post(&client, &theirs.name, note::Visibility::Public, "x")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let seen = h
        .svc
        .list_notes(h.req(
            &client,
            ListNotesRequest {
                parent: mine.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        seen.notes
            .iter()
            .map(|n| n.body.as_str())
            .collect::<Vec<_>>(),
        vec![
            "A technician is on the way",
            "Thanks, the gate code is 1234"
        ]
    );
    let asked = h
        .svc
        .list_notes(h.req(
            &client,
            ListNotesRequest {
                parent: mine.name.clone(),
                filter: "visibility = INTERNAL".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        asked.notes.is_empty(),
        "asking for internal notes finds none"
    );
    assert_eq!(
        h.svc
            .get_note(h.req(
                &client,
                GetNoteRequest {
                    name: internal.name.clone()
                }
            ))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let staff = h
        .svc
        .list_notes(h.req(
            &a,
            ListNotesRequest {
                parent: mine.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staff.notes.len(), 3);
    assert_eq!(staff.notes[0].author, "staff/zeki");
    // Events carry the same line: the internal note's is internal.
    let mut c = h.svc.db().acquire().await.unwrap();
    let events = concierge_common::outbox::read_after(&mut c.conn(), 0, 1000)
        .await
        .unwrap();
    let note_events: Vec<_> = events
        .iter()
        .filter(|e| e.event.r#type == "concierge.cases.v1.note_created")
        .map(|e| (e.event.visibility, e.event.account.clone()))
        .collect();
    assert_eq!(note_events.len(), 3);
    assert_eq!(
        note_events[0],
        (
            concierge_proto::events::Visibility::Internal as i32,
            "accounts/acme".to_string()
        )
    );

    // A public update can go to the client delegate; an internal note cannot.
    let notify = |visibility: note::Visibility| CreateNoteRequest {
        parent: mine.name.clone(),
        note: Some(Note {
            visibility: visibility as i32,
            body: "Restored at 14:05; monitoring for 24 h".into(),
            ..Default::default()
        }),
        note_id: String::new(),
        notify_client: true,
        request_id: String::new(),
    };
    let sent = h
        .svc
        .create_note(h.req(&a, notify(note::Visibility::Public)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.notified_contacts, vec!["accounts/acme/contacts/deniz"]);
    let refused = h
        .svc
        .create_note(h.req(&a, notify(note::Visibility::Internal)))
        .await
        .unwrap_err();
    assert_eq!(violations(&refused), vec!["notify_client"]);
}

async fn duplicates_merge_into_an_open_case_of_the_same_account(h: Harness) {
    let a = agent();
    let first = create_case(&h, &a, case("acme", "Internet down"))
        .await
        .unwrap();
    let dup = create_case(&h, &a, case("acme", "No internet at HQ"))
        .await
        .unwrap();
    let other = create_case(&h, &a, case("globex", "Internet down"))
        .await
        .unwrap();
    let merged = h
        .svc
        .merge_case(h.req(
            &a,
            MergeCaseRequest {
                name: dup.name.clone(),
                target: first.name.clone(),
                reason: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let source = merged.source.unwrap();
    assert_eq!(
        (source.state, source.merged_into.as_str()),
        (case::State::Closed as i32, first.name.as_str())
    );
    let across = h
        .svc
        .merge_case(h.req(
            &a,
            MergeCaseRequest {
                name: other.name.clone(),
                target: first.name.clone(),
                reason: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(across.code(), Code::FailedPrecondition);
    let into_closed = h
        .svc
        .merge_case(h.req(
            &a,
            MergeCaseRequest {
                name: first.name.clone(),
                target: dup.name.clone(),
                reason: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(into_closed.code(), Code::FailedPrecondition);
}

fn target(key: &str, hours_: i64) -> SlaTarget {
    SlaTarget {
        key: key.into(),
        display_name: key.replace('_', " "),
        duration: Some(hours(hours_)),
        basis: 0,
    }
}

async fn a_repair_at_a_site_in_another_zone_shows_its_clocks_through_a_holiday_weekend(h: Harness) {
    let admin = who(Role::Admin);
    create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    let policy = h
        .svc
        .create_sla_policy(h.req(
            &admin,
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Repairs".into(),
                    case_types: vec![CaseType::Repair as i32],
                    calendar: "calendars/us-central".into(),
                    time_zone_source: sla_policy::TimeZoneSource::Site as i32,
                    first_response: Some(target("first_response", 1)),
                    overall_delivery: Some(target("restore", 8)),
                    ..Default::default()
                }),
                sla_policy_id: "repairs".into(),
                validate_only: false,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy.revision_id, "1");

    // Wednesday 2026-11-25 14:00 in New York, where the site is (the
    // calendar's hours are read there: 09:00-17:00, Thanksgiving off, Friday
    // a half day to 13:00).
    let a = agent();
    h.clock.set("2026-11-25T19:00:00Z".parse().unwrap());
    let c = create_case(&h, &a, case("acme", "Circuit down at HQ"))
        .await
        .unwrap();
    assert_eq!(
        (c.sla_policy.as_str(), c.sla_policy_revision.as_str()),
        ("slaPolicies/repairs", "1")
    );
    h.clock.set("2026-11-25T19:30:00Z".parse().unwrap());
    h.svc
        .open_case(h.req(
            &a,
            OpenCaseRequest {
                name: c.name.clone(),
                owner: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // Friday 10:00 New York: waiting on the client until Monday 11:00.
    h.clock.set("2026-11-27T15:00:00Z".parse().unwrap());
    h.svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: c.name.clone(),
                reason: "Site access".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    h.clock.set("2026-11-30T16:00:00Z".parse().unwrap());
    h.svc
        .resume_case(h.req(
            &a,
            ResumeCaseRequest {
                name: c.name.clone(),
                reason: "access granted".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // A later edit of the policy does not move this case's deadline.
    h.svc
        .update_sla_policy(h.req(
            &admin,
            UpdateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    name: "slaPolicies/repairs".into(),
                    overall_delivery: Some(target("restore", 2)),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["overall_delivery".into()],
                }),
                validate_only: false,
            },
        ))
        .await
        .unwrap();
    h.clock.set("2026-11-30T17:00:00Z".parse().unwrap());

    let clocks = h
        .svc
        .list_sla_clocks(h.req(
            &a,
            ListSlaClocksRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sla_clocks;
    let first = clocks.iter().find(|k| k.key == "first_response").unwrap();
    assert_eq!(
        (first.state, first.elapsed_duration),
        (
            SlaState::Met as i32,
            Some(Duration {
                seconds: 1800,
                nanos: 0
            })
        )
    );
    let restore = clocks.iter().find(|k| k.key == "restore").unwrap();
    // Wednesday 14:00-17:00, Friday 09:00-10:00, Monday 11:00-12:00: 5 h of 8;
    // the holiday and the wait on the client do not count.
    assert_eq!(restore.elapsed_duration, Some(hours(5)));
    assert_eq!(
        restore.target_duration,
        Some(hours(8)),
        "the revision the case started with"
    );
    assert_eq!(restore.state, SlaState::OnTrack as i32);
    assert_eq!(restore.status, sla_clock::Status::Running as i32);
    assert_eq!(restore.time_zone.as_ref().unwrap().id, "America/New_York");
    // Three more hours from Monday 12:00 New York: 15:00 there.
    assert_eq!(restore.target_time, Some(ts("2026-11-30T20:00:00Z")));
    assert_eq!(
        restore.paused_duration,
        Some(Duration {
            seconds: (3 * 24 + 1) * 3600,
            nanos: 0
        })
    );

    let why = h
        .svc
        .explain_sla_clock(h.req(
            &a,
            ExplainSlaClockRequest {
                name: restore.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let paused = why
        .segments
        .iter()
        .find(|s| s.kind == sla_clock_segment::Kind::Paused as i32)
        .unwrap();
    assert_eq!(
        (paused.start_time, paused.end_time),
        (
            Some(ts("2026-11-27T15:00:00Z")),
            Some(ts("2026-11-30T16:00:00Z"))
        )
    );
    assert_eq!(paused.case_state, case::State::PendingClient as i32);
    let thanksgiving = why
        .segments
        .iter()
        .find(|s| {
            s.kind == sla_clock_segment::Kind::OutOfHours as i32
                && s.start_time == Some(ts("2026-11-25T22:00:00Z"))
        })
        .unwrap();
    assert_eq!(
        thanksgiving.end_time,
        Some(ts("2026-11-27T14:00:00Z")),
        "Wednesday 17:00 to Friday 09:00 New York"
    );
    assert_eq!(
        why.segments.last().unwrap().cumulative_elapsed_duration,
        Some(hours(5))
    );

    // Monday 14:00 New York: 7 h used, past 80 %.
    h.clock.set("2026-11-30T19:00:00Z".parse().unwrap());
    let at_risk = h
        .svc
        .get_sla_clock(h.req(
            &a,
            GetSlaClockRequest {
                name: restore.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at_risk.state, SlaState::AtRisk as i32);
    // Tuesday: breached at Monday 15:00 New York, and it says so.
    h.clock.set("2026-12-01T15:00:00Z".parse().unwrap());
    let breached = h
        .svc
        .get_sla_clock(h.req(
            &a,
            GetSlaClockRequest {
                name: restore.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (breached.state, breached.breach_time),
        (SlaState::Breached as i32, Some(ts("2026-11-30T20:00:00Z")))
    );
    // A new case gets the new revision.
    let later = create_case(&h, &a, case("acme", "Another")).await.unwrap();
    assert_eq!(later.sla_policy_revision, "2");
}

async fn sla_events(h: &Harness, kind: &str) -> Vec<String> {
    let mut c = h.svc.db().acquire().await.unwrap();
    concierge_common::outbox::read_after(&mut c.conn(), 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.event.r#type == format!("concierge.cases.v1.sla_clock_{kind}"))
        .map(|p| p.event.subject)
        .collect()
}

async fn the_breach_event_fires_once_with_two_instances_and_waits_out_a_pause(h: Harness) {
    let admin = who(Role::Admin);
    create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    h.svc
        .create_sla_policy(h.req(
            &admin,
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Repairs".into(),
                    calendar: "calendars/us-central".into(),
                    overall_delivery: Some(target("restore", 4)),
                    ..Default::default()
                }),
                sla_policy_id: "repairs".into(),
                validate_only: false,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // Monday 2026-11-30 09:00 Chicago: 4 business hours → breach at 13:00 (19:00Z).
    h.clock.set("2026-11-30T15:00:00Z".parse().unwrap());
    let a = agent();
    let c = create_case(&h, &a, case("acme", "Down")).await.unwrap();
    h.svc
        .start_case_work(h.req(
            &a,
            StartCaseWorkRequest {
                name: c.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();

    let other = other_replica(&h).await;

    // Waiting on the client from 10:00 to 12:00 moves the breach to 15:00.
    h.clock.set("2026-11-30T16:00:00Z".parse().unwrap());
    h.svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: c.name.clone(),
                reason: "Access".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    h.clock.set("2026-11-30T18:00:00Z".parse().unwrap());
    h.svc
        .resume_case(h.req(
            &a,
            ResumeCaseRequest {
                name: c.name.clone(),
                reason: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();

    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    // 13:30: the original deadlines (at risk 12:12, breach 13:00) have
    // passed; the moved ones (14:12, 15:00) have not.
    assert_eq!(
        h.svc
            .sweep_timers("a", at("2026-11-30T19:30:00Z"))
            .await
            .unwrap(),
        0
    );
    assert!(sla_events(&h, "at_risk").await.is_empty());
    // 15:30: both replicas sweep at once; the breach fires once.
    h.clock.set("2026-11-30T21:30:00Z".parse().unwrap());
    let now = at("2026-11-30T21:30:00Z");
    let (x, y) = tokio::join!(h.svc.sweep_timers("a", now), other.sweep_timers("b", now));
    assert_eq!(
        x.unwrap() + y.unwrap(),
        2,
        "one at-risk event, one breach event"
    );
    assert_eq!(
        sla_events(&h, "breached").await,
        vec![format!("{}/slaClocks/restore", c.name)]
    );
    assert_eq!(sla_events(&h, "at_risk").await.len(), 1);
    // The case says so, and lists find it.
    let now_case = h
        .svc
        .get_case(h.req(
            &a,
            GetCaseRequest {
                name: c.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let sla = now_case.sla.unwrap();
    assert_eq!(
        (sla.state, sla.breached_clock_keys),
        (SlaState::Breached as i32, vec!["restore".to_string()])
    );
    let breached = h
        .svc
        .list_cases(h.req(
            &a,
            ListCasesRequest {
                filter: "sla.state = BREACHED".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(breached.cases.len(), 1);
    // Nothing more to fire, however often anyone sweeps.
    assert_eq!(
        other
            .sweep_timers("b", at("2026-12-05T00:00:00Z"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        h.svc
            .sweep_timers("a", at("2026-12-05T00:00:00Z"))
            .await
            .unwrap(),
        0
    );
}

async fn breach_timer_due(h: &Harness, clock: &str) -> Option<i64> {
    let mut pc = h.svc.db().acquire().await.unwrap();
    concierge_common::on_conn!(&mut pc.conn(), x => sqlx::query_scalar("SELECT due_time FROM timers WHERE id = $1")
        .bind(format!("{clock}:sla_breach"))
        .fetch_optional(&mut **x)
        .await
        .unwrap())
}

async fn milestones_stop_their_clocks_and_a_calendar_change_moves_deadlines(h: Harness) {
    let admin = who(Role::Admin);
    let cal = create_calendar(
        &h,
        "us-central",
        Calendar {
            holidays: vec![],
            ..us_central()
        },
    )
    .await
    .unwrap();
    h.svc
        .create_sla_policy(h.req(
            &admin,
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Orders".into(),
                    calendar: "calendars/us-central".into(),
                    milestones: vec![target("presented_to_carrier", 8)],
                    overall_delivery: Some(target("installed", 40)),
                    ..Default::default()
                }),
                sla_policy_id: "orders".into(),
                validate_only: false,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // Tuesday 2026-12-01 09:00 Chicago.
    h.clock.set("2026-12-01T15:00:00Z".parse().unwrap());
    let a = agent();
    let c = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "New circuit")
        },
    )
    .await
    .unwrap();
    let installed = format!("{}/slaClocks/installed", c.name);
    // 40 business hours: Tue-Fri and Monday, ending Monday 17:00 (23:00Z).
    let before = breach_timer_due(&h, &installed).await.unwrap();
    assert_eq!(
        before,
        "2026-12-07T23:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_microsecond()
    );

    h.clock.set("2026-12-01T18:00:00Z".parse().unwrap());
    let recorded = h
        .svc
        .record_case_milestone(h.req(
            &a,
            RecordCaseMilestoneRequest {
                name: c.name.clone(),
                key: "presented_to_carrier".into(),
                display_name: String::new(),
                achieve_time: None,
                note: "PON 123".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.milestones.len(), 1);
    let presented = h
        .svc
        .get_sla_clock(h.req(
            &a,
            GetSlaClockRequest {
                name: format!("{}/slaClocks/presented_to_carrier", c.name),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (presented.state, presented.elapsed_duration),
        (SlaState::Met as i32, Some(hours(3)))
    );
    assert!(
        breach_timer_due(&h, &format!("{}/slaClocks/presented_to_carrier", c.name))
            .await
            .is_none(),
        "a met clock has no timer"
    );
    let future = h
        .svc
        .record_case_milestone(h.req(
            &a,
            RecordCaseMilestoneRequest {
                name: c.name.clone(),
                key: "installed".into(),
                display_name: String::new(),
                achieve_time: Some(ts("2027-01-01T00:00:00Z")),
                note: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&future), vec!["achieve_time"]);

    // The company closes on Friday 2026-12-04: the delivery deadline moves a
    // working day later, and its timer with it.
    h.svc
        .update_calendar(h.req(
            &admin,
            UpdateCalendarRequest {
                calendar: Some(Calendar {
                    name: cal.name.clone(),
                    holidays: vec![Holiday {
                        date: Some(LocalDate {
                            year: 2026,
                            month: 12,
                            day: 4,
                        }),
                        display_name: "Office closed".into(),
                        working_periods: vec![],
                    }],
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["holidays".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let moved = h
        .svc
        .get_sla_clock(h.req(
            &a,
            GetSlaClockRequest {
                name: installed.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.target_time, Some(ts("2026-12-08T23:00:00Z")));
    // The timer follows in the background, as the service's worker runs it.
    tokio::spawn(
        h.svc
            .clone()
            .rearm_forever(std::time::Duration::from_millis(20)),
    );
    let moved_due = "2026-12-08T23:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_microsecond();
    concierge_common::testing::eventually(
        std::time::Duration::from_secs(20),
        "the breach timer re-armed to the new deadline",
        || async { breach_timer_due(&h, &installed).await == Some(moved_due) },
    )
    .await;
}

/// How far the re-arm of `calendar` got, if it has a job left.
async fn rearm_progress(h: &Harness, calendar: &str) -> Option<String> {
    let mut pc = h.svc.db().acquire().await.unwrap();
    concierge_common::on_conn!(&mut pc.conn(), x => sqlx::query_scalar("SELECT after_case FROM calendar_rearms WHERE calendar = $1")
        .bind(calendar)
        .fetch_optional(&mut **x)
        .await
        .unwrap())
}

/// UpdateCalendar answers without re-arming open cases itself: it leaves a
/// durable job, which a worker works batch by batch. A worker that stops
/// half-way (a crash, a restart) leaves its progress behind, and the next
/// one (here: another replica) finishes the job.
async fn a_calendar_change_re_arms_open_cases_in_the_background_and_resumes_after_a_crash(
    h: Harness,
) {
    let admin = who(Role::Admin);
    let cal = create_calendar(
        &h,
        "us-central",
        Calendar {
            holidays: vec![],
            ..us_central()
        },
    )
    .await
    .unwrap();
    h.svc
        .create_sla_policy(h.req(
            &admin,
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Orders".into(),
                    calendar: "calendars/us-central".into(),
                    overall_delivery: Some(target("installed", 40)),
                    ..Default::default()
                }),
                sla_policy_id: "orders".into(),
                validate_only: false,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    h.clock.set("2026-12-01T15:00:00Z".parse().unwrap());
    let mut installed = Vec::new();
    for i in 0..3 {
        let c = create_case(
            &h,
            &agent(),
            Case {
                r#type: CaseType::OrderNew as i32,
                ..case("acme", &format!("Circuit {i}"))
            },
        )
        .await
        .unwrap();
        installed.push(format!("{}/slaClocks/installed", c.name));
    }
    installed.sort();
    let micros = |t: &str| t.parse::<jiff::Timestamp>().unwrap().as_microsecond();
    let (old_due, new_due) = (
        micros("2026-12-07T23:00:00Z"),
        micros("2026-12-08T23:00:00Z"),
    );
    for clock in &installed {
        assert_eq!(breach_timer_due(&h, clock).await, Some(old_due));
    }

    h.svc
        .update_calendar(h.req(
            &admin,
            UpdateCalendarRequest {
                calendar: Some(Calendar {
                    name: cal.name.clone(),
                    holidays: vec![Holiday {
                        date: Some(LocalDate {
                            year: 2026,
                            month: 12,
                            day: 4,
                        }),
                        display_name: "Office closed".into(),
                        working_periods: vec![],
                    }],
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["holidays".into()],
                }),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        rearm_progress(&h, &cal.name).await.as_deref(),
        Some(""),
        "the update left a job, not yet started"
    );

    // One batch of one case, then the worker "dies".
    assert_eq!(h.svc.rearm_batch(1).await.unwrap(), Some(1));
    let first_case = installed[0].split("/slaClocks/").next().unwrap();
    assert_eq!(
        rearm_progress(&h, &cal.name).await.as_deref(),
        Some(first_case)
    );
    assert_eq!(breach_timer_due(&h, &installed[0]).await, Some(new_due));
    assert_eq!(breach_timer_due(&h, &installed[2]).await, Some(old_due));

    // Another replica's worker picks the job up where it stopped.
    let other_db = concierge_common::storage::Db::connect(&h.db.url, 4)
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(h.customers_url.clone())
        .unwrap()
        .connect_lazy();
    let other = Cases::open(
        other_db,
        h.codec.clone(),
        Arc::new(h.clock.clone()),
        channel,
    )
    .await
    .unwrap();
    tokio::spawn(other.rearm_forever(std::time::Duration::from_millis(20)));
    concierge_common::testing::eventually(
        std::time::Duration::from_secs(20),
        "every open case re-armed and the job done",
        || async {
            let mut all = true;
            for clock in &installed {
                all &= breach_timer_due(&h, clock).await == Some(new_due);
            }
            all && rearm_progress(&h, &cal.name).await.is_none()
        },
    )
    .await;
}

/// NR (not presented to the carrier) and PE (presented), for `types`
/// (none: every type).
async fn create_hand_off_codes(h: &Harness, types: &[CaseType]) {
    for (code, presented) in [("NR", false), ("PE", true)] {
        h.svc
            .create_hand_off_code(h.req(
                &who(Role::Admin),
                CreateHandOffCodeRequest {
                    hand_off_code: Some(HandOffCode {
                        display_name: code.into(),
                        presented_to_carrier: presented,
                        case_types: types.iter().map(|t| *t as i32).collect(),
                        ..Default::default()
                    }),
                    hand_off_code_id: code.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
}

async fn orders_carry_hand_off_codes_and_cases_have_watchers(h: Harness) {
    create_hand_off_codes(&h, &[CaseType::OrderNew]).await;
    let a = agent();
    let order = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "New line")
        },
    )
    .await
    .unwrap();
    let repair = create_case(&h, &a, case("acme", "Broken")).await.unwrap();
    let set = |name: &str, code: &str| SetCaseHandOffCodeRequest {
        name: name.into(),
        hand_off_code: code.into(),
        carrier_reference: String::new(),
        reason: String::new(),
        etag: String::new(),
        request_id: String::new(),
    };
    let nr = h
        .svc
        .set_case_hand_off_code(h.req(&a, set(&order.name, "NR")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (nr.hand_off_code.as_str(), nr.presented_to_carrier),
        ("NR", false)
    );
    let not_presented = h
        .svc
        .list_cases(h.req(
            &a,
            ListCasesRequest {
                filter: "presented_to_carrier = false AND hand_off_code = \"NR\"".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(not_presented.cases.len(), 1);
    let pe = h
        .svc
        .set_case_hand_off_code(h.req(
            &a,
            SetCaseHandOffCodeRequest {
                carrier_reference: "PON-77".into(),
                ..set(&order.name, "PE")
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (pe.presented_to_carrier, pe.carrier_reference.as_str()),
        (true, "PON-77")
    );
    assert_eq!(
        h.svc
            .set_case_hand_off_code(h.req(&a, set(&repair.name, "PE")))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition,
        "order codes do not apply to repairs"
    );
    assert_eq!(
        violations(
            &h.svc
                .set_case_hand_off_code(h.req(&a, set(&order.name, "ZZ")))
                .await
                .unwrap_err()
        ),
        vec!["hand_off_code"]
    );

    let watch = |w: &str| AddCaseWatcherRequest {
        name: order.name.clone(),
        watcher: w.into(),
        request_id: String::new(),
    };
    h.svc
        .add_case_watcher(h.req(&a, watch("staff/ayse")))
        .await
        .unwrap();
    let twice = h
        .svc
        .add_case_watcher(h.req(&a, watch("staff/ayse")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(twice.watchers, vec!["staff/ayse"]);
    assert_eq!(
        violations(
            &h.svc
                .add_case_watcher(h.req(&a, watch("accounts/globex/contacts/x")))
                .await
                .unwrap_err()
        ),
        vec!["watcher"]
    );
    let gone = h
        .svc
        .remove_case_watcher(h.req(
            &a,
            RemoveCaseWatcherRequest {
                name: order.name.clone(),
                watcher: "staff/ayse".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(gone.watchers.is_empty());
}

async fn links_come_in_pairs_within_one_account(h: Harness) {
    let a = agent();
    let broadband = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "Broadband install")
        },
    )
    .await
    .unwrap();
    let pots = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "POTS lines")
        },
    )
    .await
    .unwrap();
    let elsewhere = create_case(&h, &a, case("globex", "Theirs")).await.unwrap();
    let link = |from: &str, t: case_link::Type, to: &str| CreateCaseLinkRequest {
        parent: from.into(),
        case_link: Some(CaseLink {
            r#type: t as i32,
            target: to.into(),
            reason: "POTS waits for the broadband install".into(),
            ..Default::default()
        }),
        case_link_id: String::new(),
        request_id: String::new(),
    };
    let depends = h
        .svc
        .create_case_link(h.req(
            &a,
            link(&pots.name, case_link::Type::DependsOn, &broadband.name),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        depends
            .inverse
            .starts_with(&format!("{}/links/", broadband.name))
    );
    let on_target = h
        .svc
        .list_case_links(h.req(
            &a,
            ListCaseLinksRequest {
                parent: broadband.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on_target.case_links.len(), 1);
    assert_eq!(
        (
            on_target.case_links[0].r#type,
            on_target.case_links[0].target.as_str()
        ),
        (case_link::Type::Blocks as i32, pots.name.as_str())
    );
    let across = h
        .svc
        .create_case_link(h.req(
            &a,
            link(&pots.name, case_link::Type::DependsOn, &elsewhere.name),
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&across), vec!["case_link.target"]);
    let itself = h
        .svc
        .create_case_link(h.req(&a, link(&pots.name, case_link::Type::ParentOf, &pots.name)))
        .await
        .unwrap_err();
    assert_eq!(violations(&itself), vec!["case_link.target"]);
    let client = h
        .svc
        .list_case_links(h.req(
            &who(Role::Client),
            ListCaseLinksRequest {
                parent: pots.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(client.code(), Code::PermissionDenied);
    h.svc
        .delete_case_link(h.req(
            &a,
            DeleteCaseLinkRequest {
                name: depends.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let gone = h
        .svc
        .list_case_links(h.req(
            &a,
            ListCaseLinksRequest {
                parent: broadband.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(gone.case_links.is_empty(), "the inverse goes with the link");
}

async fn an_order_is_withheld_while_it_depends_on_an_open_case(h: Harness) {
    create_hand_off_codes(&h, &[]).await;
    let a = agent();
    let order = |title: &str| Case {
        r#type: CaseType::OrderNew as i32,
        ..case("acme", title)
    };
    let broadband = create_case(&h, &a, order("Broadband install"))
        .await
        .unwrap();
    let pots = create_case(&h, &a, order("POTS lines")).await.unwrap();
    let voice = create_case(&h, &a, order("Hosted voice")).await.unwrap();
    let link = |from: &str, t: case_link::Type, to: &str| CreateCaseLinkRequest {
        parent: from.into(),
        case_link: Some(CaseLink {
            r#type: t as i32,
            target: to.into(),
            reason: "needs the broadband circuit first".into(),
            ..Default::default()
        }),
        case_link_id: String::new(),
        request_id: String::new(),
    };
    let get = async |name: &str| {
        h.svc
            .get_case(h.req(&a, GetCaseRequest { name: name.into() }))
            .await
            .unwrap()
            .into_inner()
    };
    let withheld = async || {
        let mut names: Vec<String> = h
            .svc
            .list_cases(h.req(
                &a,
                ListCasesRequest {
                    filter: "withheld_by_dependency = true".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .cases
            .into_iter()
            .map(|c| c.title)
            .collect();
        names.sort();
        names
    };

    h.svc
        .create_case_link(h.req(
            &a,
            link(&pots.name, case_link::Type::DependsOn, &broadband.name),
        ))
        .await
        .unwrap();
    // Said from the other side: broadband blocks voice.
    h.svc
        .create_case_link(h.req(
            &a,
            link(&broadband.name, case_link::Type::Blocks, &voice.name),
        ))
        .await
        .unwrap();
    assert!(get(&pots.name).await.withheld_by_dependency);
    assert!(!get(&broadband.name).await.withheld_by_dependency);
    assert_eq!(withheld().await, vec!["Hosted voice", "POTS lines"]);

    let set = |name: &str, code: &str| SetCaseHandOffCodeRequest {
        name: name.into(),
        hand_off_code: code.into(),
        carrier_reference: String::new(),
        reason: String::new(),
        etag: String::new(),
        request_id: String::new(),
    };
    let nr = h
        .svc
        .set_case_hand_off_code(h.req(&a, set(&pots.name, "NR")))
        .await
        .unwrap()
        .into_inner();
    assert!(nr.withheld_by_dependency, "still not presented");
    let pe = h
        .svc
        .set_case_hand_off_code(h.req(&a, set(&pots.name, "PE")))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !pe.withheld_by_dependency,
        "presented to the carrier after all: nothing withholds it any more"
    );
    assert_eq!(withheld().await, vec!["Hosted voice"]);

    // The case depended on goes away: what waited on it is released.
    h.svc
        .cancel_case(h.req(
            &a,
            CancelCaseRequest {
                name: broadband.name.clone(),
                reason: "client chose another carrier".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    assert!(!get(&voice.name).await.withheld_by_dependency);
    assert!(withheld().await.is_empty());

    // A new dependency withholds again until its link is removed.
    let fiber = create_case(&h, &a, order("Fibre build")).await.unwrap();
    let on_fiber = h
        .svc
        .create_case_link(h.req(
            &a,
            link(&voice.name, case_link::Type::DependsOn, &fiber.name),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(get(&voice.name).await.withheld_by_dependency);
    h.svc
        .delete_case_link(h.req(
            &a,
            DeleteCaseLinkRequest {
                name: on_fiber.inverse.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    assert!(!get(&voice.name).await.withheld_by_dependency);
}

/// The us-central calendar and, on it, the "repairs" policy with the
/// targets of `targets`.
/// The repairs policy with only a restore target of `hours` in wall-clock
/// time, and the clock at a Monday 09:00 in Chicago (15:00 UTC).
async fn wall_clock_repairs(h: &Harness, hours: i64) {
    us_central_repairs(
        h,
        SlaPolicy {
            overall_delivery: Some(SlaTarget {
                basis: TimeBasis::WallClock as i32,
                ..target("restore", hours)
            }),
            ..Default::default()
        },
    )
    .await;
    h.clock.set("2026-11-30T15:00:00Z".parse().unwrap());
}

async fn us_central_repairs(h: &Harness, targets: SlaPolicy) -> SlaPolicy {
    create_calendar(h, "us-central", us_central())
        .await
        .unwrap();
    h.svc
        .create_sla_policy(h.req(
            &who(Role::Admin),
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Repairs".into(),
                    case_types: vec![CaseType::Repair as i32],
                    calendar: "calendars/us-central".into(),
                    ..targets
                }),
                sla_policy_id: "repairs".into(),
                validate_only: false,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn sla_policy_updates_can_be_checked_first_and_rolled_back(h: Harness) {
    let admin = who(Role::Admin);
    let created = us_central_repairs(
        &h,
        SlaPolicy {
            overall_delivery: Some(target("restore", 8)),
            ..Default::default()
        },
    )
    .await;
    let update = |restore: SlaTarget, etag: &str, validate_only: bool| UpdateSlaPolicyRequest {
        sla_policy: Some(SlaPolicy {
            name: "slaPolicies/repairs".into(),
            etag: etag.into(),
            overall_delivery: Some(restore),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["overall_delivery".into()],
        }),
        validate_only,
    };
    let current = async || {
        h.svc
            .get_sla_policy(h.req(
                &admin,
                GetSlaPolicyRequest {
                    name: "slaPolicies/repairs".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    };

    // A dry run shows the revision it would make and makes none.
    let preview = h
        .svc
        .update_sla_policy(h.req(&admin, update(target("restore", 4), &created.etag, true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (preview.revision_id.as_str(), preview.overall_delivery),
        ("2", Some(target("restore", 4)))
    );
    assert_eq!(current().await, created, "nothing was written");
    let bad = h
        .svc
        .update_sla_policy(h.req(
            &admin,
            update(
                SlaTarget {
                    duration: None,
                    ..target("restore", 0)
                },
                "",
                true,
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&bad),
        vec!["sla_policy.overall_delivery.duration"]
    );
    let stale = h
        .svc
        .update_sla_policy(h.req(&admin, update(target("restore", 4), "\"7\"", true)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "a dry run checks the etag too");

    // The real update, then a rollback to revision 1 as revision 3.
    let two = h
        .svc
        .update_sla_policy(h.req(&admin, update(target("restore", 2), &created.etag, false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.revision_id, "2");
    let rollback = |revision: &str, etag: &str| RollbackSlaPolicyRequest {
        name: "slaPolicies/repairs".into(),
        revision_id: revision.into(),
        etag: etag.into(),
        request_id: String::new(),
    };
    let stale = h
        .svc
        .rollback_sla_policy(h.req(&admin, rollback("1", &created.etag)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let missing = h
        .svc
        .rollback_sla_policy(h.req(&admin, rollback("9", "")))
        .await
        .unwrap_err();
    assert_eq!(violations(&missing), vec!["revision_id"]);
    assert_eq!(
        h.svc
            .rollback_sla_policy(h.req(&agent(), rollback("1", "")))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied,
        "agents read policies; managers change them"
    );
    let once = RollbackSlaPolicyRequest {
        request_id: "back-to-eight-hours".into(),
        ..rollback("1", &two.etag)
    };
    let three = h
        .svc
        .rollback_sla_policy(h.req(&admin, once.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = h
        .svc
        .rollback_sla_policy(h.req(&admin, once))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, three, "a retried rollback makes no fourth revision");
    assert_eq!(
        (three.revision_id.as_str(), three.overall_delivery.clone()),
        ("3", Some(target("restore", 8)))
    );
    assert_eq!(current().await, three);
    let revisions = h
        .svc
        .list_sla_policy_revisions(h.req(
            &admin,
            ListSlaPolicyRevisionsRequest {
                name: "slaPolicies/repairs".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sla_policies;
    assert_eq!(
        revisions
            .iter()
            .map(|p| (
                p.revision_id.as_str(),
                p.overall_delivery.as_ref().unwrap().duration
            ))
            .collect::<Vec<_>>(),
        vec![
            ("1", Some(hours(8))),
            ("2", Some(hours(2))),
            ("3", Some(hours(8)))
        ]
    );
}

async fn clocks_across_cases_filter_by_state_and_page_by_target_time(h: Harness) {
    us_central_repairs(
        &h,
        SlaPolicy {
            first_response: Some(target("first_response", 1)),
            overall_delivery: Some(target("restore", 8)),
            ..Default::default()
        },
    )
    .await;
    // Monday 2026-11-30 in Chicago: acme's two repairs at 09:00 and 09:30,
    // globex's at 09:10.
    let a = agent();
    let mut opened = Vec::new();
    for (at, account, title) in [
        ("2026-11-30T15:00:00Z", "acme", "A"),
        ("2026-11-30T15:10:00Z", "globex", "G"),
        ("2026-11-30T15:30:00Z", "acme", "B"),
    ] {
        h.clock.set(at.parse().unwrap());
        opened.push(create_case(&h, &a, case(account, title)).await.unwrap());
    }
    let (ca, cg, cb) = (&opened[0].name, &opened[1].name, &opened[2].name);
    // 10:20: A's and G's first responses are late, B's is at risk (48 of 60
    // minutes gone at 10:18).
    h.clock.set("2026-11-30T16:20:00Z".parse().unwrap());
    h.svc
        .sweep_timers("a", "2026-11-30T16:20:00Z".parse().unwrap())
        .await
        .unwrap();

    let list = async |p: &Principal, parent: &str, filter: &str, page_size: i32, token: &str| {
        h.svc
            .list_sla_clocks(h.req(
                p,
                ListSlaClocksRequest {
                    parent: parent.into(),
                    page_size,
                    page_token: token.into(),
                    filter: filter.into(),
                    order_by: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    };
    let names = |r: &ListSlaClocksResponse| {
        r.sla_clocks
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    let clock = |case: &str, key: &str| format!("{case}/slaClocks/{key}");

    let breached = list(&a, "cases/-", "state = BREACHED", 0, "")
        .await
        .unwrap();
    assert_eq!(
        names(&breached),
        vec![clock(ca, "first_response"), clock(cg, "first_response")]
    );
    // Read live: 80 minutes gone on A's first response by 10:20.
    assert_eq!(
        breached.sla_clocks[0].elapsed_duration,
        Some(Duration {
            seconds: 80 * 60,
            nanos: 0
        })
    );
    let at_risk = list(&a, "cases/-", "state = SLA_STATE_AT_RISK", 0, "")
        .await
        .unwrap();
    assert_eq!(names(&at_risk), vec![clock(cb, "first_response")]);
    let early = list(
        &a,
        "cases/-",
        "target_time < \"2026-11-30T16:15:00Z\"",
        0,
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        names(&early),
        vec![clock(ca, "first_response"), clock(cg, "first_response")]
    );

    // Every clock, two a page, in target order across cases: the three
    // first responses, then the restores (A's and G's by 17:00 and 17:10
    // today, B's at 09:30 tomorrow).
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(&a, "cases/-", "", 2, &token).await.unwrap();
        assert!(page.sla_clocks.len() <= 2);
        all.extend(names(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        all,
        vec![
            clock(ca, "first_response"),
            clock(cg, "first_response"),
            clock(cb, "first_response"),
            clock(ca, "restore"),
            clock(cg, "restore"),
            clock(cb, "restore"),
        ]
    );

    // One case, filtered; and what a client sees across cases: its own.
    let one = list(&a, ca, "key = \"restore\"", 0, "").await.unwrap();
    assert_eq!(names(&one), vec![clock(ca, "restore")]);
    let client = who(Role::Client);
    let theirs = list(&client, "cases/-", "key = \"first_response\"", 0, "")
        .await
        .unwrap();
    assert_eq!(
        names(&theirs),
        vec![clock(ca, "first_response"), clock(cb, "first_response")]
    );
    assert_eq!(
        list(&client, cg, "key = \"restore\"", 0, "")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let bad = list(&a, "cases/-", "colour = \"red\"", 0, "")
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), vec!["filter"]);
}

fn field_of(status: &Status) -> String {
    violations(status).join(",")
}

async fn out_of_range_times_durations_and_filters_are_refused_and_change_nothing(h: Harness) {
    let admin = who(Role::Admin);
    create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    // A huge target used to be stored, then made every matching CreateCase
    // and every timer sweep panic.
    for (duration, why) in [
        (
            Duration {
                seconds: i64::MAX,
                nanos: 0,
            },
            "100 years",
        ),
        (hours(367 * 24), "366 days"),
        (
            Duration {
                seconds: 1,
                nanos: -5,
            },
            "nanos",
        ),
    ] {
        let refused = h
            .svc
            .create_sla_policy(h.req(
                &admin,
                CreateSlaPolicyRequest {
                    sla_policy: Some(SlaPolicy {
                        display_name: "Huge".into(),
                        calendar: "calendars/us-central".into(),
                        overall_delivery: Some(SlaTarget {
                            duration: Some(duration),
                            ..target("restore", 1)
                        }),
                        ..Default::default()
                    }),
                    sla_policy_id: "huge".into(),
                    validate_only: false,
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{why}");
        assert_eq!(field_of(&refused), "sla_policy.overall_delivery.duration");
        let d = refused.get_error_details();
        let text = &d.bad_request().unwrap().field_violations[0].description;
        assert!(text.contains(why), "{text}");
    }
    let policies = h
        .svc
        .list_sla_policies(h.req(&admin, ListSlaPoliciesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        policies.sla_policies.is_empty(),
        "a refused policy is not stored"
    );
    // A case still opens, and counts nothing without a policy.
    let fine = create_case(&h, &agent(), case("acme", "Still fine"))
        .await
        .unwrap();
    // Every instant a case carries is bounded too.
    let refused = create_case(
        &h,
        &agent(),
        Case {
            requested_time: Some(ts("9999-12-30T00:00:00Z")),
            committed_time: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..case("acme", "Far future")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        field_of(&refused),
        "case.committed_time,case.requested_time"
    );
    let refused = h
        .svc
        .mark_case_jeopardy(h.req(
            &agent(),
            MarkCaseJeopardyRequest {
                name: fine.name.clone(),
                reason: "late".into(),
                revised_eta_time: Some(Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_of(&refused), "revised_eta_time");

    let add = |start: Timestamp, duration: Duration| AddBusinessTimeRequest {
        calendar: "calendars/us-central".into(),
        start_time: Some(start),
        duration: Some(duration),
        time_zone: None,
    };
    for (request, field) in [
        (add(ts("9999-12-30T00:00:00Z"), hours(1)), "start_time"),
        (
            add(
                Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                },
                hours(1),
            ),
            "start_time",
        ),
        (
            add(
                ts("2026-11-30T15:00:00Z"),
                Duration {
                    seconds: i64::MAX,
                    nanos: 999_999_999,
                },
            ),
            "duration",
        ),
        // 21 years of business time: past the 20-year cap on a walk.
        (
            add(ts("2026-11-30T15:00:00Z"), hours(21 * 366 * 24)),
            "duration",
        ),
    ] {
        let refused = h
            .svc
            .add_business_time(h.req(&admin, request))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(field_of(&refused), field);
    }
    // Within the caps it answers; the same span measured back agrees.
    let end = h
        .svc
        .add_business_time(h.req(&admin, add(ts("2026-11-30T15:00:00Z"), hours(8))))
        .await
        .unwrap()
        .into_inner()
        .end_time;
    assert_eq!(end, Some(ts("2026-11-30T23:00:00Z")), "09:00-17:00 Chicago");
    let measure = |end: Timestamp| MeasureBusinessTimeRequest {
        calendar: "calendars/us-central".into(),
        start_time: Some(ts("2026-11-30T15:00:00Z")),
        end_time: Some(end),
        time_zone: None,
    };
    let refused = h
        .svc
        .measure_business_time(h.req(&admin, measure(ts("2126-11-30T15:00:00Z"))))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code(), field_of(&refused)),
        (Code::InvalidArgument, "end_time".into())
    );

    // A calendar that works one minute a week cannot hold 19 years of
    // business time within the 20-year walk: refused at once, not walked.
    let mut sparse = us_central();
    sparse.working_periods.truncate(1);
    sparse.working_periods[0].end_minute = sparse.working_periods[0].start_minute + 1;
    sparse.holidays.clear();
    create_calendar(&h, "sparse", sparse).await.unwrap();
    let refused = h
        .svc
        .add_business_time(h.req(
            &admin,
            AddBusinessTimeRequest {
                calendar: "calendars/sparse".into(),
                ..add(ts("2026-11-30T15:00:00Z"), hours(19 * 366 * 24))
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // A holiday at the end of the calendar's range was accepted, then made
    // the walk panic.
    let mut far = us_central();
    far.holidays[0].date = Some(LocalDate {
        year: 9999,
        month: 12,
        day: 31,
    });
    let refused = create_calendar(&h, "far", far).await.unwrap_err();
    assert_eq!(field_of(&refused), "calendar.holidays[0].date");

    // Filters a caller can send to any list: deep, wide, long.
    let deep = format!("{}state = NEW{}", "(".repeat(1800), ")".repeat(1800));
    let nots = format!("{}state = NEW", "NOT ".repeat(999));
    let wide = vec!["state = NEW"; 1000].join(" OR ");
    let many = vec!["state=NEW"; 101].join(" OR ");
    let long = format!("owner:\"{}\"", "%_".repeat(20_000));
    let pattern = format!("owner:\"{}\"", "%_".repeat(300));
    for filter in [deep, nots, wide, many, long, pattern] {
        let refused = h
            .svc
            .list_cases(h.req(
                &agent(),
                ListCasesRequest {
                    filter: filter.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), field_of(&refused)),
            (Code::InvalidArgument, "filter".into()),
            "{}…: {}",
            &filter[..40],
            refused.message()
        );
    }
    // The widest filter allowed still runs on the database.
    let widest = vec!["state = NEW"; 100].join(" OR ");
    let listed = h
        .svc
        .list_cases(h.req(
            &agent(),
            ListCasesRequest {
                filter: widest,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.cases.len(), listed.total_size), (1, 1));
    let refused = h
        .svc
        .list_cases(h.req(
            &agent(),
            ListCasesRequest {
                order_by: "x".repeat(10_000),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_of(&refused), "order_by");
    let refused = h
        .svc
        .list_cases(h.req(
            &agent(),
            ListCasesRequest {
                page_token: "a".repeat(100_000),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_of(&refused), "page_token");
}

async fn clocks_say_how_far_past_and_project_while_paused(h: Harness) {
    wall_clock_repairs(&h, 2).await;
    let a = agent();
    let c = create_case(&h, &a, case("acme", "Down")).await.unwrap();
    let clock_name = format!("{}/slaClocks/restore", c.name);
    async fn get(h: &Harness, a: &Principal, name: &str) -> Result<SlaClock, Status> {
        h.svc
            .get_sla_clock(h.req(a, GetSlaClockRequest { name: name.into() }))
            .await
            .map(|r| r.into_inner())
    }
    h.svc
        .open_case(h.req(
            &a,
            OpenCaseRequest {
                name: c.name.clone(),
                owner: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // Waiting on the client after 30 minutes: the deadline is projected as
    // if work resumed now, and moves later while the wait lasts.
    h.clock.set("2026-11-30T15:30:00Z".parse().unwrap());
    h.svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: c.name.clone(),
                reason: "Site access".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // The reason reaches the client as a public update, posted with the
    // change itself.
    let updates = h
        .svc
        .list_notes(h.req(
            &who(Role::Client),
            ListNotesRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notes;
    assert_eq!(updates.len(), 1);
    assert_eq!(
        (updates[0].body.as_str(), updates[0].origin),
        ("Site access", note::Origin::System as i32)
    );
    assert_eq!(
        sla_events(&h, "breached").await.len() + note_events(&h).await,
        1,
        "one note_created event, no breach yet"
    );
    h.clock.set("2026-11-30T16:30:00Z".parse().unwrap());
    let paused = get(&h, &a, &clock_name).await.unwrap();
    assert_eq!(paused.status, sla_clock::Status::Paused as i32);
    assert_eq!(paused.target_time, Some(ts("2026-11-30T18:00:00Z")));
    assert_eq!(
        paused.remaining_duration,
        Some(Duration {
            seconds: 5400,
            nanos: 0
        })
    );
    h.clock.set("2026-11-30T17:30:00Z".parse().unwrap());
    assert_eq!(
        get(&h, &a, &clock_name).await.unwrap().target_time,
        Some(ts("2026-11-30T19:00:00Z"))
    );
    assert_eq!(
        breach_timer_due(&h, &clock_name).await,
        None,
        "a paused clock arms no breach"
    );
    h.svc
        .resume_case(h.req(
            &a,
            ResumeCaseRequest {
                name: c.name.clone(),
                reason: "access granted".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // Breached at 19:00; read at 20:00 it is an hour past its target.
    h.clock.set("2026-11-30T20:00:00Z".parse().unwrap());
    let breached = get(&h, &a, &clock_name).await.unwrap();
    assert_eq!(breached.state, SlaState::Breached as i32);
    assert_eq!(breached.breach_time, Some(ts("2026-11-30T19:00:00Z")));
    assert_eq!(
        breached.remaining_duration,
        Some(Duration {
            seconds: -3600,
            nanos: 0
        })
    );
    let why = h
        .svc
        .explain_sla_clock(h.req(
            &a,
            ExplainSlaClockRequest {
                name: clock_name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let (open, done) = why.segments.split_last().unwrap();
    assert_eq!(open.start_time, Some(ts("2026-11-30T17:30:00Z")));
    assert_eq!(open.end_time, None, "the span in progress has no end yet");
    assert!(done.iter().all(|s| s.end_time.is_some()));
}

async fn a_client_opens_cases_with_its_own_fields_only(h: Harness) {
    let client = who(Role::Client);
    for (c, field) in [
        (
            Case {
                owner: "staff/zeki".into(),
                ..case("acme", "x")
            },
            "case.owner",
        ),
        (
            Case {
                performing_team: "field-ops".into(),
                ..case("acme", "x")
            },
            "case.performing_team",
        ),
        (
            Case {
                carrier_reference: "LUMEN-1".into(),
                ..case("acme", "x")
            },
            "case.carrier_reference",
        ),
        (
            Case {
                priority: CasePriority::Critical as i32,
                ..case("acme", "x")
            },
            "case.priority",
        ),
    ] {
        let refused = create_case(&h, &client, c).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    let listed = h
        .svc
        .list_cases(h.req(&agent(), ListCasesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 0, "nothing refused was stored");
    let opened = create_case(
        &h,
        &client,
        Case {
            priority: CasePriority::High as i32,
            description: "Since 9am".into(),
            ..case("acme", "Slow link")
        },
    )
    .await
    .unwrap();
    assert_eq!(opened.priority, CasePriority::High as i32);
    // Staff may set what a client may not.
    create_case(
        &h,
        &agent(),
        Case {
            owner: "staff/zeki".into(),
            priority: CasePriority::Critical as i32,
            ..case("acme", "Outage")
        },
    )
    .await
    .unwrap();
    let listed = h
        .svc
        .list_cases(h.req(
            &agent(),
            ListCasesRequest {
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.cases.len(), listed.total_size), (1, 2));
    // The count is the first page's: the pages after carry it, so a case
    // opened meanwhile does not change it (nor cost a count per page).
    create_case(&h, &agent(), case("acme", "Meanwhile"))
        .await
        .unwrap();
    let page_two = h
        .svc
        .list_cases(h.req(
            &agent(),
            ListCasesRequest {
                page_size: 1,
                page_token: listed.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((page_two.cases.len(), page_two.total_size), (1, 2));
    // `cases/-` reads notes across cases; a client still sees only public
    // updates on its own account.
    for (p, visibility) in [
        (agent(), note::Visibility::Internal),
        (agent(), note::Visibility::Public),
    ] {
        h.svc
            .create_note(h.req(
                &p,
                CreateNoteRequest {
                    parent: opened.name.clone(),
                    note: Some(Note {
                        body: format!("{visibility:?}"),
                        visibility: visibility as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let across = |p: Principal| {
        let h = &h;
        async move {
            h.svc
                .list_notes(h.req(
                    &p,
                    ListNotesRequest {
                        parent: "cases/-".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .notes
                .len()
        }
    };
    assert_eq!(across(agent()).await, 2);
    assert_eq!(across(client.clone()).await, 1);
    let globex_client = Principal {
        account: Some("accounts/globex".into()),
        ..who(Role::Client)
    };
    assert_eq!(across(globex_client).await, 0);
}

async fn configuration_in_use_is_kept_and_checked_like_a_real_write(h: Harness) {
    let policy = us_central_repairs(
        &h,
        SlaPolicy {
            overall_delivery: Some(target("restore", 8)),
            ..Default::default()
        },
    )
    .await;
    let delete = |p: &Principal| {
        h.svc.delete_calendar(h.req(
            p,
            DeleteCalendarRequest {
                name: "calendars/us-central".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
    };
    let refused = delete(&who(Role::Admin)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains(&policy.name),
        "{}",
        refused.message()
    );
    assert_eq!(
        delete(&who(Role::Client)).await.unwrap_err().code(),
        Code::PermissionDenied,
        "a client does not learn which policies use it"
    );
    // A deleted policy's cases still count in the calendar.
    h.svc
        .delete_sla_policy(h.req(
            &who(Role::Admin),
            DeleteSlaPolicyRequest {
                name: policy.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        delete(&who(Role::Admin)).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    h.svc
        .get_calendar(h.req(
            &who(Role::Admin),
            GetCalendarRequest {
                name: "calendars/us-central".into(),
            },
        ))
        .await
        .unwrap();

    // validate_only runs the same authorisation as the real create.
    let probe = |p: &Principal| {
        h.svc.create_sla_policy(h.req(
            p,
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Probe".into(),
                    calendar: "calendars/us-central".into(),
                    overall_delivery: Some(target("restore", 4)),
                    ..Default::default()
                }),
                sla_policy_id: "probe".into(),
                validate_only: true,
                request_id: String::new(),
            },
        ))
    };
    assert_eq!(
        probe(&who(Role::Client)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let would_be = probe(&who(Role::Admin)).await.unwrap().into_inner();
    assert_eq!(would_be.name, "slaPolicies/probe");
    let stored = h
        .svc
        .get_sla_policy(h.req(
            &who(Role::Admin),
            GetSlaPolicyRequest {
                name: "slaPolicies/probe".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stored.code(), Code::NotFound, "validate_only saves nothing");
}

async fn a_case_without_a_site_counts_in_its_accounts_zone(h: Harness) {
    // The calendar is kept in Tokyo; the policy reads hours where the site
    // is, and a case with no site is read where its account is (Chicago).
    let mut tokyo = us_central();
    tokyo.time_zone = Some(TimeZone {
        id: "Asia/Tokyo".into(),
    });
    create_calendar(&h, "tokyo", tokyo).await.unwrap();
    h.svc
        .create_sla_policy(h.req(
            &who(Role::Admin),
            CreateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    display_name: "Repairs".into(),
                    calendar: "calendars/tokyo".into(),
                    time_zone_source: sla_policy::TimeZoneSource::Site as i32,
                    overall_delivery: Some(target("restore", 8)),
                    ..Default::default()
                }),
                sla_policy_id: "repairs".into(),
                validate_only: false,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // Monday 09:00 in Chicago.
    h.clock.set("2026-11-30T15:00:00Z".parse().unwrap());
    let c = create_case(
        &h,
        &agent(),
        Case {
            site: String::new(),
            ..case("acme", "No site")
        },
    )
    .await
    .unwrap();
    let clock = h
        .svc
        .get_sla_clock(h.req(
            &agent(),
            GetSlaClockRequest {
                name: format!("{}/slaClocks/restore", c.name),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clock.time_zone.unwrap().id, "America/Chicago");
    assert_eq!(clock.status, sla_clock::Status::Running as i32);
    // 8 business hours: Monday 17:00 Chicago, not Tokyo's hours.
    assert_eq!(clock.target_time, Some(ts("2026-11-30T23:00:00Z")));
}

/// A second replica of the service on the same database.
async fn other_replica(h: &Harness) -> Cases {
    let other_db = concierge_common::storage::Db::connect(&h.db.url, 4)
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(h.customers_url.clone())
        .unwrap()
        .connect_lazy();
    Cases::open(
        other_db,
        h.codec.clone(),
        Arc::new(h.clock.clone()),
        channel,
    )
    .await
    .unwrap()
}

/// A replica matches new cases against the policies it read before; a
/// change made on another replica reaches its very next create, which
/// carries its clocks' summary from the start.
async fn a_new_case_is_matched_against_a_policy_changed_on_another_replica(h: Harness) {
    wall_clock_repairs(&h, 8).await;
    let a = agent();
    let first = create_case(&h, &a, case("acme", "Before the change"))
        .await
        .unwrap();
    assert_eq!(first.sla_policy_revision, "1");
    let other = other_replica(&h).await;
    other
        .update_sla_policy(h.req(
            &who(Role::Admin),
            UpdateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    name: "slaPolicies/repairs".into(),
                    overall_delivery: Some(SlaTarget {
                        basis: TimeBasis::WallClock as i32,
                        ..target("restore", 2)
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["overall_delivery".into()],
                }),
                validate_only: false,
            },
        ))
        .await
        .unwrap();
    let second = create_case(&h, &a, case("acme", "After the change"))
        .await
        .unwrap();
    assert_eq!(second.sla_policy_revision, "2");
    let summary = second.sla.expect("the reply carries the SLA summary");
    assert_eq!(summary.next_target_key, "restore");
    assert_eq!(summary.next_target_time, Some(ts("2026-11-30T17:00:00Z")));
    // The clock index has it at once: no re-arm after the commit.
    let clock = format!("{}/slaClocks/restore", second.name);
    assert_eq!(
        breach_timer_due(&h, &clock).await,
        Some(ts("2026-11-30T17:00:00Z").seconds * 1_000_000)
    );
    let indexed = h
        .svc
        .list_sla_clocks(h.req(
            &a,
            ListSlaClocksRequest {
                parent: second.name.clone(),
                // A filter reads the index, not the case's ledger.
                filter: "key = \"restore\"".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sla_clocks;
    assert_eq!(
        indexed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec![clock.as_str()]
    );
}

async fn refresh_marker(h: &Harness, case: &str) -> Option<i64> {
    let mut pc = h.svc.db().acquire().await.unwrap();
    concierge_common::on_conn!(&mut pc.conn(), x => sqlx::query_scalar("SELECT due_time FROM timers WHERE id = $1")
        .bind(format!("{case}:sla_refresh"))
        .fetch_optional(&mut **x)
        .await
        .unwrap())
}

async fn a_change_whose_timers_fail_to_arm_is_finished_by_the_sweep(h: Harness) {
    wall_clock_repairs(&h, 2).await;
    // Named per backend: failpoints are global to the test process.
    let id = format!("armless-{:?}", h.svc.db().dialect()).to_lowercase();
    let name = format!("cases/{id}");
    let clock = format!("{name}/slaClocks/restore");
    let a = agent();
    h.svc
        .create_case(h.req(
            &a,
            CreateCaseRequest {
                case: Some(case("acme", "Timers fail to arm")),
                case_id: id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    // A create arms its timers in its own transaction: nothing is left to
    // re-arm after it.
    let two_hours_on = Some(ts("2026-11-30T17:00:00Z").seconds * 1_000_000);
    assert_eq!(breach_timer_due(&h, &clock).await, two_hours_on);
    assert_eq!(refresh_marker(&h, &name).await, None);
    h.svc
        .open_case(h.req(
            &a,
            OpenCaseRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    fail::cfg("cases::refresh_timers", &format!("return({name})")).unwrap();
    let pended = h
        .svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: name.clone(),
                reason: "Site access".into(),
                ..Default::default()
            },
        ))
        .await;
    fail::remove("cases::refresh_timers");
    // Acknowledged: the change and the promise to re-arm its timers are
    // durable together, although the re-arming itself failed: the paused
    // clock's breach timer is still armed.
    assert_eq!(
        pended.unwrap().into_inner().state,
        case::State::PendingClient as i32
    );
    assert_eq!(breach_timer_due(&h, &clock).await, two_hours_on);
    assert!(refresh_marker(&h, &name).await.is_some());
    // A sweep right away leaves it to the re-arm in flight (the marker falls
    // due 5 s after the change); any replica's sweep after that re-arms
    // (before the fix, none ever did: the sweep only works through timers
    // that exist).
    h.svc
        .sweep_timers("replica-b", "2026-11-30T15:00:01Z".parse().unwrap())
        .await
        .unwrap();
    assert!(refresh_marker(&h, &name).await.is_some());
    assert_eq!(breach_timer_due(&h, &clock).await, two_hours_on);
    h.svc
        .sweep_timers("replica-b", "2026-11-30T15:00:06Z".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(refresh_marker(&h, &name).await, None);
    assert_eq!(
        breach_timer_due(&h, &clock).await,
        None,
        "paused: no instant"
    );
    // An hour on the client's side later, the deadline is an hour later.
    h.clock.set("2026-11-30T16:00:00Z".parse().unwrap());
    h.svc
        .resume_case(h.req(
            &a,
            ResumeCaseRequest {
                name: name.clone(),
                reason: "access granted".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        breach_timer_due(&h, &clock).await,
        Some(ts("2026-11-30T18:00:00Z").seconds * 1_000_000)
    );
}

async fn note_events(h: &Harness) -> usize {
    let mut c = h.svc.db().acquire().await.unwrap();
    concierge_common::outbox::read_after(&mut c.conn(), 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.event.r#type == "concierge.cases.v1.note_created")
        .count()
}

async fn a_refusal_by_the_customers_service_keeps_its_meaning(h: Harness) {
    // A replica whose internal secret is not the customers service's: every
    // call it makes is refused as unauthenticated. That is this replica's
    // fault, not an outage to retry (it was UNAVAILABLE "retry" before).
    let codec = PrincipalCodec::new("another-secret".into());
    let db = concierge_common::storage::Db::connect(&h.db.url, 2)
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(h.customers_url.clone())
        .unwrap()
        .connect_lazy();
    let misconfigured = Cases::open(db, codec.clone(), Arc::new(h.clock.clone()), channel)
        .await
        .unwrap();
    let mut request = Request::new(CreateCaseRequest {
        case: Some(case("acme", "Down")),
        ..Default::default()
    });
    request.metadata_mut().insert(
        PRINCIPAL_HEADER,
        codec
            .encode(&agent(), concierge_cases::SERVICE_NAME)
            .parse()
            .unwrap(),
    );
    let refused = misconfigured.create_case(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    // A customers service that is really down is still worth a retry.
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let db = concierge_common::storage::Db::connect(&h.db.url, 2)
        .await
        .unwrap();
    let cut_off = Cases::open(db, h.codec.clone(), Arc::new(h.clock.clone()), channel)
        .await
        .unwrap();
    let refused = cut_off
        .create_case(h.req(
            &agent(),
            CreateCaseRequest {
                case: Some(case("acme", "Down")),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.get_error_details().retry_info().is_some());
}

async fn a_jeopardy_reason_reaches_the_client_as_a_public_update(h: Harness) {
    let a = agent();
    let c = create_case(&h, &a, case("acme", "New circuit"))
        .await
        .unwrap();
    h.svc
        .start_case_work(h.req(
            &a,
            StartCaseWorkRequest {
                name: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mark = |reason: &str| MarkCaseJeopardyRequest {
        name: c.name.clone(),
        reason: reason.into(),
        revised_eta_time: Some(ts("2026-12-15T17:00:00Z")),
        ..Default::default()
    };
    let jp = h
        .svc
        .mark_case_jeopardy(h.req(&a, mark("Carrier needs a permit")))
        .await
        .unwrap()
        .into_inner();
    // Already in jeopardy, a new reason is a second update.
    let again = h
        .svc
        .mark_case_jeopardy(h.req(&a, mark("Permit granted; splicing Monday")))
        .await
        .unwrap()
        .into_inner();
    let updates = h
        .svc
        .list_notes(h.req(
            &who(Role::Client),
            ListNotesRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notes;
    let seen: Vec<(&str, &str)> = updates
        .iter()
        .map(|n| (n.name.as_str(), n.body.as_str()))
        .collect();
    let first = jp.jeopardy.unwrap().public_note;
    let second = again.jeopardy.unwrap().public_note;
    assert_eq!(
        seen,
        vec![
            (first.as_str(), "Carrier needs a permit"),
            (second.as_str(), "Permit granted; splicing Monday"),
        ],
        "the case names the public update that carried each reason"
    );
    assert!(
        updates
            .iter()
            .all(|n| n.origin == note::Origin::System as i32)
    );
}

/// Every kind of change the service makes, then the outbox read as a
/// consumer reads it: each event's type is a value of the catalogue
/// (`cases/v1/events.proto`), its payload the message that value declares,
/// its visibility within the declared audience, and every declared type is
/// emitted by something (nothing listed that never happens).
async fn every_event_is_declared_in_the_catalogue(h: Harness) {
    let admin = who(Role::Admin);
    let a = agent();
    let mask = |p: &str| {
        Some(FieldMask {
            paths: vec![p.into()],
        })
    };
    // Configuration: calendars, a policy, hand-off codes, each through
    // its whole life.
    us_central_repairs(
        &h,
        SlaPolicy {
            overall_delivery: Some(target("restore", 4)),
            ..Default::default()
        },
    )
    .await;
    h.svc
        .update_calendar(h.req(
            &admin,
            UpdateCalendarRequest {
                calendar: Some(Calendar {
                    name: "calendars/us-central".into(),
                    display_name: "US Central".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
            },
        ))
        .await
        .unwrap();
    create_calendar(&h, "spare", us_central()).await.unwrap();
    h.svc
        .delete_calendar(h.req(
            &admin,
            DeleteCalendarRequest {
                name: "calendars/spare".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .update_sla_policy(h.req(
            &admin,
            UpdateSlaPolicyRequest {
                sla_policy: Some(SlaPolicy {
                    name: "slaPolicies/repairs".into(),
                    display_name: "Repairs (US)".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for undo in [false, true] {
        let name = "slaPolicies/repairs".to_string();
        if undo {
            h.svc
                .undelete_sla_policy(h.req(
                    &admin,
                    UndeleteSlaPolicyRequest {
                        name,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        } else {
            h.svc
                .delete_sla_policy(h.req(
                    &admin,
                    DeleteSlaPolicyRequest {
                        name,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        }
    }
    create_hand_off_codes(&h, &[]).await;
    h.svc
        .update_hand_off_code(h.req(
            &admin,
            UpdateHandOffCodeRequest {
                hand_off_code: Some(HandOffCode {
                    name: "handOffCodes/NR".into(),
                    display_name: "Not ready".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_hand_off_code(h.req(
            &admin,
            DeleteHandOffCodeRequest {
                name: "handOffCodes/PE".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // A case through its life, its clocks running out on the way.
    h.clock.set("2026-11-30T15:00:00Z".parse().unwrap());
    let c = create_case(&h, &a, case("acme", "Down")).await.unwrap();
    let name = c.name.clone();
    h.svc
        .open_case(h.req(
            &a,
            OpenCaseRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .update_case(h.req(
            &a,
            UpdateCaseRequest {
                case: Some(Case {
                    name: name.clone(),
                    title: "Down at HQ".into(),
                    ..Default::default()
                }),
                update_mask: mask("title"),
            },
        ))
        .await
        .unwrap();
    for visibility in [note::Visibility::Internal, note::Visibility::Public] {
        h.svc
            .create_note(h.req(
                &a,
                CreateNoteRequest {
                    parent: name.clone(),
                    note: Some(Note {
                        visibility: visibility as i32,
                        body: "Engineer dispatched".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    // The reason reaches the client as a public update, posted with it.
    h.svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: name.clone(),
                reason: "Site access".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .resume_case(h.req(
            &a,
            ResumeCaseRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let late = "2026-12-02T23:00:00Z".parse::<jiff::Timestamp>().unwrap();
    h.clock.set(late);
    h.svc.sweep_timers("a", late).await.unwrap();
    h.svc
        .resolve_case(h.req(
            &a,
            ResolveCaseRequest {
                name: name.clone(),
                resolution: Some(Resolution {
                    root_cause: "Card failure".into(),
                    resolution_code: "FIXED".into(),
                    summary: "Replaced the card".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .close_case(h.req(
            &a,
            CloseCaseRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .reopen_case(h.req(
            &a,
            ReopenCaseRequest {
                name: name.clone(),
                reason: "Down again".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .cancel_case(h.req(
            &a,
            CancelCaseRequest {
                name: name.clone(),
                reason: "Filed twice".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Two more: linked, unlinked, one merged into the other.
    let first = create_case(&h, &a, case("acme", "Slow")).await.unwrap();
    let dup = create_case(&h, &a, case("acme", "Slow again"))
        .await
        .unwrap();
    let link = h
        .svc
        .create_case_link(h.req(
            &a,
            CreateCaseLinkRequest {
                parent: dup.name.clone(),
                case_link: Some(CaseLink {
                    r#type: case_link::Type::DuplicateOf as i32,
                    target: first.name.clone(),
                    reason: "Same circuit".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .delete_case_link(h.req(
            &a,
            DeleteCaseLinkRequest {
                name: link.name,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .merge_case(h.req(
            &a,
            MergeCaseRequest {
                name: dup.name,
                target: first.name,
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Chase rules: the built-ins were created at start; one is edited, and a
    // rule of the company's own comes and goes.
    let jp = h
        .svc
        .get_chase_rule(h.req(
            &admin,
            GetChaseRuleRequest {
                name: "chaseRules/jeopardy-without-reason".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    upsert_chase_rule(
        &h,
        &admin,
        ChaseRule {
            enabled: false,
            ..jp
        },
        &["enabled"],
    )
    .await
    .unwrap();
    let own = upsert_chase_rule(
        &h,
        &admin,
        ChaseRule {
            name: "chaseRules/own".into(),
            ..chase_rule(chase_condition::Kind::SlaAtRisk, "")
        },
        &["*"],
    )
    .await
    .unwrap();
    h.svc
        .delete_chase_rule(h.req(
            &admin,
            DeleteChaseRuleRequest {
                name: own.name,
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Escalations: one raised, taken and resolved; another withdrawn.
    let open_case = create_case(&h, &a, case("acme", "Escalated"))
        .await
        .unwrap();
    for (i, settle) in ["resolve", "cancel"].into_iter().enumerate() {
        let e = raise(
            &h,
            &a,
            &open_case.name,
            escalation_to("staff/ayse", &format!("reason {i}")),
        )
        .await
        .unwrap();
        if settle == "resolve" {
            h.svc
                .acknowledge_escalation(h.req(
                    &a,
                    AcknowledgeEscalationRequest {
                        name: e.name.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
            h.svc
                .resolve_escalation(h.req(
                    &a,
                    ResolveEscalationRequest {
                        name: e.name,
                        outcome: "done".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        } else {
            h.svc
                .cancel_escalation(h.req(
                    &a,
                    CancelEscalationRequest {
                        name: e.name,
                        reason: "in error".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        }
    }

    // A control document issued, and the weekly run's settings changed.
    h.svc
        .update_control_document_settings(h.req(
            &admin,
            UpdateControlDocumentSettingsRequest {
                control_document_settings: Some(ControlDocumentSettings {
                    name: "controlDocumentSettings".into(),
                    send_minute: 540,
                    ..Default::default()
                }),
                update_mask: mask("send_minute"),
            },
        ))
        .await
        .unwrap();
    h.svc
        .generate_control_document(h.req(
            &a,
            GenerateControlDocumentRequest {
                parent: "accounts/acme".into(),
                archive: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Chase runs: one taken to its end, one cleared by the change that
    // clears its condition, one stopped by a person.
    upsert_chase_rule(&h, &admin, owned_by_zed_rule(), &["*"])
        .await
        .unwrap();
    let zeds = |title: &str| Case {
        owner: "staff/zed".into(),
        ..case("acme", title)
    };
    let taken = create_case(&h, &a, zeds("Chased to the end"))
        .await
        .unwrap();
    let cleared = create_case(&h, &a, zeds("Cleared")).await.unwrap();
    let stopped = create_case(&h, &a, zeds("Stopped")).await.unwrap();
    h.svc
        .update_case(h.req(
            &a,
            UpdateCaseRequest {
                case: Some(Case {
                    name: cleared.name.clone(),
                    owner: "staff/ayse".into(),
                    ..Default::default()
                }),
                update_mask: mask("owner"),
            },
        ))
        .await
        .unwrap();
    let run = chase_runs_of(&h, &stopped.name).await.remove(0);
    h.svc
        .cancel_chase_run(h.req(
            &a,
            CancelChaseRunRequest {
                name: run.name,
                reason: "not needed".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let now = h.clock.advance(jiff::SignedDuration::ZERO);
    h.svc.sweep_timers("replica-a", now).await.unwrap();
    let later = h.clock.advance(jiff::SignedDuration::from_hours(24));
    h.svc.sweep_timers("replica-a", later).await.unwrap();
    assert_eq!(
        chase_runs_of(&h, &taken.name).await[0].state(),
        chase_run::State::Exhausted
    );

    testing::assert_events_match_catalogue::<EventType>("cases", &h.events().await);
}

fn chase_rule(kind: chase_condition::Kind, expression: &str) -> ChaseRule {
    ChaseRule {
        display_name: "Waiting on a site survey".into(),
        condition: Some(ChaseCondition {
            kind: kind as i32,
            expression: expression.into(),
            missing_description: "the site survey".into(),
        }),
        steps: vec![ChaseRuleStep {
            wait: Some(hours(24)),
            basis: TimeBasis::Business as i32,
            actions: vec![ChaseAction {
                action_type: Some(chase_action::ActionType::PostNote(PostNoteAction {
                    visibility: note::Visibility::Internal as i32,
                    body_template: "{{case.performing_team}}: {{missing}} for {{case.name}}?"
                        .into(),
                })),
            }],
        }],
        enabled: true,
        ..Default::default()
    }
}

async fn list_chase_rules(
    h: &Harness,
    p: &Principal,
    filter: &str,
) -> Result<Vec<ChaseRule>, Status> {
    h.svc
        .list_chase_rules(h.req(
            p,
            ListChaseRulesRequest {
                filter: filter.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().chase_rules)
}

async fn upsert_chase_rule(
    h: &Harness,
    p: &Principal,
    rule: ChaseRule,
    paths: &[&str],
) -> Result<ChaseRule, Status> {
    h.svc
        .update_chase_rule(h.req(
            p,
            UpdateChaseRuleRequest {
                chase_rule: Some(rule),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
                allow_missing: true,
                validate_only: false,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// The three chases of DOMAIN.md come installed and on; they can be turned
/// off and edited, never deleted, and a restart does not undo an edit.
async fn chase_rules_ship_built_in_and_are_edited_not_deleted(h: Harness) {
    let agent = who(Role::Agent);
    let built_in = list_chase_rules(&h, &agent, "built_in = true")
        .await
        .unwrap();
    assert_eq!(
        built_in.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec![
            "chaseRules/construction-undefined",
            "chaseRules/jeopardy-without-reason",
            "chaseRules/not-presented-to-carrier",
        ]
    );
    assert!(built_in.iter().all(|r| r.enabled && r.built_in));
    let jp = &built_in[1];
    assert_eq!(
        jp.condition.as_ref().unwrap().kind,
        chase_condition::Kind::JeopardyWithoutReason as i32
    );
    // Ask now; 48 wall-clock hours later ask again and escalate.
    let waits: Vec<_> = jp
        .steps
        .iter()
        .map(|s| (s.wait.as_ref().map_or(0, |w| w.seconds), s.basis))
        .collect();
    assert_eq!(
        waits,
        vec![
            (0, TimeBasis::WallClock as i32),
            (48 * 3600, TimeBasis::WallClock as i32)
        ]
    );
    assert!(matches!(
        jp.steps[1].actions[1].action_type,
        Some(chase_action::ActionType::Escalate(_))
    ));
    let construction = &built_in[0];
    assert_eq!(construction.steps[1].basis, TimeBasis::Business as i32);

    let admin = who(Role::Admin);
    let refused = h
        .svc
        .delete_chase_rule(h.req(
            &admin,
            DeleteChaseRuleRequest {
                name: jp.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.get_error_details().error_info().unwrap().reason,
        "BUILT_IN_RULE"
    );

    // An agent reads rules but does not change them.
    let off = ChaseRule {
        name: jp.name.clone(),
        enabled: false,
        etag: jp.etag.clone(),
        built_in: false,
        ..Default::default()
    };
    let denied = h
        .svc
        .update_chase_rule(h.req(
            &agent,
            UpdateChaseRuleRequest {
                chase_rule: Some(off.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["enabled".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let disabled = h
        .svc
        .update_chase_rule(h.req(
            &who(Role::Manager),
            UpdateChaseRuleRequest {
                chase_rule: Some(off),
                update_mask: Some(FieldMask {
                    paths: vec!["enabled".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!disabled.enabled);
    assert!(disabled.built_in, "still built in: built_in is output only");

    // Another replica starting on the same database keeps the edit.
    let other = other_replica(&h).await;
    let again = other
        .get_chase_rule(h.req(
            &agent,
            GetChaseRuleRequest {
                name: jp.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.enabled);
    assert_eq!(again.etag, disabled.etag);
    assert_eq!(
        list_chase_rules(&h, &agent, "").await.unwrap().len(),
        3,
        "installed once"
    );

    // Clients never see chase rules.
    let client = list_chase_rules(&h, &who(Role::Client), "")
        .await
        .unwrap_err();
    assert_eq!(client.code(), Code::PermissionDenied);
}

async fn chase_rules_are_checked_field_by_field_and_nothing_is_stored(h: Harness) {
    let admin = who(Role::Admin);
    let create = |rule: ChaseRule| {
        h.svc.create_chase_rule(h.req(
            &admin,
            CreateChaseRuleRequest {
                chase_rule: Some(rule),
                chase_rule_id: "survey".into(),
                ..Default::default()
            },
        ))
    };
    let mut bad = chase_rule(chase_condition::Kind::Expression, "account_manager = ");
    bad.display_name.clear();
    bad.calendar = "teams/x".into();
    bad.steps[0].wait = Some(Duration {
        seconds: -60,
        nanos: 0,
    });
    let note = |body: &str| ChaseAction {
        action_type: Some(chase_action::ActionType::PostNote(PostNoteAction {
            visibility: note::Visibility::Internal as i32,
            body_template: body.into(),
        })),
    };
    bad.steps.push(ChaseRuleStep {
        wait: Some(hours(24 * 400)),
        basis: TimeBasis::WallClock as i32,
        actions: vec![
            note("Dear {{case.account_manager}}"),
            ChaseAction {
                action_type: Some(chase_action::ActionType::Escalate(EscalateAction {
                    level: 0,
                    target: escalate_action::Target::Team as i32,
                    ..Default::default()
                })),
            },
            ChaseAction {
                action_type: Some(chase_action::ActionType::Notify(NotifyAction {
                    recipient: notify_action::Recipient::StaffMember as i32,
                    staff_member: "zeki".into(),
                    ..Default::default()
                })),
            },
            ChaseAction { action_type: None },
        ],
    });
    bad.steps.push(ChaseRuleStep::default());
    let err = create(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&err),
        vec![
            "chase_rule.calendar",
            "chase_rule.condition.expression",
            "chase_rule.display_name",
            "chase_rule.steps[0].wait",
            "chase_rule.steps[1].actions[0].post_note.body_template",
            "chase_rule.steps[1].actions[1].escalate.level",
            "chase_rule.steps[1].actions[1].escalate.team",
            "chase_rule.steps[1].actions[2].notify.staff_member",
            "chase_rule.steps[1].actions[3]",
            "chase_rule.steps[1].wait",
            "chase_rule.steps[2].actions",
        ]
    );
    // A filter field cases do not have, no steps, an unknown calendar.
    let unknown_field = chase_rule(chase_condition::Kind::JeopardyWithoutReason, "colour = RED");
    assert_eq!(
        field_of(&create(unknown_field).await.unwrap_err()),
        "chase_rule.condition.expression"
    );
    let no_steps = ChaseRule {
        steps: vec![],
        ..chase_rule(chase_condition::Kind::ConstructionUndefined, "")
    };
    assert_eq!(
        field_of(&create(no_steps).await.unwrap_err()),
        "chase_rule.steps"
    );
    let no_kind = chase_rule(chase_condition::Kind::Unspecified, "");
    assert_eq!(
        field_of(&create(no_kind).await.unwrap_err()),
        "chase_rule.condition.kind"
    );
    let nowhere = ChaseRule {
        calendar: "calendars/nowhere".into(),
        ..chase_rule(chase_condition::Kind::ConstructionUndefined, "")
    };
    assert_eq!(
        field_of(&create(nowhere).await.unwrap_err()),
        "chase_rule.calendar"
    );
    assert_eq!(
        list_chase_rules(&h, &admin, "built_in = false")
            .await
            .unwrap()
            .len(),
        0,
        "nothing stored"
    );

    // A rule narrowed by an expression over case fields is taken.
    let narrowed = create(chase_rule(
        chase_condition::Kind::NotPresentedToCarrier,
        "type = CASE_TYPE_ORDER_NEW AND priority = CASE_PRIORITY_HIGH",
    ))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(narrowed.name, "chaseRules/survey");
    assert!(!narrowed.built_in);
    let by_kind = list_chase_rules(&h, &admin, "condition.kind = NOT_PRESENTED_TO_CARRIER")
        .await
        .unwrap();
    assert_eq!(by_kind.len(), 2, "the built-in one and this one");
}

/// `chase-rules apply -f` is a series of upserts: the first creates, the
/// next updates by mask; a calendar a rule waits in is kept.
async fn chase_rules_are_applied_from_a_file_as_upserts(h: Harness) {
    let admin = who(Role::Admin);
    create_calendar(&h, "us-central", us_central())
        .await
        .unwrap();
    let rule = ChaseRule {
        name: "chaseRules/survey".into(),
        calendar: "calendars/us-central".into(),
        ..chase_rule(chase_condition::Kind::ConstructionUndefined, "")
    };
    let created = upsert_chase_rule(&h, &admin, rule.clone(), &["display_name"])
        .await
        .unwrap();
    assert_eq!(created.name, "chaseRules/survey");
    assert_eq!(created.steps.len(), 1, "a create takes the whole rule");
    assert_eq!(created.calendar, "calendars/us-central");

    let renamed = upsert_chase_rule(
        &h,
        &admin,
        ChaseRule {
            display_name: "Site survey overdue".into(),
            steps: vec![],
            ..rule.clone()
        },
        &["display_name"],
    )
    .await
    .unwrap();
    assert_eq!(renamed.display_name, "Site survey overdue");
    assert_eq!(renamed.steps.len(), 1, "fields outside the mask stay");
    assert_ne!(renamed.etag, created.etag);

    let in_use = h
        .svc
        .delete_calendar(h.req(
            &admin,
            DeleteCalendarRequest {
                name: "calendars/us-central".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert!(
        in_use.message().contains("chaseRules/survey"),
        "{}",
        in_use.message()
    );

    // Without allow_missing an unknown rule is NOT_FOUND, and nothing is made.
    let missing = h
        .svc
        .update_chase_rule(h.req(
            &admin,
            UpdateChaseRuleRequest {
                chase_rule: Some(ChaseRule {
                    name: "chaseRules/other".into(),
                    ..rule
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    h.svc
        .delete_chase_rule(h.req(
            &admin,
            DeleteChaseRuleRequest {
                name: "chaseRules/survey".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_calendar(h.req(
            &admin,
            DeleteCalendarRequest {
                name: "calendars/us-central".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

fn escalation_to(staff: &str, reason: &str) -> Escalation {
    Escalation {
        level: 1,
        target_staff_member: staff.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

async fn raise(
    h: &Harness,
    p: &Principal,
    case: &str,
    e: Escalation,
) -> Result<Escalation, Status> {
    h.svc
        .create_escalation(h.req(
            p,
            CreateEscalationRequest {
                parent: case.into(),
                escalation: Some(e),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn escalations_are_raised_taken_and_closed_by_staff_only(h: Harness) {
    let a = agent();
    let c = create_case(&h, &a, case("acme", "Circuit down at HQ"))
        .await
        .unwrap();

    let bad = Escalation {
        level: 0,
        target_team: "noc".into(),
        target_staff_member: "staff/ayse".into(),
        ..Default::default()
    };
    let refused = raise(&h, &a, &c.name, bad).await.unwrap_err();
    assert_eq!(
        violations(&refused),
        vec![
            "escalation.level",
            "escalation.reason",
            "escalation.target_staff_member"
        ]
    );
    let client = who(Role::Client);
    let denied = raise(&h, &client, &c.name, escalation_to("staff/ayse", "help"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let raised = raise(
        &h,
        &a,
        &c.name,
        escalation_to("staff/ayse", "JP reason still missing after 48 hours"),
    )
    .await
    .unwrap();
    assert!(raised.name.starts_with(&format!("{}/escalations/", c.name)));
    assert_eq!(raised.state, escalation::State::Raised as i32);
    assert_eq!(raised.raiser, a.subject);
    assert_eq!(
        raised.delivery.as_ref().unwrap().state,
        escalation_delivery::State::NoChannel as i32,
        "no escalation channel is configured"
    );
    // What a webhook consumer needs comes with it.
    assert_eq!(raised.account, "accounts/acme");
    assert_eq!(raised.case_title, "Circuit down at HQ");
    assert_eq!(raised.case_priority, c.priority);

    // A client does not learn that it exists.
    let hidden = h
        .svc
        .get_escalation(h.req(
            &client,
            GetEscalationRequest {
                name: raised.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::PermissionDenied);

    let manager = Principal {
        staff_member: Some("staff/ayse".into()),
        ..who(Role::Manager)
    };
    let ack = AcknowledgeEscalationRequest {
        name: raised.name.clone(),
        etag: raised.etag.clone(),
        request_id: "ack-1".into(),
    };
    let taken = h
        .svc
        .acknowledge_escalation(h.req(&manager, ack.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(taken.state, escalation::State::Acknowledged as i32);
    assert_eq!(taken.acknowledger, manager.subject);
    assert!(taken.acknowledge_time.is_some());
    // The same request again answers the same; another one is refused.
    let retried = h
        .svc
        .acknowledge_escalation(h.req(&manager, ack))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.etag, taken.etag);
    let twice = h
        .svc
        .acknowledge_escalation(h.req(
            &manager,
            AcknowledgeEscalationRequest {
                name: raised.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);

    let no_outcome = h
        .svc
        .resolve_escalation(h.req(
            &manager,
            ResolveEscalationRequest {
                name: raised.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_of(&no_outcome), "outcome");
    let resolved = h
        .svc
        .resolve_escalation(h.req(
            &manager,
            ResolveEscalationRequest {
                name: raised.name.clone(),
                outcome: "Reason recorded by the NOC".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.state, escalation::State::Resolved as i32);
    assert_eq!(resolved.outcome, "Reason recorded by the NOC");
    assert!(resolved.close_time.is_some());
    let late = h
        .svc
        .cancel_escalation(h.req(
            &manager,
            CancelEscalationRequest {
                name: raised.name.clone(),
                reason: "raised in error".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);

    // Another one, to a team, withdrawn; open ones listed across cases.
    let second = raise(
        &h,
        &a,
        &c.name,
        Escalation {
            level: 2,
            target_team: "noc".into(),
            reason: "no ETA".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let open = h
        .svc
        .list_escalations(h.req(
            &a,
            ListEscalationsRequest {
                parent: "cases/-".into(),
                filter: "state = RAISED".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .escalations;
    assert_eq!(
        open.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        vec![second.name.as_str()]
    );
    let cancelled = h
        .svc
        .cancel_escalation(h.req(
            &a,
            CancelEscalationRequest {
                name: second.name.clone(),
                reason: "raised in error".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, escalation::State::Cancelled as i32);
    assert_eq!(cancelled.outcome, "raised in error");
    let on_case = h
        .svc
        .list_escalations(h.req(
            &a,
            ListEscalationsRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .escalations;
    assert_eq!(on_case.len(), 2);
    assert_eq!(on_case[0].name, second.name, "newest first");
}

async fn chase_runs_of(h: &Harness, case: &str) -> Vec<ChaseRun> {
    h.svc
        .list_chase_runs(h.req(
            &agent(),
            ListChaseRunsRequest {
                parent: case.into(),
                order_by: "start_time".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .chase_runs
}

async fn chase_steps_of(h: &Harness, case: &str) -> Vec<ChaseStep> {
    h.svc
        .list_chase_steps(h.req(
            &agent(),
            ListChaseStepsRequest {
                parent: case.into(),
                order_by: "step_number".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .chase_steps
}

async fn escalations_of(h: &Harness, case: &str) -> Vec<Escalation> {
    h.svc
        .list_escalations(h.req(
            &agent(),
            ListEscalationsRequest {
                parent: case.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .escalations
}

async fn get_note(h: &Harness, name: &str) -> Note {
    h.svc
        .get_note(h.req(&agent(), GetNoteRequest { name: name.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn get_case(h: &Harness, name: &str) -> Case {
    h.svc
        .get_case(h.req(&agent(), GetCaseRequest { name: name.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn mark_jeopardy(h: &Harness, name: &str, reason: &str, eta: Option<Timestamp>) -> Case {
    h.svc
        .mark_case_jeopardy(h.req(
            &agent(),
            MarkCaseJeopardyRequest {
                name: name.into(),
                reason: reason.into(),
                revised_eta_time: eta,
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// A case in jeopardy, worked, then marked without a reason.
async fn jeopardy_case(h: &Harness, title: &str) -> Case {
    let a = agent();
    let c = create_case(
        h,
        &a,
        Case {
            performing_team: "provisioning".into(),
            ..case("acme", title)
        },
    )
    .await
    .unwrap();
    h.svc
        .start_case_work(h.req(
            &a,
            StartCaseWorkRequest {
                name: c.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    mark_jeopardy(h, &c.name, "", None).await
}

fn step_states(steps: &[ChaseStep]) -> Vec<(i32, chase_step::State)> {
    steps.iter().map(|s| (s.step_number, s.state())).collect()
}

/// The built-in JP chase end to end: the run starts in the change that puts
/// the case in jeopardy without a reason; its first note asks the performing
/// team at once; 48 wall-clock hours later (not one hour sooner) a second
/// note and an escalation to the account manager's manager, taken once
/// although two replicas sweep at the same instant. On a second case the
/// reason arrives in between: that change clears the run, and nothing more
/// happens.
async fn the_jeopardy_chase_asks_then_escalates_after_48_hours_unless_cleared(h: Harness) {
    let jp_rule = "chaseRules/jeopardy-without-reason";
    h.clock.set("2026-11-30T15:00:00Z".parse().unwrap());
    let chased = jeopardy_case(&h, "Fibre to HQ").await;
    let summary = chased.chase.clone().unwrap();
    assert_eq!(summary.active_rules, vec![jp_rule.to_string()]);
    assert_eq!(summary.active_run_count, 1);
    let runs = chase_runs_of(&h, &chased.name).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state(), chase_run::State::Active);
    assert_eq!(
        runs[0].missing_description,
        "the reason for the jeopardy and a revised ETA"
    );
    let cleared = jeopardy_case(&h, "Fibre to the depot").await;

    // The first step is due at once.
    h.svc
        .sweep_timers("replica-a", "2026-11-30T15:00:00Z".parse().unwrap())
        .await
        .unwrap();
    let steps = chase_steps_of(&h, &chased.name).await;
    assert_eq!(
        step_states(&steps),
        vec![
            (1, chase_step::State::Done),
            (2, chase_step::State::Scheduled)
        ]
    );
    assert_eq!(steps[1].schedule_time, Some(ts("2026-12-02T15:00:00Z")));
    let asked = get_note(&h, &steps[0].outcomes[0].note).await;
    assert_eq!(asked.visibility(), note::Visibility::Internal);
    assert_eq!(asked.origin(), note::Origin::ChaseRule);
    assert_eq!(asked.chase_step, steps[0].name);
    assert_eq!(
        asked.body,
        format!(
            "provisioning: please give us the reason for the jeopardy and a revised ETA for {} (Fibre to HQ).",
            chased.name
        )
    );
    assert_eq!(asked.author, "system/chase-rules");

    // The reason and ETA reach the second case: its run clears in that
    // change, and its second request is skipped.
    let explained = mark_jeopardy(
        &h,
        &cleared.name,
        "Permit pending",
        Some(ts("2026-12-20T17:00:00Z")),
    )
    .await;
    let summary = explained.chase.unwrap_or_default();
    assert!(summary.active_rules.is_empty() && summary.holding_rules.is_empty());
    let runs = chase_runs_of(&h, &cleared.name).await;
    assert_eq!(runs[0].state(), chase_run::State::Cleared);
    assert_eq!(runs[0].steps_taken, 1);
    assert_eq!(
        step_states(&chase_steps_of(&h, &cleared.name).await),
        vec![
            (1, chase_step::State::Done),
            (2, chase_step::State::Skipped)
        ]
    );

    // 47 hours on, nothing is due yet.
    h.svc
        .sweep_timers("replica-a", "2026-12-02T14:00:00Z".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        chase_steps_of(&h, &chased.name).await[1].state(),
        chase_step::State::Scheduled
    );

    // At 48 hours two replicas sweep at once: the step runs once, and its
    // escalation is e-mailed once.
    let at: jiff::Timestamp = "2026-12-02T15:00:00Z".parse().unwrap();
    h.clock.set(at);
    let sink = testing::SmtpSink::start("the chase's escalation e-mail").await;
    let replica = async || match &sink {
        Some(sink) => mailing_replica(&h, &sink.url).await,
        None => other_replica(&h).await,
    };
    let (one, other) = (replica().await, replica().await);
    let (a, b) = tokio::join!(
        one.sweep_timers("replica-a", at),
        other.sweep_timers("replica-b", at)
    );
    a.unwrap();
    b.unwrap();
    // The e-mail queued by the step goes with the next sweep, if not this one.
    one.sweep_timers("replica-a", at).await.unwrap();
    if let Some(sink) = &sink {
        let received = sink.messages();
        assert_eq!(received.len(), 1, "{received:?}");
        let m = mail_parser::MessageParser::default()
            .parse(received[0].as_bytes())
            .unwrap();
        assert_eq!(header(&received[0], "X-RcptTo"), vec!["cem@example.com"]);
        assert_eq!(m.subject(), Some("Escalation (level 1): Fibre to HQ"));
        let body = m.body_text(0).unwrap();
        assert!(body.starts_with("Hello cem,"), "{body}");
        assert!(body.contains("by a chase rule"), "{body}");
    }
    let steps = chase_steps_of(&h, &chased.name).await;
    assert_eq!(
        step_states(&steps),
        vec![(1, chase_step::State::Done), (2, chase_step::State::Done)]
    );
    let second = &steps[1];
    assert_eq!(second.outcomes.len(), 2, "{second:?}");
    let again = get_note(&h, &second.outcomes[0].note).await;
    assert!(
        again.body.starts_with("Second request, provisioning:"),
        "{}",
        again.body
    );
    let escalations = escalations_of(&h, &chased.name).await;
    assert_eq!(
        escalations.len(),
        1,
        "one escalation, whatever the replicas"
    );
    let e = &escalations[0];
    assert_eq!(e.name, second.outcomes[1].escalation);
    assert_eq!(
        (
            e.target_staff_member.as_str(),
            e.level,
            e.chase_step.as_str()
        ),
        ("staff/cem", 1, second.name.as_str()),
        "the account manager's (ayse's) manager"
    );
    assert_eq!(e.raiser, "system/chase-rules");
    assert_eq!(e.account, "accounts/acme");
    let run = &chase_runs_of(&h, &chased.name).await[0];
    assert_eq!(
        (run.state(), run.steps_taken, run.next_step_number),
        (chase_run::State::Exhausted, 2, 0)
    );
    let summary = get_case(&h, &chased.name).await.chase.unwrap();
    assert!(summary.active_rules.is_empty());
    assert_eq!(summary.holding_rules, vec![jp_rule.to_string()]);
    let as_client = h
        .svc
        .get_case(h.req(
            &who(Role::Client),
            GetCaseRequest {
                name: chased.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(as_client.chase, None, "a client sees no chasing");
    for probe in [
        "chase.highest_step_reached >= 2",
        "finding.reason = REASON_CHASE_STAGE_REACHED",
    ] {
        let refused = h
            .svc
            .list_cases(h.req(
                &who(Role::Client),
                ListCasesRequest {
                    filter: probe.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(violations(&refused), vec!["filter"], "{probe}");
    }

    // Still in jeopardy without a reason: the rule keeps holding, no new run.
    mark_jeopardy(&h, &chased.name, "", None).await;
    assert_eq!(chase_runs_of(&h, &chased.name).await.len(), 1);
    assert!(escalations_of(&h, &cleared.name).await.is_empty());

    // The case is cancelled: its escalation is withdrawn with it.
    h.svc
        .cancel_case(h.req(
            &agent(),
            CancelCaseRequest {
                name: chased.name.clone(),
                reason: "Client withdrew the order".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let withdrawn = &escalations_of(&h, &chased.name).await[0];
    assert_eq!(
        (withdrawn.state(), withdrawn.outcome.as_str()),
        (escalation::State::Cancelled, "the case is cancelled")
    );
    let summary = get_case(&h, &chased.name).await.chase.unwrap_or_default();
    assert!(
        summary.holding_rules.is_empty(),
        "a closed case holds no rule"
    );

    // Nothing of it reaches a client.
    let client = who(Role::Client);
    let refused = h
        .svc
        .list_chase_runs(h.req(
            &client,
            ListChaseRunsRequest {
                parent: chased.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = h
        .svc
        .get_chase_step(h.req(
            &client,
            GetChaseStepRequest {
                name: second.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// The built-in construction chase waits 5 business days in the case's SLA
/// calendar: from Wednesday 09:00 before Thanksgiving (a holiday, then a
/// half day) to the next Thursday 13:00 in Chicago.
async fn the_construction_chase_waits_five_business_days_across_a_holiday(h: Harness) {
    us_central_repairs(
        &h,
        SlaPolicy {
            overall_delivery: Some(target("restore", 80)),
            ..Default::default()
        },
    )
    .await;
    let start: jiff::Timestamp = "2026-11-25T15:00:00Z".parse().unwrap();
    h.clock.set(start);
    let c = create_case(
        &h,
        &agent(),
        Case {
            construction: Some(Construction {
                required: true,
                ..Default::default()
            }),
            ..case("acme", "New duct to HQ")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        c.chase.unwrap().active_rules,
        vec!["chaseRules/construction-undefined".to_string()],
        "the run starts with the create"
    );
    h.svc.sweep_timers("replica-a", start).await.unwrap();
    let steps = chase_steps_of(&h, &c.name).await;
    assert_eq!(steps[0].state(), chase_step::State::Done);
    assert_eq!(
        steps[1].schedule_time,
        Some(ts("2026-12-03T19:00:00Z")),
        "8 h Wed + 0 Thanksgiving + 4 h Fri + 8 h Mon, Tue, Wed + 4 h Thu"
    );
    h.svc
        .sweep_timers("replica-a", "2026-12-03T18:59:00Z".parse().unwrap())
        .await
        .unwrap();
    assert!(escalations_of(&h, &c.name).await.is_empty());
    h.clock.set("2026-12-03T19:00:00Z".parse().unwrap());
    h.svc
        .sweep_timers("replica-a", "2026-12-03T19:00:00Z".parse().unwrap())
        .await
        .unwrap();
    let escalations = escalations_of(&h, &c.name).await;
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0].target_staff_member, "staff/cem");
}

fn owned_by_zed_rule() -> ChaseRule {
    ChaseRule {
        name: "chaseRules/zed".into(),
        display_name: "Zed's cases".into(),
        condition: Some(ChaseCondition {
            kind: chase_condition::Kind::Expression as i32,
            expression: "owner = \"staff/zed\"".into(),
            missing_description: "an update from Zed".into(),
        }),
        steps: vec![
            ChaseRuleStep {
                wait: Some(hours(0)),
                basis: TimeBasis::WallClock as i32,
                actions: vec![ChaseAction {
                    action_type: Some(chase_action::ActionType::PostNote(PostNoteAction {
                        visibility: note::Visibility::Internal as i32,
                        body_template: "{{rule}}, step {{step}}: {{missing}}".into(),
                    })),
                }],
            },
            ChaseRuleStep {
                wait: Some(hours(24)),
                basis: TimeBasis::WallClock as i32,
                actions: vec![ChaseAction {
                    action_type: Some(chase_action::ActionType::Notify(NotifyAction {
                        recipient: notify_action::Recipient::Owner as i32,
                        ..Default::default()
                    })),
                }],
            },
        ],
        enabled: true,
        ..Default::default()
    }
}

/// A person stops a run (idempotently, staff only, with a reason), which
/// skips its next step and starts no new run while its condition holds;
/// disabling a rule stops its active runs through the sweep.
async fn chase_runs_are_cancelled_by_staff_and_by_disabling_their_rule(h: Harness) {
    let admin = who(Role::Admin);
    upsert_chase_rule(&h, &admin, owned_by_zed_rule(), &["*"])
        .await
        .unwrap();
    let a = agent();
    let zeds = |title: &str| Case {
        owner: "staff/zed".into(),
        ..case("acme", title)
    };
    let first = create_case(&h, &a, zeds("Zed's first")).await.unwrap();
    assert_eq!(
        first.chase.unwrap().active_rules,
        vec!["chaseRules/zed".to_string()]
    );
    let run = chase_runs_of(&h, &first.name).await.remove(0);

    let cancel = |p: &Principal, reason: &str, request_id: &str| {
        h.svc.cancel_chase_run(h.req(
            p,
            CancelChaseRunRequest {
                name: run.name.clone(),
                reason: reason.into(),
                etag: String::new(),
                request_id: request_id.into(),
            },
        ))
    };
    assert_eq!(
        cancel(&who(Role::Client), "no", "")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let refused = cancel(&a, " ", "").await.unwrap_err();
    assert_eq!(violations(&refused), vec!["reason"]);
    let cancelled = cancel(&a, "Zed answered by phone", "r-1")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), chase_run::State::Cancelled);
    assert!(
        cancelled.cancel_reason.starts_with("Zed answered by phone"),
        "{}",
        cancelled.cancel_reason
    );
    let retried = cancel(&a, "Zed answered by phone", "r-1")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retried, cancelled,
        "a retry answers what the first call did"
    );
    let again = cancel(&a, "again", "r-2").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        step_states(&chase_steps_of(&h, &first.name).await),
        vec![(1, chase_step::State::Skipped)]
    );
    h.svc
        .sweep_timers("replica-a", testing::TEST_EPOCH.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        step_states(&chase_steps_of(&h, &first.name).await),
        vec![(1, chase_step::State::Skipped)],
        "the cancelled run's timer is gone"
    );
    let summary = get_case(&h, &first.name).await.chase.unwrap();
    assert!(summary.active_rules.is_empty());
    assert_eq!(summary.holding_rules, vec!["chaseRules/zed".to_string()]);
    // Still Zed's: no new run.
    h.svc
        .update_case(h.req(
            &a,
            UpdateCaseRequest {
                case: Some(Case {
                    name: first.name.clone(),
                    title: "Zed's first, renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .unwrap();
    assert_eq!(chase_runs_of(&h, &first.name).await.len(), 1);

    // Disabling the rule stops the runs it started.
    let second = create_case(&h, &a, zeds("Zed's second")).await.unwrap();
    upsert_chase_rule(
        &h,
        &admin,
        ChaseRule {
            enabled: false,
            ..owned_by_zed_rule()
        },
        &["enabled"],
    )
    .await
    .unwrap();
    h.svc
        .sweep_timers("replica-a", testing::TEST_EPOCH.parse().unwrap())
        .await
        .unwrap();
    let run = chase_runs_of(&h, &second.name).await.remove(0);
    assert_eq!(run.state(), chase_run::State::Cancelled);
    assert_eq!(run.cancel_reason, "the rule was disabled or deleted");
    let summary = get_case(&h, &second.name).await.chase.unwrap_or_default();
    assert!(summary.active_rules.is_empty() && summary.holding_rules.is_empty());
    assert!(
        step_states(&chase_steps_of(&h, &second.name).await)
            == vec![(1, chase_step::State::Skipped)]
    );
}

/// A replica of the harness's cases service whose e-mail goes to `sink`
/// (or to `url`, a server that may be down).
async fn mailing_replica(h: &Harness, url: &str) -> Cases {
    let mailer =
        concierge_common::mail::Mailer::smtp(url, "Concierge <concierge@example.com>").unwrap();
    other_replica(h).await.with_mail(Arc::new(mailer))
}

async fn staff_member(h: &Harness, id: &str, team: &str, language: &str, active: bool) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    use concierge_proto::customers::*;
    let customers = &h._customers.0;
    customers
        .svc
        .create_staff_member(customers.req(
            &who(Role::Admin),
            CreateStaffMemberRequest {
                staff_member: Some(StaffMember {
                    display_name: id.into(),
                    email: format!("{id}@example.com"),
                    role: StaffRole::SeniorAgent as i32,
                    team: team.into(),
                    language_code: language.into(),
                    active,
                    ..Default::default()
                }),
                staff_member_id: id.into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
}

fn header<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .collect()
}

/// An escalation e-mails its target once it is raised, in the target's
/// language; one to a team reaches its active members, one message per
/// language; a mail server that is down delays the e-mail, never loses it.
async fn escalations_are_e_mailed_to_their_target_in_its_language(h: Harness) {
    let Some(sink) = testing::SmtpSink::start("escalation e-mail").await else {
        return;
    };
    staff_member(&h, "nil", "noc", "tr-TR", true).await;
    staff_member(&h, "sam", "noc", "en", true).await;
    staff_member(&h, "old", "noc", "en", false).await;
    let a = agent();
    let c = create_case(&h, &a, case("acme", "Circuit down"))
        .await
        .unwrap();

    // The mail server is down when the first one is raised.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("smtp://{}", l.local_addr().unwrap())
    };
    let to_nil = raise(
        &h,
        &a,
        &c.name,
        escalation_to("staff/nil", "No ETA after 4 hours"),
    )
    .await
    .unwrap();
    let now = h.clock.advance(jiff::SignedDuration::ZERO);
    mailing_replica(&h, &down)
        .await
        .sweep_timers("replica-down", now)
        .await
        .unwrap();
    assert!(sink.messages().is_empty());
    let mailer = mailing_replica(&h, &sink.url).await;
    mailer.sweep_timers("replica-a", now).await.unwrap();
    assert!(
        sink.messages().is_empty(),
        "the failed attempt waits before the next"
    );
    let later = h.clock.advance(jiff::SignedDuration::from_secs(30));
    mailer.sweep_timers("replica-a", later).await.unwrap();
    let received = sink.messages();
    assert_eq!(received.len(), 1, "{received:?}");
    let m = &received[0];
    assert_eq!(header(m, "X-RcptTo"), vec!["nil@example.com"]);
    assert_eq!(header(m, "Content-Language"), vec!["tr"]);
    let parsed = mail_parser::MessageParser::default()
        .parse(m.as_bytes())
        .unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Eskalasyon (1. seviye): Circuit down")
    );
    let body = parsed.body_text(0).unwrap();
    assert!(body.starts_with("Merhaba nil,"), "{body}");
    assert!(body.contains("Gerekçe: No ETA after 4 hours"), "{body}");
    assert!(body.contains(&to_nil.name), "{body}");

    // Sent once: later sweeps find nothing more to send.
    let later = h.clock.advance(jiff::SignedDuration::from_hours(2));
    mailer.sweep_timers("replica-a", later).await.unwrap();
    assert_eq!(sink.messages().len(), 1);

    // To a team: its active members, each in their language.
    let mut to_team = escalation_to("staff/nil", "Fibre cut at HQ");
    to_team.target_staff_member.clear();
    to_team.target_team = "noc".into();
    raise(&h, &a, &c.name, to_team).await.unwrap();
    mailer.sweep_timers("replica-a", later).await.unwrap();
    let received = sink.messages();
    assert_eq!(received.len(), 3, "{received:?}");
    let mut rcpts: Vec<(Vec<&str>, Vec<&str>)> = received[1..]
        .iter()
        .map(|m| (header(m, "X-RcptTo"), header(m, "Content-Language")))
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            (vec!["nil@example.com"], vec!["tr"]),
            (vec!["sam@example.com"], vec!["en"]),
        ],
        "the inactive member gets nothing"
    );
}

async fn inventory_item(h: &Harness, id: &str, item: concierge_proto::customers::InventoryItem) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    use concierge_proto::customers::*;
    let customers = &h._customers.0;
    customers
        .svc
        .create_inventory_item(customers.req(
            &who(Role::Admin),
            CreateInventoryItemRequest {
                parent: "accounts/acme/sites/hq".into(),
                inventory_item: Some(item),
                inventory_item_id: id.into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
}

/// Triage of a repair at a site with a primary, a secondary and a backup
/// circuit behind an SD-WAN edge: the impacted circuit first, the other
/// case on it, monitoring, and the failover paths (the suspended backup
/// named but not offered), recorded once as an internal note.
async fn a_repair_is_triaged_with_its_sites_failover_paths(h: Harness) {
    use concierge_proto::customers::{InventoryItem, InventoryKind, InventoryRole, inventory_item};
    let data = |product: &str, role: InventoryRole, carrier: &str, kbps: i64| InventoryItem {
        kind: InventoryKind::Data as i32,
        product: product.into(),
        role: role as i32,
        carrier: carrier.into(),
        bandwidth_kbps: kbps,
        state: inventory_item::State::Active as i32,
        ..Default::default()
    };
    inventory_item(
        &h,
        "dia",
        InventoryItem {
            monitored: true,
            monitoring_tool: "Intermapper".into(),
            circuit_id: "LUM-1".into(),
            ..data(
                "Dedicated Internet",
                InventoryRole::Primary,
                "Lumen",
                10_000,
            )
        },
    )
    .await;
    inventory_item(
        &h,
        "cable",
        data("Broadband", InventoryRole::Secondary, "Comcast", 100_000),
    )
    .await;
    inventory_item(
        &h,
        "lte",
        InventoryItem {
            state: inventory_item::State::Suspended as i32,
            ..data("4G", InventoryRole::Backup, "Verizon", 20_000)
        },
    )
    .await;
    inventory_item(
        &h,
        "edge",
        InventoryItem {
            kind: InventoryKind::Hardware as i32,
            product: "SD-WAN edge".into(),
            hardware_model: "Meraki MX68".into(),
            state: inventory_item::State::Active as i32,
            ..Default::default()
        },
    )
    .await;
    let dia = "accounts/acme/sites/hq/inventoryItems/dia".to_string();
    let a = agent();
    let down = create_case(
        &h,
        &a,
        Case {
            inventory_items: vec![dia.clone()],
            ..case("acme", "Internet down at HQ")
        },
    )
    .await
    .unwrap();
    let slow = create_case(
        &h,
        &a,
        Case {
            inventory_items: vec![dia.clone()],
            ..case("acme", "Slow internet at HQ")
        },
    )
    .await
    .unwrap();

    let ask = |p: &Principal, name: &str, record: bool, request_id: &str| {
        h.svc.triage_repair_case(h.req(
            p,
            TriageRepairCaseRequest {
                name: name.into(),
                record_note: record,
                request_id: request_id.into(),
            },
        ))
    };
    let t = ask(&a, &down.name, true, "triage-1")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.site.as_ref().unwrap().display_name, "HQ");
    assert_eq!(t.inventory.len(), 4);
    assert_eq!(t.inventory[0].name, dia, "the impacted item first");
    assert!(t.inventory[0].impacted);
    assert_eq!(t.inventory[0].open_cases, vec![slow.name.clone()]);
    assert_eq!(t.impacted_items, vec![dia.clone()]);
    assert_eq!(
        t.hardware_items,
        vec!["accounts/acme/sites/hq/inventoryItems/edge".to_string()]
    );
    let m = t.monitoring.clone().unwrap();
    assert!(m.impacted_monitored);
    assert_eq!(m.tools, vec!["Intermapper".to_string()]);
    let options: Vec<(&str, bool, &str)> = t
        .reroute_options
        .iter()
        .map(|r| {
            (
                r.to_item.rsplit('/').next().unwrap(),
                r.available,
                r.unavailable_reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        options,
        vec![("cable", true, ""), ("lte", false, "it is suspended")]
    );
    assert_eq!(
        t.reroute_options[0].description,
        "fail over from the primary Dedicated Internet (Lumen, 10 Mb/s) to the secondary Broadband (Comcast, 100 Mb/s) on the SD-WAN edge (Meraki MX68)"
    );
    assert_eq!(
        t.relief_options[0].source(),
        relief_option::Source::ExistingNetwork
    );
    let noted = get_note(&h, &t.note).await;
    assert_eq!(noted.visibility(), note::Visibility::Internal);
    assert!(noted.body.contains("Re-route options:"), "{}", noted.body);
    let again = ask(&a, &down.name, true, "triage-1")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.note, t.note, "a retry records no second note");

    let order = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "New line")
        },
    )
    .await
    .unwrap();
    let refused = ask(&a, &order.name, false, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let refused = ask(&who(Role::Client), &down.name, false, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = ask(&a, "cases", false, "").await.unwrap_err();
    assert_eq!(violations(&refused), vec!["name"]);
}

async fn findings_of(h: &Harness, manager: &str, page_size: i32) -> Vec<CaseWithFindings> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = h
            .svc
            .list_case_findings(h.req(
                &agent(),
                ListCaseFindingsRequest {
                    account_manager: manager.into(),
                    page_size,
                    page_token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        all.extend(page.cases);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// A seeded portfolio's cases that need action, most severe first, each
/// with why; the cases that need nothing, and another manager's, are not
/// there; pages of two give the same list as one page.
async fn a_portfolio_lists_its_cases_that_need_action_most_severe_first(h: Harness) {
    wall_clock_repairs(&h, 4).await; // clock at 2026-11-30T15:00Z
    create_hand_off_codes(&h, &[CaseType::OrderNew]).await;
    let a = agent();
    let breached = create_case(&h, &a, case("acme", "Breached")).await.unwrap();
    h.clock.advance(jiff::SignedDuration::from_mins(90));
    let at_risk = create_case(&h, &a, case("acme", "At risk")).await.unwrap();
    h.clock.advance(jiff::SignedDuration::from_mins(180)); // 19:30Z
    let jp = jeopardy_case(&h, "JP").await;
    let order = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "Not placed")
        },
    )
    .await
    .unwrap();
    h.svc
        .set_case_hand_off_code(h.req(
            &a,
            SetCaseHandOffCodeRequest {
                name: order.name.clone(),
                hand_off_code: "NR".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let construction = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            construction: Some(Construction {
                required: true,
                ..Default::default()
            }),
            ..case("acme", "Duct needed")
        },
    )
    .await
    .unwrap();
    let placed = create_case(
        &h,
        &a,
        Case {
            r#type: CaseType::OrderNew as i32,
            ..case("acme", "Placed")
        },
    )
    .await
    .unwrap();
    h.svc
        .set_case_hand_off_code(h.req(
            &a,
            SetCaseHandOffCodeRequest {
                name: placed.name.clone(),
                hand_off_code: "PE".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    create_case(&h, &a, case("globex", "Bob's breach"))
        .await
        .unwrap();
    // 19:45Z: past 80% of the at-risk case's 4 hours (19:42Z).
    let now = h.clock.advance(jiff::SignedDuration::from_mins(15));
    h.svc.sweep_timers("replica-a", now).await.unwrap();

    let review = findings_of(&h, "staff/ayse", 0).await;
    let order_of: Vec<(&str, case_finding::Reason)> = review
        .iter()
        .map(|c| {
            (
                c.case.as_ref().unwrap().title.as_str(),
                c.findings[0].reason(),
            )
        })
        .collect();
    assert_eq!(
        order_of,
        vec![
            ("Breached", case_finding::Reason::SlaBreached),
            ("JP", case_finding::Reason::JeopardyWithoutReason),
            ("Not placed", case_finding::Reason::NotPresentedToCarrier),
            ("Duct needed", case_finding::Reason::ConstructionUndefined),
            ("At risk", case_finding::Reason::SlaAtRisk),
        ]
    );
    let b = &review[0].findings[0];
    assert_eq!(b.detail, "restore breached");
    assert_eq!(b.resource, format!("{}/slaClocks/restore", breached.name));
    assert_eq!(b.due_time, Some(ts("2026-11-30T19:00:00Z")));
    assert_eq!(
        review[1].findings[0].detail,
        "in jeopardy without a reason and a revised ETA"
    );
    assert_eq!(review[1].case.as_ref().unwrap().name, jp.name);
    assert_eq!(review[2].case.as_ref().unwrap().name, order.name);
    assert_eq!(review[3].case.as_ref().unwrap().name, construction.name);
    assert_eq!(review[4].case.as_ref().unwrap().name, at_risk.name);
    assert_eq!(
        review[4].findings[0].due_time,
        Some(ts("2026-11-30T20:30:00Z"))
    );
    let paged = findings_of(&h, "staff/ayse", 2).await;
    assert_eq!(paged, review, "pages of two read the same review");

    // The JP gets its reason: it needs nothing more.
    mark_jeopardy(&h, &jp.name, "Permit", Some(ts("2026-12-20T17:00:00Z"))).await;
    let names: Vec<String> = findings_of(&h, "staff/ayse", 0)
        .await
        .into_iter()
        .map(|c| c.case.unwrap().name)
        .collect();
    assert!(!names.contains(&jp.name));
    assert_eq!(names.len(), 4);

    let refused = h
        .svc
        .list_case_findings(h.req(
            &who(Role::Client),
            ListCaseFindingsRequest {
                account_manager: "staff/ayse".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = h
        .svc
        .list_case_findings(h.req(
            &a,
            ListCaseFindingsRequest {
                account_manager: "ayse".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&refused), vec!["account_manager"]);
}

/// An account with a monthly charge, a time zone and a client delegate who
/// reads `language`.
async fn big_client(h: &Harness, id: &str, mrc: i64, zone: &str, language: &str) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    use concierge_proto::customers::*;
    let admin = who(Role::Admin);
    let c = &h._customers.0;
    c.svc
        .create_account(c.req(
            &admin,
            CreateAccountRequest {
                account: Some(Account {
                    display_name: format!("{id} Corp"),
                    tier: Tier::Enterprise as i32,
                    account_manager: "staff/ayse".into(),
                    time_zone: zone.into(),
                    mrc: Some(concierge_proto::types::Money {
                        currency_code: "USD".into(),
                        minor_units: mrc,
                    }),
                    ..Default::default()
                }),
                account_id: id.into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    c.svc
        .create_contact(c.req(
            &admin,
            CreateContactRequest {
                parent: format!("accounts/{id}"),
                contact: Some(Contact {
                    display_name: format!("{id} delegate"),
                    email: format!("delegate@{id}.example"),
                    roles: vec![ContactRole::Primary as i32],
                    client_delegate: true,
                    language_code: language.into(),
                    ..Default::default()
                }),
                contact_id: "delegate".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
}

fn attachment_names(m: &mail_parser::Message<'_>) -> Vec<String> {
    use mail_parser::MimeHeaders as _;
    m.attachments()
        .filter_map(|a| a.attachment_name().map(str::to_string))
        .collect()
}

/// An account's control document lists its open orders, repairs and
/// billing requests (not its inquiries, not what is closed), says what is
/// missing, previews without archiving, archives exactly what it e-mails,
/// refuses a second send the same week unless forced, and is read by the
/// account's client only.
async fn a_control_document_lists_open_requests_and_is_archived_as_sent(h: Harness) {
    let Some(sink) = testing::SmtpSink::start("control document e-mail").await else {
        return;
    };
    big_client(&h, "initech", 4_000_000, "Europe/Istanbul", "tr").await;
    let a = agent();
    let initech = |title: &str, t: CaseType| Case {
        title: title.into(),
        r#type: t as i32,
        account: "accounts/initech".into(),
        ..Default::default()
    };
    let order = create_case(&h, &a, initech("Fibre <HQ> & co", CaseType::OrderNew))
        .await
        .unwrap();
    h.svc
        .start_case_work(h.req(
            &a,
            StartCaseWorkRequest {
                name: order.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    mark_jeopardy(&h, &order.name, "", None).await;
    let repair = create_case(&h, &a, initech("Line down", CaseType::Repair))
        .await
        .unwrap();
    for (body, at) in [
        ("Technician booked", "2026-11-02T10:00:00Z"),
        ("Technician on site", "2026-11-02T11:00:00Z"),
    ] {
        h.clock.set(at.parse().unwrap());
        h.svc
            .create_note(h.req(
                &a,
                CreateNoteRequest {
                    parent: repair.name.clone(),
                    note: Some(Note {
                        visibility: note::Visibility::Public as i32,
                        body: body.into(),
                        ..Default::default()
                    }),
                    note_id: String::new(),
                    notify_client: false,
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    create_case(&h, &a, initech("Wrong rate", CaseType::Billing))
        .await
        .unwrap();
    create_case(&h, &a, initech("Question", CaseType::Inquiry))
        .await
        .unwrap();
    let gone = create_case(&h, &a, initech("Withdrawn", CaseType::Repair))
        .await
        .unwrap();
    h.svc
        .cancel_case(h.req(
            &a,
            CancelCaseRequest {
                name: gone.name,
                reason: "duplicate".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    let generate = |archive: bool, send: bool, force: bool, request_id: &str| {
        h.svc.generate_control_document(h.req(
            &a,
            GenerateControlDocumentRequest {
                parent: "accounts/initech".into(),
                archive,
                send,
                extra_recipients: vec![],
                request_id: request_id.into(),
                force,
            },
        ))
    };
    let preview = generate(false, false, false, "")
        .await
        .unwrap()
        .into_inner();
    assert!(preview.name.is_empty(), "a preview is not archived");
    assert_eq!(preview.row_count, 3);
    assert_eq!(preview.incomplete_row_count, 1);
    let categories: Vec<control_document_row::Category> =
        preview.rows.iter().map(|r| r.category()).collect();
    assert_eq!(
        categories,
        vec![
            control_document_row::Category::Order,
            control_document_row::Category::Repair,
            control_document_row::Category::Billing
        ]
    );
    assert_eq!(
        preview.rows[0].missing_fields,
        vec!["requested_time", "eta_time", "jeopardy_reason"]
    );
    assert_eq!(
        preview.rows[1].last_public_update, "Technician on site",
        "the latest public update"
    );
    assert!(
        preview
            .csv_content
            .starts_with("category,request,type,title,"),
        "{}",
        preview.csv_content
    );
    assert!(
        preview.html_content.contains("Fibre &lt;HQ&gt; &amp; co"),
        "what a person typed is escaped"
    );
    assert!(
        preview.html_content.contains("Siparişler"),
        "in the delegate's language"
    );
    let listed = |p: Principal| {
        h.svc.list_control_documents(h.req(
            &p,
            ListControlDocumentsRequest {
                parent: "accounts/initech".into(),
                ..Default::default()
            },
        ))
    };
    assert!(
        listed(a.clone())
            .await
            .unwrap()
            .into_inner()
            .control_documents
            .is_empty()
    );

    let sent = generate(true, true, false, "send-1")
        .await
        .unwrap()
        .into_inner();
    assert!(sent.name.starts_with("accounts/initech/controlDocuments/"));
    assert_eq!(
        sent.deliveries
            .iter()
            .map(|d| (d.email.as_str(), d.state()))
            .collect::<Vec<_>>(),
        vec![(
            "delegate@initech.example",
            control_document_delivery::State::Pending
        )]
    );
    let retried = generate(true, true, false, "send-1")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.name, sent.name, "a retry archives nothing more");
    let now = h.clock.advance(jiff::SignedDuration::ZERO);
    mailing_replica(&h, &sink.url)
        .await
        .sweep_timers("replica-m", now)
        .await
        .unwrap();
    let received = sink.messages();
    assert_eq!(received.len(), 1, "{received:?}");
    let m = mail_parser::MessageParser::default()
        .parse(received[0].as_bytes())
        .unwrap();
    assert_eq!(
        header(&received[0], "X-RcptTo"),
        vec!["delegate@initech.example"]
    );
    assert_eq!(header(&received[0], "Content-Language"), vec!["tr"]);
    assert!(
        m.body_text(0)
            .unwrap()
            .starts_with("Merhaba initech delegate,")
    );
    let names = attachment_names(&m);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".html") && names[1].ends_with(".csv"),
        "{names:?}"
    );
    let archived = h
        .svc
        .get_control_document(h.req(
            &a,
            GetControlDocumentRequest {
                name: sent.name.clone(),
                view: ControlDocumentView::Full as i32,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    use mail_parser::MimeHeaders as _;
    let attached_html = m
        .attachments()
        .find(|a| a.attachment_name().is_some_and(|n| n.ends_with(".html")))
        .and_then(|a| a.text_contents().map(str::to_string))
        .unwrap();
    assert_eq!(
        attached_html, archived.html_content,
        "the archive is what was sent"
    );
    assert_eq!(
        archived.deliveries[0].state(),
        control_document_delivery::State::Sent
    );

    let again = generate(true, true, false, "send-2").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("this week"), "{}", again.message());
    generate(true, true, true, "send-3").await.unwrap();

    // The account's client reads its documents; another's sees none.
    let client = Principal {
        account: Some("accounts/initech".into()),
        ..who(Role::Client)
    };
    let theirs = listed(client.clone()).await.unwrap().into_inner();
    assert_eq!(theirs.control_documents.len(), 2);
    assert!(
        theirs.control_documents[0].html_content.is_empty(),
        "BASIC view"
    );
    let other = h
        .svc
        .get_control_document(h.req(
            &who(Role::Client),
            GetControlDocumentRequest {
                name: sent.name.clone(),
                view: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let refused = h
        .svc
        .generate_control_document(h.req(
            &client,
            GenerateControlDocumentRequest {
                parent: "accounts/initech".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// The weekly run sends every account at or over the MRC threshold its
/// document once, at Monday 08:00 in the account's own time zone; an
/// account one cent under gets none.
async fn the_weekly_run_mails_each_big_account_once_in_its_own_time_zone(h: Harness) {
    let Some(sink) = testing::SmtpSink::start("weekly control documents").await else {
        return;
    };
    big_client(&h, "initech", 4_000_000, "Europe/Istanbul", "tr").await;
    big_client(&h, "umbrella", 3_000_000, "America/Chicago", "en").await;
    big_client(&h, "hooli", 2_999_999, "America/Chicago", "en").await;
    let mailer = mailing_replica(&h, &sink.url).await;
    let sweep = async |at: &str| {
        let at: jiff::Timestamp = at.parse().unwrap();
        h.clock.set(at);
        // The tick, then the e-mail it queued.
        mailer.sweep_timers("replica-m", at).await.unwrap();
        mailer.sweep_timers("replica-m", at).await.unwrap();
    };
    let rcpts = || -> Vec<String> {
        sink.messages()
            .iter()
            .flat_map(|m| {
                header(m, "X-RcptTo")
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    // The run is switched on on Sunday night: last week's documents are
    // not sent late.
    let switch = async |enabled: bool| {
        h.svc
            .update_control_document_settings(h.req(
                &who(Role::Manager),
                UpdateControlDocumentSettingsRequest {
                    control_document_settings: Some(ControlDocumentSettings {
                        name: "controlDocumentSettings".into(),
                        enabled,
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["enabled".into()],
                    }),
                },
            ))
            .await
            .unwrap();
    };
    switch(false).await;
    sweep("2026-11-29T23:00:00Z").await;
    switch(true).await;
    // Monday 2026-11-30, 07:59 in Istanbul: nothing yet.
    sweep("2026-11-30T04:59:00Z").await;
    assert!(rcpts().is_empty());
    // 08:00 in Istanbul: initech.
    sweep("2026-11-30T05:15:00Z").await;
    assert_eq!(rcpts(), vec!["delegate@initech.example"]);
    // 08:00 in Chicago: umbrella, at exactly the threshold; never hooli.
    sweep("2026-11-30T14:15:00Z").await;
    sweep("2026-11-30T20:00:00Z").await;
    sweep("2026-12-01T09:00:00Z").await;
    assert_eq!(
        rcpts(),
        vec!["delegate@initech.example", "delegate@umbrella.example"]
    );
    let docs = h
        .svc
        .list_control_documents(h.req(
            &agent(),
            ListControlDocumentsRequest {
                parent: "accounts/-".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .control_documents;
    assert_eq!(docs.len(), 2);
    assert!(
        docs.iter()
            .all(|d| d.trigger() == control_document::Trigger::Scheduled)
    );
    assert!(docs.iter().all(|d| d.generator == "system/scheduler"));
    // Next Monday, again, once.
    sweep("2026-12-07T05:15:00Z").await;
    sweep("2026-12-07T05:45:00Z").await;
    assert_eq!(rcpts().len(), 3);
}

/// The settings read their defaults until changed; managers change them,
/// checked field by field.
async fn control_document_settings_default_and_are_changed_by_managers(h: Harness) {
    let settings = h
        .svc
        .get_control_document_settings(h.req(
            &agent(),
            GetControlDocumentSettingsRequest {
                name: "controlDocumentSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(settings.enabled);
    assert_eq!(settings.send_weekday(), Weekday::Monday);
    assert_eq!(settings.send_minute, 480);
    assert_eq!(settings.mrc_thresholds[0].minor_units, 3_000_000);
    let update = |p: Principal, s: ControlDocumentSettings, path: &str| {
        h.svc.update_control_document_settings(h.req(
            &p,
            UpdateControlDocumentSettingsRequest {
                control_document_settings: Some(s),
                update_mask: Some(FieldMask {
                    paths: vec![path.into()],
                }),
            },
        ))
    };
    let refused = update(
        agent(),
        ControlDocumentSettings {
            send_minute: 540,
            ..settings.clone()
        },
        "send_minute",
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let bad = update(
        who(Role::Manager),
        ControlDocumentSettings {
            send_minute: 1500,
            ..settings.clone()
        },
        "send_minute",
    )
    .await
    .unwrap_err();
    assert_eq!(
        violations(&bad),
        vec!["control_document_settings.send_minute"]
    );
    let changed = update(
        who(Role::Manager),
        ControlDocumentSettings {
            send_minute: 540,
            ..settings.clone()
        },
        "send_minute",
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(changed.send_minute, 540);
    assert!(changed.enabled);
    let stale = update(
        who(Role::Manager),
        // The etag read before the change.
        ControlDocumentSettings {
            send_minute: 600,
            ..settings
        },
        "send_minute",
    )
    .await
    .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
}

/// A notify step e-mails the staff member it names, with the text its
/// template wrote when the step ran.
async fn a_chase_notification_is_e_mailed_to_the_staff_member_it_names(h: Harness) {
    let Some(sink) = testing::SmtpSink::start("chase notification e-mail").await else {
        return;
    };
    staff_member(&h, "nil", "noc", "tr", true).await;
    upsert_chase_rule(
        &h,
        &who(Role::Admin),
        ChaseRule {
            name: "chaseRules/tell-nil".into(),
            display_name: "Tell Nil".into(),
            condition: Some(ChaseCondition {
                kind: chase_condition::Kind::Expression as i32,
                expression: "priority = CASE_PRIORITY_CRITICAL".into(),
                missing_description: "a first look".into(),
            }),
            steps: vec![ChaseRuleStep {
                wait: Some(hours(0)),
                basis: TimeBasis::WallClock as i32,
                actions: vec![ChaseAction {
                    action_type: Some(chase_action::ActionType::Notify(NotifyAction {
                        recipient: notify_action::Recipient::StaffMember as i32,
                        staff_member: "staff/nil".into(),
                        message_template: "{{case.title}} needs {{missing}} ({{rule}})".into(),
                    })),
                }],
            }],
            enabled: true,
            ..Default::default()
        },
        &["*"],
    )
    .await
    .unwrap();
    let c = create_case(
        &h,
        &agent(),
        Case {
            priority: CasePriority::Critical as i32,
            ..case("acme", "Core switch down")
        },
    )
    .await
    .unwrap();
    let now = h.clock.advance(jiff::SignedDuration::ZERO);
    let mailer = mailing_replica(&h, &sink.url).await;
    mailer.sweep_timers("replica-m", now).await.unwrap();
    mailer.sweep_timers("replica-m", now).await.unwrap();
    let steps = chase_steps_of(&h, &c.name).await;
    assert_eq!(
        steps[0].outcomes[0].recipients,
        vec!["staff/nil".to_string()]
    );
    let received = sink.messages();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(header(&received[0], "X-RcptTo"), vec!["nil@example.com"]);
    let m = mail_parser::MessageParser::default()
        .parse(received[0].as_bytes())
        .unwrap();
    assert!(
        m.body_text(0)
            .unwrap()
            .starts_with("Core switch down needs a first look (Tell Nil)"),
        "{:?}",
        m.body_text(0)
    );
}

/// A client's deliverable falls due with no change to its case: at its due
/// time the case shows it overdue, the portfolio review lists it, and a
/// chase rule on overdue deliverables starts its run.
async fn a_deliverable_falls_overdue_at_its_due_time(h: Harness) {
    upsert_chase_rule(
        &h,
        &who(Role::Admin),
        ChaseRule {
            name: "chaseRules/roe".into(),
            ..chase_rule(chase_condition::Kind::ClientDeliverableOverdue, "")
        },
        &["*"],
    )
    .await
    .unwrap();
    h.clock.set("2026-11-30T15:00:00Z".parse().unwrap());
    let c = create_case(
        &h,
        &agent(),
        Case {
            r#type: CaseType::OrderNew as i32,
            construction: Some(Construction {
                required: true,
                definition: "Trench 20 m to the building".into(),
                deliverables: vec![ConstructionDeliverable {
                    kind: construction_deliverable::Kind::RightOfEntry as i32,
                    state: construction_deliverable::State::Requested as i32,
                    due_time: Some(ts("2026-12-01T15:00:00Z")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..case("acme", "New duct")
        },
    )
    .await
    .unwrap();
    assert!(findings_of(&h, "staff/ayse", 0).await.is_empty());
    for at in ["2026-12-01T14:59:00Z", "2026-12-01T15:00:00Z"] {
        let at: jiff::Timestamp = at.parse().unwrap();
        h.clock.set(at);
        h.svc.sweep_timers("replica-a", at).await.unwrap();
        if at < "2026-12-01T15:00:00Z".parse().unwrap() {
            assert!(findings_of(&h, "staff/ayse", 0).await.is_empty(), "not yet");
        }
    }
    let now = get_case(&h, &c.name).await;
    assert!(now.construction.unwrap().deliverables[0].overdue);
    let review = findings_of(&h, "staff/ayse", 0).await;
    assert_eq!(review.len(), 1);
    assert_eq!(
        review[0].findings[0].reason(),
        case_finding::Reason::ClientDeliverableOverdue
    );
    assert_eq!(
        review[0].findings[0].due_time,
        Some(ts("2026-12-01T15:00:00Z"))
    );
    let runs = chase_runs_of(&h, &c.name).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].rule, "chaseRules/roe");
}

async fn an_account_changing_hands_moves_its_open_cases_to_the_new_managers_portfolio(h: Harness) {
    use concierge_common::inbox::{self, Consumer as _};
    use concierge_common::relay::{Bus, BusTarget, LocalBus};
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    use concierge_proto::customers::{Account, UpdateAccountRequest};

    let a = agent();
    let open = create_case(&h, &a, case("acme", "Circuit down"))
        .await
        .unwrap();
    let pending = create_case(&h, &a, case("acme", "Waiting on acme"))
        .await
        .unwrap();
    h.svc
        .open_case(h.req(
            &a,
            OpenCaseRequest {
                name: pending.name.clone(),
                owner: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    h.svc
        .pend_case_on_client(h.req(
            &a,
            PendCaseOnClientRequest {
                name: pending.name.clone(),
                reason: "need access to the site".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let cancelled = create_case(&h, &a, case("acme", "Never mind"))
        .await
        .unwrap();
    h.svc
        .cancel_case(h.req(
            &a,
            CancelCaseRequest {
                name: cancelled.name.clone(),
                reason: "raised twice".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let globex = create_case(&h, &a, case("globex", "Elsewhere"))
        .await
        .unwrap();

    // The customers service's events reach the cases service's consumer
    // through the bus, as in `concierge dev`.
    let dir = tempfile::tempdir().unwrap();
    let log = LocalBus::open(
        concierge_common::storage::Db::connect(
            &format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("events.db").display()
            ),
            2,
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let customers = &h._customers.0;
    customers.svc.relay_events(Bus::Local(log.clone()));
    let handover = Arc::new(concierge_cases::handover::AccountHandover::new(
        h.svc.clone(),
    ));
    let consumer = tokio::spawn(inbox::run(
        h.svc.db().clone(),
        BusTarget::Ready(Bus::Local(log.clone())),
        handover.clone(),
        Arc::new(h.clock.clone()),
    ));

    customers.clock.advance(jiff::SignedDuration::from_secs(60));
    customers
        .svc
        .update_account(customers.req(
            &who(Role::Admin),
            UpdateAccountRequest {
                account: Some(Account {
                    name: "accounts/acme".into(),
                    account_manager: "staff/bob".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["account_manager".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let portfolio = |manager: &'static str| {
        let h = &h;
        async move {
            let mut names: Vec<String> = h
                .svc
                .list_cases(h.req(
                    &who(Role::Admin),
                    ListCasesRequest {
                        filter: format!("account_manager = \"{manager}\""),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .cases
                .into_iter()
                .map(|c| c.name)
                .collect();
            names.sort();
            names
        }
    };
    testing::eventually(
        std::time::Duration::from_secs(20),
        "acme's open cases in Bob's portfolio",
        || async { portfolio("staff/bob").await.len() == 3 },
    )
    .await;
    let mut moved = vec![open.name.clone(), pending.name.clone(), globex.name.clone()];
    moved.sort();
    assert_eq!(
        portfolio("staff/bob").await,
        moved,
        "globex was Bob's already"
    );
    assert_eq!(
        portfolio("staff/ayse").await,
        vec![cancelled.name.clone()],
        "a cancelled case stays with the portfolio that worked it"
    );
    let events: Vec<_> = h
        .events()
        .await
        .into_iter()
        .filter(|e| e.actor == "system/cases-account-handover")
        .collect();
    assert_eq!(events.len(), 2, "one case_updated per moved case");
    assert!(
        events
            .iter()
            .all(|e| e.r#type == "concierge.cases.v1.case_updated")
    );
    let after = h
        .svc
        .get_case(h.req(
            &who(Role::Admin),
            GetCaseRequest {
                name: open.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(after.etag, open.etag, "a new revision");

    // An older change delivered late (a retry after a newer one) moves
    // nothing back; a new case is filed under the new manager.
    let stale = customers
        .events()
        .await
        .into_iter()
        .find(|e| {
            e.r#type == "concierge.customers.v1.account_created" && e.subject == "accounts/acme"
        })
        .map(|mut e| {
            e.id = uuid::Uuid::now_v7().to_string();
            e.r#type = "concierge.customers.v1.account_updated".into();
            e
        })
        .unwrap();
    let outcome = inbox::deliver(
        h.svc.db(),
        handover.as_ref(),
        &handover.subscription(),
        &stale,
        1,
        0,
    )
    .await;
    assert_eq!(outcome, inbox::Outcome::Done);
    assert_eq!(portfolio("staff/bob").await.len(), 3);
    let fresh = create_case(&h, &a, case("acme", "After the handover"))
        .await
        .unwrap();
    assert_eq!(fresh.account_manager, "staff/bob");
    consumer.abort();
}

async fn an_escalations_delivery_follows_the_gateways_outcomes(h: Harness) {
    use concierge_cases::escalation_delivery::EscalationDeliveries;
    use concierge_common::inbox::{self, Consumer as _};
    use concierge_proto::gateway::{WebhookAttempt, WebhookDelivery, webhook_delivery};

    let a = agent();
    let c = create_case(&h, &a, case("acme", "Circuit down"))
        .await
        .unwrap();
    let raised = raise(&h, &a, &c.name, escalation_to("staff/ayse", "no ETA"))
        .await
        .unwrap();
    assert_eq!(
        raised.delivery.as_ref().unwrap().state,
        escalation_delivery::State::NoChannel as i32,
        "no outcome yet"
    );
    let consumer = EscalationDeliveries;
    let outcome = |webhook: &str, state: webhook_delivery::State, status: i32, event_type: &str| {
        let d = WebhookDelivery {
            name: format!("webhooks/{webhook}/deliveries/e1"),
            event_type: event_type.into(),
            event_subject: raised.name.clone(),
            state: state as i32,
            attempt_count: 8,
            attempts: vec![WebhookAttempt {
                attempt_time: Some(ts("2026-11-02T10:00:00Z")),
                http_status: status,
                error: "bad gateway".into(),
                latency: None,
            }],
            complete_time: Some(ts("2026-11-02T10:00:01Z")),
            ..Default::default()
        };
        concierge_proto::events::Event {
            id: uuid::Uuid::now_v7().to_string(),
            r#type: if state == webhook_delivery::State::Succeeded {
                "concierge.gateway.v1.webhook_delivery_succeeded"
            } else {
                "concierge.gateway.v1.webhook_delivery_failed"
            }
            .into(),
            payload: Some(concierge_common::outbox::pack(&d)),
            ..Default::default()
        }
    };
    let deliver = |e: concierge_proto::events::Event| {
        let h = &h;
        let consumer = &consumer;
        async move { inbox::deliver(h.svc.db(), consumer, &consumer.subscription(), &e, 1, 0).await }
    };
    let delivery = || async {
        h.svc
            .list_escalations(h.req(
                &who(Role::Admin),
                ListEscalationsRequest {
                    parent: c.name.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .escalations[0]
            .delivery
            .clone()
            .unwrap()
    };
    let escalation_raised = "concierge.cases.v1.escalation_raised";

    // Another event type's delivery says nothing about escalations.
    assert_eq!(
        deliver(outcome(
            "crm",
            webhook_delivery::State::Failed,
            502,
            "concierge.cases.v1.case_updated"
        ))
        .await,
        inbox::Outcome::Done
    );
    assert_eq!(
        delivery().await.state,
        escalation_delivery::State::NoChannel as i32
    );

    // Given up: FAILED with the status and the receiver's words.
    deliver(outcome(
        "channel",
        webhook_delivery::State::Failed,
        502,
        escalation_raised,
    ))
    .await;
    let failed = delivery().await;
    assert_eq!(failed.state, escalation_delivery::State::Failed as i32);
    assert_eq!(failed.webhook_delivery, "webhooks/channel/deliveries/e1");
    assert_eq!(failed.attempt_count, 8);
    assert_eq!(failed.last_error, "HTTP 502: bad gateway");
    assert_eq!(failed.deliver_time, None);

    // Retried by hand and accepted: DELIVERED.
    deliver(outcome(
        "channel",
        webhook_delivery::State::Succeeded,
        200,
        escalation_raised,
    ))
    .await;
    let delivered = delivery().await;
    assert_eq!(
        delivered.state,
        escalation_delivery::State::Delivered as i32
    );
    assert_eq!(delivered.deliver_time, Some(ts("2026-11-02T10:00:01Z")));
    assert!(delivered.last_error.is_empty());

    // Another channel failing does not undo a delivery that succeeded.
    deliver(outcome(
        "backup",
        webhook_delivery::State::Failed,
        0,
        escalation_raised,
    ))
    .await;
    let still = delivery().await;
    assert_eq!(still.state, escalation_delivery::State::Delivered as i32);
    assert_eq!(still.webhook_delivery, "webhooks/channel/deliveries/e1");

    // The escalation's etag is the person's: a derived summary moves it not.
    let after = h
        .svc
        .list_escalations(h.req(
            &who(Role::Admin),
            ListEscalationsRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .escalations
        .remove(0);
    assert_eq!(after.etag, raised.etag);
}
