//! The CSAT service through its gRPC trait, with signed principals as the
//! gateway delivers them, fed the real cases service's events and asking a
//! real customers service on loopback; its e-mail lands as .eml files, as in
//! `concierge dev`. Once on SQLite, once on PostgreSQL.

use std::sync::Arc;

use concierge_cases::Cases;
use concierge_common::clock::{Clock as _, TestClock};
use concierge_common::inbox::{self, Consumer as _, Outcome};
use concierge_common::kit::Peers;
use concierge_common::principal::{Principal, PrincipalCodec, Role};
use concierge_common::server::Running;
use concierge_common::testing::{self, Backend};
use concierge_csat::Csat;
use concierge_csat::surveys::CaseEvents;
use concierge_customers::Customers;
use concierge_proto::concierge::cases::v1 as cases;
use concierge_proto::concierge::cases::v1::cases_service_server::CasesService as _;
use concierge_proto::csat::client_satisfaction::Level;
use concierge_proto::csat::csat_service_server::CsatService;
use concierge_proto::csat::*;
use concierge_proto::events::Event;
use jiff::SignedDuration;
use prost_types::{Duration, FieldMask};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A CSAT service on the backend under test, with the customers service
/// (acme and globex, managed by ayse; acme's contacts Deniz, who reads
/// Turkish, and Ali, who reads English) and the cases service whose events
/// it consumes, both on SQLite behind loopback ports.
struct Harness {
    csat: testing::Harness<Csat>,
    cases: testing::Harness<Cases>,
    mail: tempfile::TempDir,
    _servers: Vec<Running>,
    _customers: testing::Harness<Customers>,
}

impl std::ops::Deref for Harness {
    type Target = testing::Harness<Csat>;
    fn deref(&self) -> &Self::Target {
        &self.csat
    }
}

impl Harness {
    async fn new(backend: Backend, test: &str) -> Option<Self> {
        let codec = PrincipalCodec::new("csat-test-secret".into());
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
        let (customers_server, customers_channel) = customers.serve().await;
        let mut peers = Peers::default();
        peers.insert("customers", customers_channel);
        let cases = testing::Harness::<Cases>::open(
            Backend::Sqlite,
            test,
            codec.clone(),
            clock.clone(),
            peers.clone(),
        )
        .await
        .unwrap();
        let (cases_server, cases_channel) = cases.serve().await;
        peers.insert("cases", cases_channel);
        let mail = tempfile::tempdir().unwrap();
        let mailer = Arc::new(
            concierge_common::mail::Mailer::files(
                mail.path().to_path_buf(),
                "Concierge <concierge@example.com>",
            )
            .unwrap(),
        );
        let csat =
            testing::Harness::open_mailing(backend, test, codec, clock, peers, mailer).await?;
        Some(Self {
            csat,
            cases,
            mail,
            _servers: vec![customers_server, cases_server],
            _customers: customers,
        })
    }

    /// Every case event so far, delivered to the CSAT consumer `times`
    /// times over, as a bus that redelivers would.
    async fn deliver_case_events(&self, times: usize) {
        let consumer = CaseEvents::new(self.svc.clone());
        let subscription = consumer.subscription();
        let events: Vec<Event> = self
            .cases
            .events()
            .await
            .into_iter()
            .filter(|e| subscription.event_types.contains(&e.r#type))
            .collect();
        for _ in 0..times {
            for e in &events {
                let outcome = inbox::deliver(
                    self.svc.db(),
                    &consumer,
                    &subscription,
                    e,
                    1,
                    concierge_common::clock::to_micros(self.clock.now()),
                )
                .await;
                assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
            }
        }
    }

    /// Works the survey timers due now.
    async fn sweep(&self) -> usize {
        self.svc.sweep("test", self.clock.now()).await.unwrap()
    }

    /// The e-mails written so far, parsed: (to, language, subject, body).
    fn mails(&self) -> Vec<Mail> {
        let mut paths: Vec<_> = std::fs::read_dir(self.mail.path())
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let raw = std::fs::read(&p).unwrap();
                let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
                Mail {
                    to: m
                        .to()
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .unwrap_or_default()
                        .to_string(),
                    language: m
                        .header_raw("Content-Language")
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    subject: m.subject().unwrap_or_default().to_string(),
                    body: m.body_text(0).unwrap_or_default().to_string(),
                    attachments: m
                        .attachments()
                        .filter_map(|a| {
                            mail_parser::MimeHeaders::attachment_name(a).map(str::to_string)
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Mail {
    to: String,
    language: String,
    subject: String,
    body: String,
    attachments: Vec<String>,
}

impl Mail {
    /// The response token in the mail's link.
    fn token(&self) -> String {
        let start = self.body.find("token=").expect("a response link") + "token=".len();
        self.body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

fn staff(id: &str, role: Role) -> Principal {
    Principal {
        subject: format!("oidc/{id}"),
        role,
        account: None,
        staff_member: Some(format!("staff/{id}")),
        display_name: id.into(),
    }
}

fn cem() -> Principal {
    staff("cem", Role::Manager)
}

fn zeki() -> Principal {
    staff("zeki", Role::Agent)
}

fn client(account: &str) -> Principal {
    Principal {
        subject: format!("apiKeys/{account}-portal"),
        role: Role::Client,
        account: Some(format!("accounts/{account}")),
        staff_member: None,
        display_name: format!("{account} portal"),
    }
}

fn admin() -> Principal {
    Principal {
        subject: "apiKeys/admin".into(),
        role: Role::Admin,
        account: None,
        staff_member: None,
        display_name: "admin".into(),
    }
}

async fn seed_customers(customers: &testing::Harness<Customers>) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    use concierge_proto::customers::*;
    let admin = admin();
    for (id, role, manager) in [
        ("cem", StaffRole::Manager, ""),
        ("ayse", StaffRole::AccountManager, "staff/cem"),
        ("zeki", StaffRole::Agent, "staff/cem"),
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
    for (id, display) in [("acme", "Acme Lojistik"), ("globex", "Globex")] {
        customers
            .svc
            .create_account(customers.req(
                &admin,
                CreateAccountRequest {
                    account: Some(Account {
                        display_name: display.into(),
                        tier: Tier::Enterprise as i32,
                        account_manager: "staff/ayse".into(),
                        time_zone: "Europe/Istanbul".into(),
                        ..Default::default()
                    }),
                    account_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    for (account, id, name, email, phone, language) in [
        (
            "acme",
            "deniz",
            "Deniz Yılmaz",
            "deniz@acme.example",
            "",
            "tr",
        ),
        ("acme", "ali", "Ali Kaya", "ali@acme.example", "", "en"),
        ("acme", "nomail", "No Mail", "", "+905551112233", "en"),
        ("globex", "gul", "Gül Demir", "gul@globex.example", "", "en"),
    ] {
        customers
            .svc
            .create_contact(customers.req(
                &admin,
                CreateContactRequest {
                    parent: format!("accounts/{account}"),
                    contact: Some(Contact {
                        display_name: name.into(),
                        email: email.into(),
                        phone: phone.into(),
                        roles: vec![ContactRole::Technical as i32],
                        language_code: language.into(),
                        ..Default::default()
                    }),
                    contact_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
}

fn text(language: &str, question: &str) -> LocalizedSurveyText {
    LocalizedSurveyText {
        language_code: language.into(),
        email_subject: String::new(),
        email_body: String::new(),
        question: question.into(),
        scale_low_label: "1".into(),
        scale_high_label: "5".into(),
        comment_prompt: "Anything we could do better?".into(),
        thank_you_message: match language {
            "tr" => "Teşekkürler!".into(),
            _ => "Thank you!".into(),
        },
    }
}

async fn create_template(h: &Harness, id: &str, kind: SurveyKind) -> SurveyTemplate {
    h.svc
        .create_survey_template(h.req(
            &cem(),
            CreateSurveyTemplateRequest {
                survey_template: Some(SurveyTemplate {
                    display_name: "After resolution".into(),
                    kind: kind as i32,
                    texts: vec![
                        text("en", "How satisfied are you with how we handled it?"),
                        text("tr", "Talebinizin ele alınışından ne kadar memnunsunuz?"),
                    ],
                    default_language_code: "en".into(),
                    comment_enabled: true,
                    ..Default::default()
                }),
                survey_template_id: id.into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn create_trigger(
    h: &Harness,
    id: &str,
    template: &str,
    delay_hours: i64,
    suppression_days: i32,
) -> SurveyTrigger {
    h.svc
        .create_survey_trigger(h.req(
            &cem(),
            CreateSurveyTriggerRequest {
                survey_trigger: Some(SurveyTrigger {
                    display_name: "Every resolved case".into(),
                    event: survey_trigger::Event::CaseResolved as i32,
                    survey_template: template.into(),
                    delay: Some(Duration {
                        seconds: delay_hours * 3600,
                        nanos: 0,
                    }),
                    suppression_days,
                    response_window: Some(Duration {
                        seconds: 7 * 86_400,
                        nanos: 0,
                    }),
                    enabled: true,
                    ..Default::default()
                }),
                survey_trigger_id: id.into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// A case of acme's for `contact`, opened and resolved by Zeki.
async fn resolved_case(h: &Harness, title: &str, contact: &str) -> cases::Case {
    let c = &h.cases;
    let case = c
        .svc
        .create_case(c.req(
            &zeki(),
            cases::CreateCaseRequest {
                case: Some(cases::Case {
                    title: title.into(),
                    r#type: cases::CaseType::Inquiry as i32,
                    account: "accounts/acme".into(),
                    contact: format!("accounts/acme/contacts/{contact}"),
                    ..Default::default()
                }),
                case_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    c.svc
        .open_case(c.req(
            &zeki(),
            cases::OpenCaseRequest {
                name: case.name.clone(),
                owner: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    c.svc
        .resolve_case(c.req(
            &zeki(),
            cases::ResolveCaseRequest {
                name: case.name.clone(),
                resolution: Some(cases::Resolution {
                    root_cause: "Question answered".into(),
                    resolution_code: "FIXED".into(),
                    summary: "Explained the invoice".into(),
                    resolver: String::new(),
                }),
                restore_time: None,
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn surveys(h: &Harness, filter: &str) -> Vec<Survey> {
    h.svc
        .list_surveys(h.req(
            &cem(),
            ListSurveysRequest {
                filter: filter.into(),
                order_by: "create_time".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .surveys
}

async fn get(h: &Harness, name: &str) -> Survey {
    h.svc
        .get_survey(h.req(&cem(), GetSurveyRequest { name: name.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn invitation(h: &Harness, token: &str) -> Result<SurveyInvitation, Status> {
    h.svc
        .get_survey_invitation(tonic::Request::new(GetSurveyInvitationRequest {
            response_token: token.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

async fn submit(
    h: &Harness,
    token: &str,
    score: i32,
    comment: &str,
    request_id: &str,
) -> Result<SubmitSurveyResponseResponse, Status> {
    h.svc
        .submit_survey_response(tonic::Request::new(SubmitSurveyResponseRequest {
            response_token: token.into(),
            score,
            comment: comment.into(),
            language_code: String::new(),
            request_id: request_id.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

fn violations(s: &Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn at(t: Option<prost_types::Timestamp>) -> jiff::Timestamp {
    concierge_common::clock::from_proto(&t.expect("a time")).expect("a valid time")
}

fn state(s: &Survey) -> survey::State {
    survey::State::try_from(s.state).unwrap()
}

/// A resolved case gets one survey, whatever the bus does: its event
/// delivered three times schedules one; the delay holds it; it goes out to
/// the case's contact in her language with a link that opens the question
/// and takes one answer. Neither the survey nor any event carries the token.
async fn a_resolved_case_is_surveyed_once_in_the_contacts_language(h: Harness) {
    let template = create_template(&h, "post-resolution", SurveyKind::Csat15).await;
    create_trigger(&h, "resolved", &template.name, 2, 30).await;
    let case = resolved_case(&h, "Fatura sorusu", "deniz").await;
    h.deliver_case_events(3).await;
    let all = surveys(&h, "").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let s = &all[0];
    assert_eq!(state(s), survey::State::Scheduled);
    assert_eq!(s.r#case, case.name);
    assert_eq!(s.contact, "accounts/acme/contacts/deniz");
    assert_eq!(s.account, "accounts/acme");
    assert_eq!(s.account_manager, "staff/ayse");
    assert_eq!(s.survey_trigger, "surveyTriggers/resolved");
    assert_eq!(s.kind, SurveyKind::Csat15 as i32);
    assert_eq!(s.case_type, cases::CaseType::Inquiry as i32);
    let resolved_at = at(case.state_time);
    assert_eq!(
        at(s.schedule_time),
        resolved_at + SignedDuration::from_hours(2),
        "the trigger's delay after the resolution"
    );

    h.clock.advance(SignedDuration::from_mins(119));
    assert_eq!(h.sweep().await, 0, "not before its time");
    assert!(h.mails().is_empty());
    h.clock.advance(SignedDuration::from_mins(1));
    assert_eq!(h.sweep().await, 1);
    let mails = h.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.to, "deniz@acme.example");
    assert_eq!(mail.language, "tr");
    assert_eq!(mail.subject, "Nasıldık? Fatura sorusu");
    assert!(
        mail.body.starts_with("Merhaba Deniz Yılmaz,"),
        "{}",
        mail.body
    );
    let token = mail.token();
    assert!(token.len() >= 22, "at least 128 bits: {token}");

    let sent = get(&h, &s.name).await;
    assert_eq!(state(&sent), survey::State::Sent);
    assert_eq!(sent.language_code, "tr");
    let send_time = at(sent.send_time);
    assert_eq!(send_time, h.clock.now());
    assert_eq!(
        at(sent.expire_time),
        send_time + SignedDuration::from_hours(7 * 24),
        "the trigger's response window"
    );

    let shown = invitation(&h, &token).await.unwrap();
    assert_eq!(shown.language_code, "tr");
    assert_eq!(
        shown.question,
        "Talebinizin ele alınışından ne kadar memnunsunuz?"
    );
    assert_eq!((shown.min_score, shown.max_score), (1, 5));
    assert_eq!(shown.case_title, "Fatura sorusu");
    assert!(shown.comment_enabled);
    assert_eq!(shown.expire_time, sent.expire_time);

    let thanks = submit(&h, &token, 2, "Çok geç döndünüz", "answer-1")
        .await
        .unwrap();
    assert_eq!(thanks.thank_you_message, "Teşekkürler!");
    let retried = submit(&h, &token, 2, "Çok geç döndünüz", "answer-1")
        .await
        .unwrap();
    assert_eq!(
        retried, thanks,
        "a retry with its request_id gets the first answer"
    );
    let twice = submit(&h, &token, 5, "", "answer-2").await.unwrap_err();
    assert_eq!(twice.code(), Code::NotFound, "{twice:?}");
    assert_eq!(
        invitation(&h, &token).await.unwrap_err().code(),
        Code::NotFound,
        "a spent link opens nothing"
    );

    let answered = get(&h, &s.name).await;
    assert_eq!(state(&answered), survey::State::Answered);
    let response = answered.response.clone().unwrap();
    assert_eq!(response.score, 2);
    assert_eq!(response.comment, "Çok geç döndünüz");
    assert_eq!(response.language_code, "tr");
    assert_eq!(
        response.sentiment,
        survey_response::Sentiment::Negative as i32
    );
    assert!(answered.detractor);
    assert_eq!(
        surveys(&h, "detractor = true AND response.score <= 2")
            .await
            .len(),
        1
    );

    let events = h.events().await;
    let types: Vec<&str> = events
        .iter()
        .filter(|e| e.subject == s.name)
        .map(|e| e.r#type.as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "concierge.csat.v1.survey_scheduled",
            "concierge.csat.v1.survey_sent",
            "concierge.csat.v1.survey_answered",
            "concierge.csat.v1.detractor_detected",
        ]
    );
    for e in &events {
        let bytes = prost::Message::encode_to_vec(e);
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} carries the token",
            e.r#type
        );
    }
    let stored = prost::Message::encode_to_vec(&answered);
    assert!(!stored.windows(token.len()).any(|w| w == token.as_bytes()));
}

/// A contact surveyed in the last N days is not surveyed again (the
/// survey is recorded SUPPRESSED, naming the one that suppressed it); a case
/// reopened before its survey went out withdraws it; a contact with no
/// address is not written to.
async fn suppression_reopening_and_missing_addresses(h: Harness) {
    let template = create_template(&h, "csat", SurveyKind::Csat15).await;
    create_trigger(&h, "resolved", &template.name, 1, 30).await;
    let first = resolved_case(&h, "First", "ali").await;
    h.deliver_case_events(1).await;
    h.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(h.sweep().await, 1);
    let first_survey = surveys(&h, &format!("case = \"{}\"", first.name)).await;
    assert_eq!(state(&first_survey[0]), survey::State::Sent);

    h.clock.advance(SignedDuration::from_hours(24 * 10));
    let second = resolved_case(&h, "Second", "ali").await;
    let reopened = resolved_case(&h, "Reopened", "deniz").await;
    let nomail = resolved_case(&h, "No address", "nomail").await;
    h.cases
        .svc
        .reopen_case(h.cases.req(
            &zeki(),
            cases::ReopenCaseRequest {
                name: reopened.name.clone(),
                reason: "still broken".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    h.deliver_case_events(2).await;
    h.clock.advance(SignedDuration::from_hours(1));
    h.sweep().await;

    let of = |case: &cases::Case| {
        let (h, name) = (&h, case.name.clone());
        async move { surveys(h, &format!("case = \"{name}\"")).await }
    };
    let suppressed = of(&second).await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(state(&suppressed[0]), survey::State::Suppressed);
    assert_eq!(suppressed[0].suppressed_by, first_survey[0].name);
    assert!(suppressed[0].send_time.is_none());
    let withdrawn = of(&reopened).await;
    assert_eq!(state(&withdrawn[0]), survey::State::Cancelled);
    let unsent = of(&nomail).await;
    assert_eq!(state(&unsent[0]), survey::State::Cancelled);
    assert_eq!(h.mails().len(), 1, "only the first survey went out");
    assert_eq!(
        surveys(&h, "state = SUPPRESSED").await.len(),
        1,
        "listed by state"
    );

    // Past the 30 days, Ali is surveyed again.
    h.clock.advance(SignedDuration::from_hours(24 * 21));
    let third = resolved_case(&h, "Third", "ali").await;
    h.deliver_case_events(1).await;
    h.clock.advance(SignedDuration::from_hours(1));
    h.sweep().await;
    assert_eq!(state(&of(&third).await[0]), survey::State::Sent);
    assert_eq!(h.mails().len(), 2);
}

/// A link works for its own survey only, once, until it expires or the
/// survey is withdrawn; a forged token, a score off the scale or a comment
/// the survey does not ask for is refused and records nothing.
async fn response_links_cannot_be_forged_reused_or_stretched(h: Harness) {
    let template = create_template(&h, "nps", SurveyKind::Nps010).await;
    create_trigger(&h, "resolved", &template.name, 0, 0).await;
    resolved_case(&h, "Router swap", "ali").await;
    resolved_case(&h, "Invoice copy", "deniz").await;
    h.deliver_case_events(1).await;
    assert_eq!(h.sweep().await, 2);
    let mails = h.mails();
    let token_of = |to: &str| mails.iter().find(|m| m.to == to).unwrap().token();
    let (ali, deniz) = (token_of("ali@acme.example"), token_of("deniz@acme.example"));
    assert_ne!(ali, deniz);
    assert_eq!(
        invitation(&h, &ali).await.unwrap().case_title,
        "Router swap"
    );
    assert_eq!(
        invitation(&h, &deniz).await.unwrap().case_title,
        "Invoice copy"
    );

    for forged in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        format!("{}x", &ali[..ali.len() - 1]),
        "../../etc/passwd".into(),
        "x".repeat(10_000),
    ] {
        let refused = submit(&h, &forged, 9, "", "").await.unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{forged}: {refused:?}");
    }
    let empty = submit(&h, "", 9, "", "").await.unwrap_err();
    assert_eq!(violations(&empty), vec!["response_token"]);

    for score in [-1, 11] {
        let off = submit(&h, &ali, score, "", "").await.unwrap_err();
        assert_eq!(violations(&off), vec!["score"], "{score}");
    }
    let long = submit(&h, &ali, 9, &"x".repeat(4001), "")
        .await
        .unwrap_err();
    assert_eq!(violations(&long), vec!["comment"]);
    let listed = surveys(&h, "state = SENT").await;
    assert_eq!(listed.len(), 2, "nothing was recorded");

    // NPS 0-10: a 10 is a promoter.
    submit(&h, &ali, 10, "Quick and clear", "").await.unwrap();
    let promoter = surveys(&h, "contact = \"accounts/acme/contacts/ali\"").await;
    assert_eq!(
        promoter[0].response.as_ref().unwrap().sentiment,
        survey_response::Sentiment::Positive as i32
    );
    assert!(!promoter[0].detractor);

    // Deniz's link expires after its window (the default 14 days when the
    // trigger sets none… here 7).
    h.clock.advance(SignedDuration::from_hours(7 * 24));
    let expired = submit(&h, &deniz, 8, "", "").await.unwrap_err();
    assert_eq!(expired.code(), Code::NotFound);
    h.sweep().await;
    assert_eq!(
        surveys(&h, "state = EXPIRED").await.len(),
        1,
        "the sweep records the expiry"
    );

    // A withdrawn survey's link stops working at once.
    resolved_case(&h, "Another", "deniz").await;
    h.deliver_case_events(1).await;
    h.sweep().await;
    let token = h
        .mails()
        .into_iter()
        .find(|m| m.subject.contains("Another"))
        .unwrap()
        .token();
    let sent = surveys(&h, "state = SENT").await;
    h.svc
        .cancel_survey(h.req(
            &zeki(),
            CancelSurveyRequest {
                name: sent[0].name.clone(),
                reason: "sent by mistake".into(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        invitation(&h, &token).await.unwrap_err().code(),
        Code::NotFound
    );
    let again = h
        .svc
        .cancel_survey(h.req(
            &zeki(),
            CancelSurveyRequest {
                name: sent[0].name.clone(),
                reason: String::new(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
}

/// Templates and triggers are the managers' to write, checked field by
/// field; a template in use stays; a deleted trigger takes its scheduled
/// surveys with it; a client reads none of it.
async fn templates_and_triggers_are_checked_and_guarded(h: Harness) {
    let bad = h
        .svc
        .create_survey_template(h.req(
            &cem(),
            CreateSurveyTemplateRequest {
                survey_template: Some(SurveyTemplate {
                    display_name: "Bad".into(),
                    kind: SurveyKind::Csat15 as i32,
                    texts: vec![
                        LocalizedSurveyText {
                            email_subject: "{{ case.owner }}".into(),
                            ..text("en", "Q?")
                        },
                        LocalizedSurveyText {
                            email_body: "No link here".into(),
                            ..text("fr", "Q?")
                        },
                    ],
                    default_language_code: "de".into(),
                    ..Default::default()
                }),
                survey_template_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&bad),
        vec![
            "survey_template.texts[0].email_subject",
            "survey_template.texts[1].language_code",
            "survey_template.texts[1].email_body",
            "survey_template.default_language_code",
        ]
    );
    assert!(bad.message().contains("{{case.owner}}"), "{bad:?}");
    let by_agent = h
        .svc
        .create_survey_template(h.req(
            &zeki(),
            CreateSurveyTemplateRequest {
                survey_template: None,
                survey_template_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(by_agent.code(), Code::PermissionDenied);

    let template = create_template(&h, "csat", SurveyKind::Csat15).await;
    let orphan = h
        .svc
        .create_survey_trigger(h.req(
            &cem(),
            CreateSurveyTriggerRequest {
                survey_trigger: Some(SurveyTrigger {
                    display_name: "Orphan".into(),
                    event: survey_trigger::Event::CaseResolved as i32,
                    survey_template: "surveyTemplates/missing".into(),
                    suppression_days: 400,
                    response_window: Some(Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                survey_trigger_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&orphan),
        vec![
            "survey_trigger.response_window",
            "survey_trigger.suppression_days"
        ]
    );
    let missing = h
        .svc
        .create_survey_trigger(h.req(
            &cem(),
            CreateSurveyTriggerRequest {
                survey_trigger: Some(SurveyTrigger {
                    display_name: "Orphan".into(),
                    event: survey_trigger::Event::CaseResolved as i32,
                    survey_template: "surveyTemplates/missing".into(),
                    ..Default::default()
                }),
                survey_trigger_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&missing), vec!["survey_trigger.survey_template"]);

    let trigger = create_trigger(&h, "resolved", &template.name, 24, 30).await;
    let in_use = h
        .svc
        .delete_survey_template(h.req(
            &cem(),
            DeleteSurveyTemplateRequest {
                name: template.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert!(
        in_use.message().contains("surveyTriggers/resolved"),
        "{in_use:?}"
    );

    // A template edit by mask and etag.
    let edited = h
        .svc
        .update_survey_template(h.req(
            &cem(),
            UpdateSurveyTemplateRequest {
                survey_template: Some(SurveyTemplate {
                    name: template.name.clone(),
                    display_name: "CSAT after resolution".into(),
                    etag: template.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.display_name, "CSAT after resolution");
    assert_eq!(edited.texts.len(), 2, "the texts stay");
    let stale = h
        .svc
        .update_survey_template(h.req(
            &cem(),
            UpdateSurveyTemplateRequest {
                survey_template: Some(SurveyTemplate {
                    name: template.name.clone(),
                    display_name: "Again".into(),
                    etag: template.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    resolved_case(&h, "Waiting a day", "ali").await;
    h.deliver_case_events(1).await;
    assert_eq!(surveys(&h, "state = SCHEDULED").await.len(), 1);
    h.svc
        .delete_survey_trigger(h.req(
            &cem(),
            DeleteSurveyTriggerRequest {
                name: trigger.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(surveys(&h, "state = CANCELLED").await.len(), 1);
    h.clock.advance(SignedDuration::from_hours(24));
    assert_eq!(h.sweep().await, 0);
    assert!(h.mails().is_empty(), "a withdrawn survey is not sent");
    h.svc
        .delete_survey_template(h.req(
            &cem(),
            DeleteSurveyTemplateRequest {
                name: template.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();

    let listed = h
        .svc
        .list_surveys(h.req(&client("acme"), ListSurveysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::PermissionDenied);
    let unauthenticated = h
        .svc
        .list_surveys(tonic::Request::new(ListSurveysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
}

/// A survey sent by hand defaults to the case's contact, is created once
/// per request_id, and is held to the triggers' suppression.
async fn a_survey_is_sent_by_hand_once(h: Harness) {
    let template = create_template(&h, "csat", SurveyKind::Ces17).await;
    let case = resolved_case(&h, "Asked by hand", "ali").await;
    let request = |contact: &str, request_id: &str| CreateSurveyRequest {
        survey: Some(Survey {
            survey_template: template.name.clone(),
            r#case: case.name.clone(),
            contact: contact.into(),
            ..Default::default()
        }),
        survey_id: String::new(),
        request_id: request_id.into(),
    };
    let first = h
        .svc
        .create_survey(h.req(&zeki(), request("", "by-hand-1")))
        .await
        .unwrap()
        .into_inner();
    let again = h
        .svc
        .create_survey(h.req(&zeki(), request("", "by-hand-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(first.contact, "accounts/acme/contacts/ali");
    assert!(first.survey_trigger.is_empty());
    assert_eq!(surveys(&h, "").await.len(), 1);
    let elsewhere = h
        .svc
        .create_survey(h.req(&zeki(), request("accounts/globex/contacts/gul", "")))
        .await
        .unwrap_err();
    assert_eq!(violations(&elsewhere), vec!["survey.contact"]);
    let no_case = h
        .svc
        .create_survey(h.req(
            &zeki(),
            CreateSurveyRequest {
                survey: Some(Survey {
                    survey_template: template.name.clone(),
                    r#case: "cases/missing".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&no_case), vec!["survey.case"]);
    assert_eq!(h.sweep().await, 1);
    let mails = h.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].language, "en");
    assert_eq!(mails[0].subject, "How did we do? Asked by hand");
    let shown = invitation(&h, &mails[0].token()).await.unwrap();
    assert_eq!((shown.min_score, shown.max_score), (1, 7));

    // With a trigger suppressing for 30 days, a second one is suppressed.
    create_trigger(&h, "resolved", &template.name, 0, 30).await;
    h.svc
        .create_survey(h.req(&zeki(), request("", "by-hand-2")))
        .await
        .unwrap();
    h.sweep().await;
    assert_eq!(surveys(&h, "state = SUPPRESSED").await.len(), 1);
}

/// The consumer runs on the bus as in `concierge dev`: stopped after the
/// first case and started again after two more were resolved, it surveys
/// each of the three cases once.
async fn csat_restarting_mid_stream_surveys_each_case_once(h: Harness) {
    use concierge_common::relay::{Bus, BusTarget, LocalBus};
    let template = create_template(&h, "csat", SurveyKind::Csat15).await;
    create_trigger(&h, "resolved", &template.name, 1, 0).await;
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
    let relay = h.cases.svc.relay_events(Bus::Local(log.clone()));
    let start = || {
        tokio::spawn(inbox::run(
            h.svc.db().clone(),
            BusTarget::Ready(Bus::Local(log.clone())),
            Arc::new(CaseEvents::new(h.svc.clone())),
            Arc::new(h.clock.clone()),
        ))
    };
    let consumer = start();
    resolved_case(&h, "One", "ali").await;
    testing::eventually(
        std::time::Duration::from_secs(20),
        "the first survey",
        || async { surveys(&h, "").await.len() == 1 },
    )
    .await;
    consumer.abort();
    let _ = consumer.await;
    resolved_case(&h, "Two", "deniz").await;
    resolved_case(&h, "Three", "ali").await;
    let consumer = start();
    testing::eventually(
        std::time::Duration::from_secs(20),
        "three surveys",
        || async { surveys(&h, "").await.len() == 3 },
    )
    .await;
    // Whatever else the log holds is read and changes nothing.
    testing::eventually(
        std::time::Duration::from_secs(20),
        "the consumer caught up",
        || async {
            let last = log.last();
            log.consumer("csat-case-events").await.unwrap().0 >= last
        },
    )
    .await;
    consumer.abort();
    relay.abort();
    let all = surveys(&h, "").await;
    assert_eq!(all.len(), 3, "{all:?}");
    let mut cases: Vec<_> = all.iter().map(|s| s.r#case.clone()).collect();
    cases.dedup();
    assert_eq!(cases.len(), 3, "one survey per case");
}

/// Every event the scenarios wrote matches the catalogue, and the filter
/// columns are those the migrations create.
async fn events_and_columns_follow_the_contract(h: Harness) {
    testing::assert_columns_agree::<SurveyTemplate, concierge_csat::Rules>(h.svc.db()).await;
    testing::assert_columns_agree::<SurveyTrigger, concierge_csat::Rules>(h.svc.db()).await;
    testing::assert_columns_agree::<Survey, concierge_csat::Rules>(h.svc.db()).await;
    testing::assert_columns_agree::<CorrectiveActionPlan, concierge_csat::Rules>(h.svc.db()).await;
    testing::assert_columns_agree::<AvailabilityInterval, concierge_csat::Rules>(h.svc.db()).await;
    testing::assert_columns_agree::<MonthlyReport, concierge_csat::Rules>(h.svc.db()).await;
    h.svc
        .update_kpi_settings(h.req(
            &cem(),
            UpdateKpiSettingsRequest {
                kpi_settings: Some(KpiSettings {
                    name: "kpiSettings".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["targets".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let template = create_template(&h, "csat", SurveyKind::Csat15).await;
    let trigger = create_trigger(&h, "resolved", &template.name, 0, 30).await;
    h.svc
        .update_survey_trigger(h.req(
            &cem(),
            UpdateSurveyTriggerRequest {
                survey_trigger: Some(SurveyTrigger {
                    name: trigger.name.clone(),
                    delay: Some(Duration {
                        seconds: 3600,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["delay".into()],
                }),
            },
        ))
        .await
        .unwrap();
    h.svc
        .update_survey_template(h.req(
            &cem(),
            UpdateSurveyTemplateRequest {
                survey_template: Some(SurveyTemplate {
                    name: template.name.clone(),
                    comment_enabled: false,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["comment_enabled".into()],
                }),
            },
        ))
        .await
        .unwrap();
    resolved_case(&h, "Answered", "ali").await;
    resolved_case(&h, "Suppressed", "ali").await;
    resolved_case(&h, "Expires", "deniz").await;
    h.deliver_case_events(1).await;
    h.clock.advance(SignedDuration::from_hours(1));
    h.sweep().await;
    let mails = h.mails();
    let ali = mails.iter().find(|m| m.to == "ali@acme.example").unwrap();
    let no_comment = submit(&h, &ali.token(), 1, "A comment", "")
        .await
        .unwrap_err();
    assert_eq!(
        violations(&no_comment),
        vec!["comment"],
        "the template asks for none"
    );
    submit(&h, &ali.token(), 1, "", "").await.unwrap();
    let detractor = surveys(&h, "detractor = true").await.remove(0);
    h.svc
        .set_corrective_action_state(h.req(
            &cem(),
            SetCorrectiveActionStateRequest {
                name: detractor.corrective_action_plan.clone(),
                action_id: "1".into(),
                state: corrective_action::State::InProgress as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.clock.advance(SignedDuration::from_hours(24 * 15));
    h.sweep().await;
    // A scheduled one withdrawn by hand, a trigger and a template deleted.
    let c = &h.cases;
    let case = c
        .svc
        .create_case(c.req(
            &zeki(),
            cases::CreateCaseRequest {
                case: Some(cases::Case {
                    title: "Hand".into(),
                    r#type: cases::CaseType::Inquiry as i32,
                    account: "accounts/acme".into(),
                    contact: "accounts/acme/contacts/deniz".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let by_hand = h
        .svc
        .create_survey(h.req(
            &zeki(),
            CreateSurveyRequest {
                survey: Some(Survey {
                    survey_template: template.name.clone(),
                    r#case: case.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .cancel_survey(h.req(
            &zeki(),
            CancelSurveyRequest {
                name: by_hand.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_survey_trigger(h.req(
            &cem(),
            DeleteSurveyTriggerRequest {
                name: trigger.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_survey_template(h.req(
            &cem(),
            DeleteSurveyTemplateRequest {
                name: template.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    generate(&h, &cem(), november_report("staff/ayse"))
        .await
        .unwrap();
    testing::assert_events_match_catalogue::<concierge_proto::csat::EventType>(
        "csat",
        &h.events().await,
    );
}

/// A case of `account`'s for `contact`, not resolved (for surveys by hand).
async fn open_case(h: &Harness, account: &str, contact: &str, title: &str) -> cases::Case {
    let c = &h.cases;
    c.svc
        .create_case(c.req(
            &zeki(),
            cases::CreateCaseRequest {
                case: Some(cases::Case {
                    title: title.into(),
                    r#type: cases::CaseType::Inquiry as i32,
                    account: format!("accounts/{account}"),
                    contact: format!("accounts/{account}/contacts/{contact}"),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Surveys of `template` about `case`, one per score, answered with them
/// (`None` leaves one unanswered).
async fn answered(h: &Harness, template: &str, case: &cases::Case, scores: &[Option<i32>]) {
    for _ in scores {
        h.svc
            .create_survey(h.req(
                &zeki(),
                CreateSurveyRequest {
                    survey: Some(Survey {
                        survey_template: template.into(),
                        r#case: case.name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    h.sweep().await;
    let tokens: Vec<String> = h
        .mails()
        .into_iter()
        .filter(|m| m.subject.ends_with(&format!("? {}", case.title)))
        .map(|m| m.token())
        .collect();
    assert_eq!(tokens.len(), scores.len());
    for (token, score) in tokens.iter().zip(scores) {
        if let Some(score) = score {
            submit(h, token, *score, "", "").await.unwrap();
        }
    }
}

async fn deliver_account_events(h: &Harness) {
    use concierge_csat::scores::AccountPortfolios;
    let consumer = AccountPortfolios::new(h.svc.clone());
    let subscription = consumer.subscription();
    for e in h._customers.events().await {
        if subscription.event_types.contains(&e.r#type) {
            let outcome = inbox::deliver(
                h.svc.db(),
                &consumer,
                &subscription,
                &e,
                1,
                concierge_common::clock::to_micros(h.clock.now()),
            )
            .await;
            assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
        }
    }
}

/// CSAT %, NPS and CES from hand-counted answers, by account, portfolio
/// (today's manager) and manager at the time; a filter, pages, and each
/// client's level.
async fn scores_follow_the_contracts_formulas(h: Harness) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    let csat = create_template(&h, "csat", SurveyKind::Csat15).await;
    let nps = create_template(&h, "nps", SurveyKind::Nps010).await;
    let ces = create_template(&h, "ces", SurveyKind::Ces17).await;
    let a = open_case(&h, "acme", "ali", "CSAT case").await;
    answered(
        &h,
        &csat.name,
        &a,
        &[Some(5), Some(4), Some(3), Some(2), Some(1), Some(5), None],
    )
    .await;
    let b = open_case(&h, "acme", "ali", "NPS case").await;
    answered(
        &h,
        &nps.name,
        &b,
        &[
            Some(10),
            Some(9),
            Some(8),
            Some(7),
            Some(6),
            Some(0),
            Some(10),
            Some(10),
        ],
    )
    .await;
    let c = open_case(&h, "acme", "ali", "CES case").await;
    answered(&h, &ces.name, &c, &[Some(7), Some(5), Some(4), Some(1)]).await;
    let g = open_case(&h, "globex", "gul", "Globex case").await;
    answered(&h, &csat.name, &g, &[Some(5), Some(4)]).await;

    // Globex changes hands: its portfolio is Cem's now, its surveys were
    // sent under Ayşe.
    let customers = &h._customers;
    customers
        .svc
        .update_account(customers.req(
            &admin(),
            concierge_proto::customers::UpdateAccountRequest {
                account: Some(concierge_proto::customers::Account {
                    name: "accounts/globex".into(),
                    account_manager: "staff/cem".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["account_manager".into()],
                }),
            },
        ))
        .await
        .unwrap();
    deliver_account_events(&h).await;

    let query = |group_by: Vec<Dimension>, filter: &str, page_size: i32, page_token: &str| {
        QueryScoresRequest {
            filter: filter.into(),
            start_month: Some(Month {
                year: 2026,
                month: 10,
            }),
            end_month: Some(Month {
                year: 2026,
                month: 11,
            }),
            group_by: group_by.into_iter().map(|d| d as i32).collect(),
            time_zone: Some(concierge_proto::types::TimeZone {
                id: "Europe/Istanbul".into(),
            }),
            page_size,
            page_token: page_token.into(),
        }
    };
    let scores = |r: QueryScoresRequest| {
        let h = &h;
        async move {
            h.svc
                .query_scores(h.req(&cem(), r))
                .await
                .map(|r| r.into_inner())
        }
    };
    let by_account = scores(query(vec![Dimension::Account], "", 0, ""))
        .await
        .unwrap();
    assert_eq!(by_account.rows.len(), 2);
    let acme = by_account.rows[0].scores.unwrap();
    assert_eq!(
        by_account.rows[0].group.as_ref().unwrap().account,
        "accounts/acme"
    );
    assert_eq!(
        (acme.csat_response_count, acme.csat_satisfied_count),
        (6, 3)
    );
    assert_eq!(acme.csat_percent, 50.0);
    assert_eq!(
        (
            acme.nps_promoter_count,
            acme.nps_passive_count,
            acme.nps_detractor_count
        ),
        (4, 2, 2)
    );
    assert_eq!(acme.nps, 25.0);
    assert_eq!(acme.ces_mean, 4.25);
    assert_eq!((acme.ces_agree_count, acme.ces_agree_percent), (2, 50.0));
    assert_eq!(acme.sent_count, 19);
    assert!((acme.response_rate_percent - 18.0 * 100.0 / 19.0).abs() < 1e-9);
    let total = by_account.total.unwrap();
    assert_eq!(
        (total.csat_response_count, total.csat_satisfied_count),
        (8, 5)
    );
    assert_eq!(total.csat_percent, 62.5);

    let by_portfolio = scores(query(vec![Dimension::Portfolio], "", 0, ""))
        .await
        .unwrap();
    let portfolios: Vec<(String, i64)> = by_portfolio
        .rows
        .iter()
        .map(|r| {
            (
                r.group.as_ref().unwrap().portfolio.clone(),
                r.scores.as_ref().unwrap().sent_count,
            )
        })
        .collect();
    assert_eq!(
        portfolios,
        vec![("staff/ayse".to_string(), 19), ("staff/cem".to_string(), 2)]
    );
    let at_the_time = scores(query(vec![Dimension::AccountManager], "", 0, ""))
        .await
        .unwrap();
    assert_eq!(at_the_time.rows.len(), 1, "all were sent under Ayşe");
    let cems = scores(query(
        vec![Dimension::Month],
        "kind = CSAT_1_5 AND portfolio = \"staff/cem\"",
        0,
        "",
    ))
    .await
    .unwrap();
    assert_eq!(cems.rows.len(), 1);
    assert_eq!(
        cems.rows[0].group.as_ref().unwrap().month,
        Some(Month {
            year: 2026,
            month: 11
        })
    );
    assert_eq!(cems.total.unwrap().csat_percent, 100.0);

    let first = scores(query(vec![Dimension::Account], "", 1, ""))
        .await
        .unwrap();
    assert_eq!(first.rows.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = scores(query(
        vec![Dimension::Account],
        "",
        1,
        &first.next_page_token,
    ))
    .await
    .unwrap();
    assert_eq!(
        second.rows[0].group.as_ref().unwrap().account,
        "accounts/globex"
    );
    assert!(second.next_page_token.is_empty());
    let other = scores(query(
        vec![Dimension::Account],
        "kind = NPS_0_10",
        1,
        &first.next_page_token,
    ))
    .await
    .unwrap_err();
    assert_eq!(violations(&other), vec!["page_token"]);
    let bad = scores(QueryScoresRequest {
        end_month: Some(Month {
            year: 2026,
            month: 13,
        }),
        ..query(vec![Dimension::Agent], "colour = red", 0, "")
    })
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let refused = h
        .svc
        .query_scores(h.req(&client("acme"), query(vec![], "", 0, "")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let both = h
        .svc
        .batch_get_client_satisfactions(h.req(
            &cem(),
            BatchGetClientSatisfactionsRequest {
                names: vec![
                    "accounts/globex/satisfaction".into(),
                    "accounts/acme/satisfaction".into(),
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .client_satisfactions;
    assert_eq!(
        both[0].name, "accounts/globex/satisfaction",
        "in the order asked"
    );
    use client_satisfaction::{Level, Trend};
    assert_eq!(both[0].level, Level::Satisfied as i32);
    assert_eq!(both[1].level, Level::AtRisk as i32, "50% is below 70%");
    assert_eq!(
        both[1].trend,
        Trend::NoData as i32,
        "nothing in the window before"
    );
    assert_eq!(both[1].detractor_count, 5, "CSAT 1-2, NPS 0 and 6, CES 1");
    assert_eq!(both[1].monthly.len(), 12);
    let november = both[1].monthly.last().unwrap();
    assert_eq!(
        november.group.as_ref().unwrap().month,
        Some(Month {
            year: 2026,
            month: 11
        })
    );
    assert_eq!(november.scores.as_ref().unwrap().csat_response_count, 6);
    assert!(both[1].last_response_time.is_some());
    let bad_name = h
        .svc
        .batch_get_client_satisfactions(h.req(
            &cem(),
            BatchGetClientSatisfactionsRequest {
                names: vec!["accounts/acme/satisfaction".into(), "accounts/acme".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad_name), vec!["names[1]"]);
    let one = h
        .svc
        .get_client_satisfaction(h.req(
            &cem(),
            GetClientSatisfactionRequest {
                name: "accounts/acme/satisfaction".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.current, both[1].current);

    // 90 days on, the answers are the previous window's: no data now.
    h.clock.advance(SignedDuration::from_hours(91 * 24));
    let later = h
        .svc
        .get_client_satisfaction(h.req(
            &cem(),
            GetClientSatisfactionRequest {
                name: "accounts/acme/satisfaction".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(later.current.unwrap().csat_response_count, 0);
    assert_eq!(later.previous.unwrap().csat_response_count, 6);
    assert_eq!(
        i64::from(later.open_corrective_action_plan_count),
        one.detractor_count,
        "one plan a detractor, still open"
    );
    assert_eq!(
        later.level,
        Level::AtRisk as i32,
        "no answer in the window, but its detractors' plans are open"
    );
}

async fn overdue_plans(h: &Harness) -> Vec<CorrectiveActionPlan> {
    h.svc
        .list_corrective_action_plans(h.req(
            &cem(),
            ListCorrectiveActionPlansRequest {
                filter: "overdue = true AND account_manager = \"staff/ayse\"".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .corrective_action_plans
}

async fn plan(h: &Harness, name: &str) -> CorrectiveActionPlan {
    h.svc
        .get_corrective_action_plan(
            h.req(&cem(), GetCorrectiveActionPlanRequest { name: name.into() }),
        )
        .await
        .unwrap()
        .into_inner()
}

/// A detractor's answer opens a plan with it: the account manager owns it,
/// a first call is due in two days, and when it runs late the plan is
/// overdue for the portfolio's filter without a new revision. Actions keep
/// their state through edits; a plan completes only when every action is
/// done or dropped.
async fn a_detractor_opens_a_corrective_action_plan_that_runs_late(h: Harness) {
    let template = create_template(&h, "csat", SurveyKind::Csat15).await;
    create_trigger(&h, "resolved", &template.name, 0, 30).await;
    let case = resolved_case(&h, "Fatura sorusu", "deniz").await;
    h.deliver_case_events(1).await;
    h.sweep().await;
    let token = h.mails()[0].token();
    submit(&h, &token, 1, "Çok geç", "").await.unwrap();
    let survey = surveys(&h, "").await.remove(0);
    assert!(survey.detractor);
    let opened = plan(&h, &survey.corrective_action_plan).await;
    use corrective_action_plan::{Origin, State};
    assert_eq!(opened.origin, Origin::Detractor as i32);
    assert_eq!(opened.state, State::Open as i32);
    assert_eq!(opened.account, "accounts/acme");
    assert_eq!(
        (opened.owner.as_str(), opened.account_manager.as_str()),
        ("staff/ayse", "staff/ayse")
    );
    assert_eq!(opened.detractor_survey, survey.name);
    assert_eq!(opened.cases, vec![case.name.clone()]);
    assert_eq!(opened.title, "Detractor on \"Fatura sorusu\"");
    assert_eq!(opened.actions.len(), 1);
    let call = &opened.actions[0];
    assert_eq!(
        (call.id.as_str(), call.state),
        ("1", corrective_action::State::Open as i32)
    );
    assert_eq!(
        at(call.due_time),
        h.clock.now() + SignedDuration::from_hours(48)
    );
    assert_eq!(opened.next_due_time, call.due_time);
    assert!(!opened.overdue);
    let acme = satisfaction(&h, "accounts/acme").await;
    assert_eq!(
        (acme.open_corrective_action_plan_count, acme.level),
        (1, Level::AtRisk as i32)
    );
    let types: Vec<String> = h
        .events()
        .await
        .into_iter()
        .map(|e| e.r#type)
        .filter(|t| t.contains("answered") || t.contains("detractor") || t.contains("plan"))
        .collect();
    assert_eq!(
        types,
        vec![
            "concierge.csat.v1.survey_answered",
            "concierge.csat.v1.detractor_detected",
            "concierge.csat.v1.corrective_action_plan_created"
        ]
    );

    assert!(overdue_plans(&h).await.is_empty());
    h.clock.advance(SignedDuration::from_hours(49));
    h.sweep().await;
    let late = overdue_plans(&h).await;
    assert_eq!(late.len(), 1, "the timer marked it");
    assert!(late[0].actions[0].overdue);
    assert_eq!(late[0].etag, opened.etag, "no new revision");

    // An edit keeps action 1's state and adds action 2.
    let edited = h
        .svc
        .update_corrective_action_plan(h.req(
            &cem(),
            UpdateCorrectiveActionPlanRequest {
                corrective_action_plan: Some(CorrectiveActionPlan {
                    name: opened.name.clone(),
                    actions: vec![
                        CorrectiveAction {
                            id: "1".into(),
                            state: corrective_action::State::Done as i32,
                            ..opened.actions[0].clone()
                        },
                        CorrectiveAction {
                            description: "Weekly status call until the invoice is corrected".into(),
                            owner: "staff/ayse".into(),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["actions".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        edited.actions[0].state,
        corrective_action::State::Open as i32,
        "state moves by its own method"
    );
    assert_eq!(
        (edited.actions[1].id.as_str(), edited.actions[1].state),
        ("2", corrective_action::State::Open as i32)
    );
    assert!(edited.overdue);

    let set = |id: &str, state: corrective_action::State, request_id: &str| {
        SetCorrectiveActionStateRequest {
            name: opened.name.clone(),
            action_id: id.into(),
            state: state as i32,
            note: "Called Deniz; invoice reissued".into(),
            etag: String::new(),
            request_id: request_id.into(),
        }
    };
    let done = h
        .svc
        .set_corrective_action_state(
            h.req(&cem(), set("1", corrective_action::State::Done, "done-1")),
        )
        .await
        .unwrap()
        .into_inner();
    let again = h
        .svc
        .set_corrective_action_state(
            h.req(&cem(), set("1", corrective_action::State::Done, "done-1")),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done, again, "a retry gets the first reply");
    assert!(done.actions[0].complete_time.is_some());
    assert!(
        !done.overdue,
        "the late action is done; the other has no due time"
    );
    assert!(overdue_plans(&h).await.is_empty());
    let unknown = h
        .svc
        .set_corrective_action_state(h.req(&cem(), set("9", corrective_action::State::Done, "")))
        .await
        .unwrap_err();
    assert_eq!(violations(&unknown), vec!["action_id"]);

    let complete = |outcome: &str| CompleteCorrectiveActionPlanRequest {
        name: opened.name.clone(),
        outcome: outcome.into(),
        etag: String::new(),
        request_id: String::new(),
    };
    let early = h
        .svc
        .complete_corrective_action_plan(h.req(&cem(), complete("")))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert!(
        early.message().contains("action 2 is still open"),
        "{early:?}"
    );
    h.svc
        .set_corrective_action_state(
            h.req(&cem(), set("2", corrective_action::State::Cancelled, "")),
        )
        .await
        .unwrap();
    let completed = h
        .svc
        .complete_corrective_action_plan(
            h.req(&cem(), complete("Deniz confirmed she is satisfied")),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(completed.state, State::Completed as i32);
    assert!(completed.close_time.is_some());
    assert!(
        completed
            .description
            .ends_with("Outcome: Deniz confirmed she is satisfied")
    );
    let no_reason = h
        .svc
        .reopen_corrective_action_plan(h.req(
            &cem(),
            ReopenCorrectiveActionPlanRequest {
                name: opened.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&no_reason), vec!["reason"]);
    let reopened = h
        .svc
        .reopen_corrective_action_plan(h.req(
            &cem(),
            ReopenCorrectiveActionPlanRequest {
                name: opened.name.clone(),
                reason: "she called again".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reopened.state, reopened.close_time),
        (State::Open as i32, None)
    );
    // Half a year on, no answer is left in the window, yet the open plan of a
    // detractor keeps the client at risk until it is closed.
    h.clock.advance(SignedDuration::from_hours(24 * 200));
    let acme = satisfaction(&h, "accounts/acme").await;
    assert_eq!(acme.current.unwrap().csat_response_count, 0);
    assert_eq!(
        (acme.open_corrective_action_plan_count, acme.level),
        (1, Level::AtRisk as i32)
    );
    let cancelled = h
        .svc
        .cancel_corrective_action_plan(h.req(
            &cem(),
            CancelCorrectiveActionPlanRequest {
                name: opened.name.clone(),
                reason: "handled in the quarterly review".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, State::Cancelled as i32);
    let acme = satisfaction(&h, "accounts/acme").await;
    assert_eq!(
        (acme.open_corrective_action_plan_count, acme.level),
        (0, Level::NoData as i32)
    );
}

async fn satisfaction(h: &Harness, account: &str) -> ClientSatisfaction {
    h.svc
        .get_client_satisfaction(h.req(
            &cem(),
            GetClientSatisfactionRequest {
                name: format!("{account}/satisfaction"),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// A plan opened by hand: its account must exist and gives the plan its
/// account manager; bad fields are named; a client key sees no plan.
async fn corrective_action_plans_are_opened_by_hand(h: Harness) {
    let create = |p: CorrectiveActionPlan| CreateCorrectiveActionPlanRequest {
        corrective_action_plan: Some(p),
        corrective_action_plan_id: String::new(),
        request_id: "plan-1".into(),
    };
    let good = CorrectiveActionPlan {
        title: "Win back Globex".into(),
        account: "accounts/globex".into(),
        owner: "staff/cem".into(),
        cases: vec!["cases/c9".into()],
        actions: vec![CorrectiveAction {
            description: "Executive call".into(),
            owner: "staff/cem".into(),
            due_time: Some(prost_types::Timestamp {
                seconds: 1_798_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let made = h
        .svc
        .create_corrective_action_plan(h.req(&zeki(), create(good.clone())))
        .await
        .unwrap()
        .into_inner();
    let again = h
        .svc
        .create_corrective_action_plan(h.req(&zeki(), create(good.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made, again, "created once per request_id");
    use corrective_action_plan::Origin;
    assert_eq!(made.origin, Origin::Manual as i32);
    let globex = satisfaction(&h, "accounts/globex").await;
    assert_eq!(
        (globex.open_corrective_action_plan_count, globex.level),
        (1, Level::NoData as i32),
        "a plan opened by hand counts but does not mark the client at risk"
    );
    assert_eq!(
        made.account_manager, "staff/ayse",
        "from the customers service"
    );
    assert_eq!(made.actions[0].id, "1");
    let missing = h
        .svc
        .create_corrective_action_plan(h.req(
            &zeki(),
            CreateCorrectiveActionPlanRequest {
                corrective_action_plan: Some(CorrectiveActionPlan {
                    account: "accounts/nowhere".into(),
                    ..good.clone()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&missing), vec!["corrective_action_plan.account"]);
    let bad = h
        .svc
        .create_corrective_action_plan(h.req(
            &zeki(),
            CreateCorrectiveActionPlanRequest {
                corrective_action_plan: Some(CorrectiveActionPlan {
                    title: String::new(),
                    owner: "ayse".into(),
                    cases: vec!["c1".into()],
                    actions: vec![CorrectiveAction {
                        owner: "ayse".into(),
                        ..Default::default()
                    }],
                    ..good.clone()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&bad),
        vec![
            "corrective_action_plan.title",
            "corrective_action_plan.owner",
            "corrective_action_plan.cases[0]",
            "corrective_action_plan.actions[0].description",
            "corrective_action_plan.actions[0].owner",
        ]
    );
    let listed = h
        .svc
        .list_corrective_action_plans(h.req(
            &cem(),
            ListCorrectiveActionPlansRequest {
                filter: "origin = MANUAL AND cases:\"cases/c9\"".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 1);
    let client = h
        .svc
        .list_corrective_action_plans(h.req(
            &client("globex"),
            ListCorrectiveActionPlansRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(client.code(), Code::PermissionDenied);
}

/// Every event of the cases service so far and `disputes`, delivered twice
/// to the KPI consumers, as a bus that redelivers would.
async fn deliver_kpi_facts(h: &Harness, disputes: &[Event]) {
    use concierge_csat::kpis::{CaseFacts, DisputeFacts};
    let cases = CaseFacts::new(h.svc.clone());
    let case_events = h.cases.events().await;
    let dispute_facts = DisputeFacts::new(h.svc.clone());
    for _ in 0..2 {
        for (consumer, events) in [
            (&cases as &dyn Deliver, &case_events[..]),
            (&dispute_facts as &dyn Deliver, disputes),
        ] {
            for e in events {
                consumer.deliver(h, e).await;
            }
        }
    }
}

/// A consumer of either kind, for delivering in one loop.
#[tonic::async_trait]
trait Deliver: Sync {
    async fn deliver(&self, h: &Harness, e: &Event);
}

#[tonic::async_trait]
impl<C: inbox::Consumer + Sync> Deliver for C {
    async fn deliver(&self, h: &Harness, e: &Event) {
        let subscription = self.subscription();
        if !subscription.event_types.contains(&e.r#type) {
            return;
        }
        let outcome = inbox::deliver(
            h.svc.db(),
            self,
            &subscription,
            e,
            1,
            concierge_common::clock::to_micros(h.clock.now()),
        )
        .await;
        assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    }
}

/// A dispute's event as the disputes service would publish it.
fn dispute_event(id: &str, event_type: &str, d: &concierge_proto::disputes::Dispute) -> Event {
    Event {
        id: id.into(),
        r#type: event_type.into(),
        source: "disputes".into(),
        subject: d.name.clone(),
        account: d.account.clone(),
        payload: Some(concierge_common::outbox::pack(d)),
        ..Default::default()
    }
}

fn ts(t: jiff::Timestamp) -> Option<prost_types::Timestamp> {
    Some(concierge_common::clock::to_proto(t))
}

fn secs(d: &Option<Duration>) -> i64 {
    d.as_ref().unwrap().seconds
}

async fn kpis(h: &Harness, req: QueryKpisRequest) -> QueryKpisResponse {
    h.svc
        .query_kpis(h.req(&cem(), req))
        .await
        .unwrap()
        .into_inner()
}

fn value(values: &[KpiValue], kind: KpiKind) -> &KpiValue {
    values.iter().find(|v| v.kind == kind as i32).unwrap()
}

fn stats(v: &KpiValue) -> &DurationStats {
    match v.value.as_ref().unwrap() {
        kpi_value::Value::DurationStats(s) => s,
        other => panic!("{other:?}"),
    }
}

fn ratio(v: &KpiValue) -> &Ratio {
    match v.value.as_ref().unwrap() {
        kpi_value::Value::Ratio(r) => r,
        other => panic!("{other:?}"),
    }
}

fn november() -> (Option<Month>, Option<Month>) {
    let m = Some(Month {
        year: 2026,
        month: 11,
    });
    (m, m)
}

/// First response, time to resolve, reopen rate and backlog from the cases
/// service's events (wall-clock without an SLA clock), dispute cycle time
/// and credits per currency from the disputes service's, each delivered
/// twice; grouped and filtered, against the targets.
async fn kpis_follow_cases_and_disputes(h: Harness) {
    let c = &h.cases;
    let t0 = h.clock.now();
    let hours = |n: i64| SignedDuration::from_hours(n);
    // Case A: opened (first response) after 1 h, resolved after 5 h, then
    // reopened and resolved again after 9 h. Case B: 3 h to respond, 4 h
    // to resolve. Case C: never answered, still open.
    let a = open_case(&h, "acme", "ali", "Invoice question").await;
    h.clock.advance(hours(1));
    let opener = |name: String| cases::OpenCaseRequest {
        name,
        ..Default::default()
    };
    c.svc
        .open_case(c.req(&zeki(), opener(a.name.clone())))
        .await
        .unwrap();
    let b = open_case(&h, "acme", "deniz", "Port speed").await;
    let resolve = |name: &str| cases::ResolveCaseRequest {
        name: name.into(),
        resolution: Some(cases::Resolution {
            root_cause: "Answered".into(),
            resolution_code: "FIXED".into(),
            summary: "Explained".into(),
            resolver: String::new(),
        }),
        ..Default::default()
    };
    h.clock.advance(hours(3));
    c.svc
        .open_case(c.req(&zeki(), opener(b.name.clone())))
        .await
        .unwrap();
    h.clock.advance(hours(1));
    c.svc
        .resolve_case(c.req(&zeki(), resolve(&a.name)))
        .await
        .unwrap();
    c.svc
        .resolve_case(c.req(&zeki(), resolve(&b.name)))
        .await
        .unwrap();
    h.clock.advance(hours(1));
    c.svc
        .reopen_case(c.req(
            &zeki(),
            cases::ReopenCaseRequest {
                name: a.name.clone(),
                reason: "the invoice is still wrong".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.clock.advance(hours(3));
    c.svc
        .resolve_case(c.req(&zeki(), resolve(&a.name)))
        .await
        .unwrap();
    let open = open_case(&h, "globex", "gul", "Still waiting").await;
    let open_since = h.clock.now();
    assert_eq!(open.state, cases::case::State::New as i32);
    h.clock.advance(hours(2));

    // Two disputes of Acme's: one closed 48 h after submission with a
    // USD credit, one of EUR credited but not closed; one deleted.
    use concierge_proto::disputes::{CreditIssue, Dispute};
    use concierge_proto::types::Money;
    let credit = |currency: &str, minor_units: i64| CreditIssue {
        amount: Some(Money {
            currency_code: currency.into(),
            minor_units,
        }),
        issue_time: ts(t0 + hours(30)),
        ..Default::default()
    };
    let closed = Dispute {
        name: "disputes/d1".into(),
        account: "accounts/acme".into(),
        account_manager: "staff/ayse".into(),
        owner: "staff/cem".into(),
        submit_time: ts(t0),
        close_time: ts(t0 + hours(48)),
        credit_issue: Some(credit("USD", 12_345)),
        update_time: ts(t0 + hours(48)),
        ..Default::default()
    };
    let credited = Dispute {
        name: "disputes/d2".into(),
        close_time: None,
        credit_issue: Some(credit("EUR", 500)),
        update_time: ts(t0 + hours(30)),
        ..closed.clone()
    };
    let gone = Dispute {
        name: "disputes/d3".into(),
        ..closed.clone()
    };
    use concierge_proto::catalogue::disputes as d;
    let stale = Dispute {
        close_time: None,
        credit_issue: None,
        update_time: ts(t0),
        ..closed.clone()
    };
    let dispute_events = vec![
        dispute_event("e1", d::CREDIT_ISSUED.event_type(), &closed),
        // An older change delivered late does not undo the close.
        dispute_event("e2", d::DISPUTE_UPDATED.event_type(), &stale),
        dispute_event("e3", d::CREDIT_ISSUED.event_type(), &credited),
        dispute_event("e4", d::DISPUTE_STATE_CHANGED.event_type(), &gone),
        dispute_event("e5", d::DISPUTE_DELETED.event_type(), &gone),
    ];
    deliver_kpi_facts(&h, &dispute_events).await;

    let (start_month, end_month) = november();
    let all = kpis(
        &h,
        QueryKpisRequest {
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.rows.len(), 1, "one row for everything");
    assert_eq!(all.rows[0].values, all.totals);
    let totals = &all.totals;
    assert_eq!(totals.len(), 8, "every KPI when none is named");
    let frt = value(totals, KpiKind::FirstResponseTime);
    assert_eq!(frt.sample_count, 2);
    // 1 h and 3 h.
    assert_eq!(
        (
            secs(&stats(frt).mean),
            secs(&stats(frt).median),
            secs(&stats(frt).max)
        ),
        (2 * 3600, 3600, 3 * 3600)
    );
    let ttr = value(totals, KpiKind::TimeToResolve);
    // A: created at 0, last resolved at 9 h; B: created at 1 h, resolved at
    // 5 h.
    assert_eq!(ttr.sample_count, 2);
    assert_eq!(secs(&stats(ttr).max), 9 * 3600);
    assert_eq!(secs(&stats(ttr).median), 4 * 3600);
    assert_eq!(secs(&stats(ttr).mean), 13 * 1800);
    let reopen = ratio(value(totals, KpiKind::ReopenRate));
    assert_eq!(
        (reopen.numerator, reopen.denominator, reopen.percent),
        (1, 2, 50.0)
    );
    let backlog = value(totals, KpiKind::BacklogAge);
    assert_eq!(backlog.sample_count, 1, "only the case still open");
    let now = h.clock.now();
    assert_eq!(
        secs(&stats(backlog).max),
        (now - open_since).as_secs(),
        "its age now, the month not being over; A resolved at 9 h is not in it"
    );
    let sla = value(totals, KpiKind::SlaCompliance);
    assert_eq!(sla.sample_count, 0, "no SLA policy, no clock");
    let cycle = value(totals, KpiKind::DisputeCycleTime);
    assert_eq!(
        (cycle.sample_count, secs(&stats(cycle).mean)),
        (1, 48 * 3600)
    );
    let credits = match value(totals, KpiKind::CreditsGranted)
        .value
        .as_ref()
        .unwrap()
    {
        kpi_value::Value::MoneyTotals(m) => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(credits.count, 2, "the deleted dispute's credit is gone");
    assert_eq!(
        credits
            .totals
            .iter()
            .map(|m| (m.currency_code.as_str(), m.minor_units))
            .collect::<Vec<_>>(),
        vec![("EUR", 500), ("USD", 12_345)],
        "never converted"
    );
    let availability = value(totals, KpiKind::AgentAvailability);
    assert_eq!(availability.sample_count, 0);
    assert!(!availability.meets_target);
    assert_eq!(
        availability.target.as_ref().unwrap().threshold,
        Some(kpi_target::Threshold::MinPercent(75.0)),
        "the default target"
    );

    // By account: Globex has only its open case, disputes are Acme's; a
    // filter on the case type leaves the disputes out (they have none).
    let by_account = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![KpiKind::BacklogAge as i32, KpiKind::DisputeCycleTime as i32],
            group_by: vec![Dimension::Account as i32],
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    let accounts: Vec<(String, i64, i64)> = by_account
        .rows
        .iter()
        .map(|r| {
            (
                r.group.as_ref().unwrap().account.clone(),
                r.values[0].sample_count,
                r.values[1].sample_count,
            )
        })
        .collect();
    assert_eq!(
        accounts,
        vec![
            ("accounts/acme".to_string(), 0, 1),
            ("accounts/globex".to_string(), 1, 0)
        ]
    );
    let inquiries = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![
                KpiKind::DisputeCycleTime as i32,
                KpiKind::TimeToResolve as i32,
            ],
            filter: "case_type = INQUIRY".into(),
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(inquiries.totals[0].sample_count, 0);
    assert_eq!(inquiries.totals[1].sample_count, 2);
    // October holds none of it.
    let october = Some(Month {
        year: 2026,
        month: 10,
    });
    let before = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![KpiKind::FirstResponseTime as i32],
            start_month: october,
            end_month: october,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(before.totals[0].sample_count, 0);

    // A target: first responses within 90 minutes on average is missed.
    h.svc
        .update_kpi_settings(h.req(
            &cem(),
            UpdateKpiSettingsRequest {
                kpi_settings: Some(KpiSettings {
                    name: "kpiSettings".into(),
                    targets: vec![
                        KpiTarget {
                            kind: KpiKind::FirstResponseTime as i32,
                            threshold: Some(kpi_target::Threshold::MaxDuration(Duration {
                                seconds: 5400,
                                nanos: 0,
                            })),
                        },
                        KpiTarget {
                            kind: KpiKind::ReopenRate as i32,
                            threshold: Some(kpi_target::Threshold::MaxPercent(50.0)),
                        },
                    ],
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["targets".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let judged = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![
                KpiKind::FirstResponseTime as i32,
                KpiKind::ReopenRate as i32,
            ],
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    assert!(!judged.totals[0].meets_target, "a 2 h mean misses 90 min");
    assert!(judged.totals[1].meets_target, "50% is at most 50%");

    // Bad input is named; a client sees no KPI.
    let bad = |req: QueryKpisRequest| {
        let svc = h.svc.clone();
        let r = h.req(&cem(), req);
        async move { svc.query_kpis(r).await.unwrap_err() }
    };
    let unknown = bad(QueryKpisRequest {
        kinds: vec![KpiKind::ReopenRate as i32, 99],
        start_month,
        end_month,
        ..Default::default()
    })
    .await;
    assert_eq!(violations(&unknown), vec!["kinds[1]"]);
    let backwards = bad(QueryKpisRequest {
        start_month,
        end_month: october,
        ..Default::default()
    })
    .await;
    assert_eq!(violations(&backwards), vec!["end_month"]);
    let no_group = bad(QueryKpisRequest {
        group_by: vec![0],
        start_month,
        end_month,
        ..Default::default()
    })
    .await;
    assert_eq!(violations(&no_group), vec!["group_by[0]"]);
    let bad_filter = bad(QueryKpisRequest {
        filter: "mood = \"happy\"".into(),
        start_month,
        end_month,
        ..Default::default()
    })
    .await;
    assert_eq!(bad_filter.code(), Code::InvalidArgument);
    let portal = h
        .svc
        .query_kpis(h.req(
            &client("acme"),
            QueryKpisRequest {
                start_month,
                end_month,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(portal.code(), Code::PermissionDenied);
}

fn interval(
    agent: &str,
    kind: availability_interval::Kind,
    from: jiff::Timestamp,
    hours: f64,
    external_id: &str,
) -> CreateAvailabilityIntervalRequest {
    CreateAvailabilityIntervalRequest {
        availability_interval: Some(AvailabilityInterval {
            staff_member: format!("staff/{agent}"),
            kind: kind as i32,
            start_time: ts(from),
            end_time: ts(from + SignedDuration::from_secs_f64(hours * 3600.0)),
            source: "incontact".into(),
            external_id: external_id.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn intervals(h: &Harness, filter: &str) -> Vec<AvailabilityInterval> {
    h.svc
        .list_availability_intervals(h.req(
            &cem(),
            ListAvailabilityIntervalsRequest {
                filter: filter.into(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .availability_intervals
}

/// The KPI targets (75% availability by default) are checked and changed
/// by managers; availability intervals are ingested in atomic, idempotent
/// batches, replaced by their external id, listed, deleted, and give each
/// agent's share of scheduled time available.
async fn kpi_targets_and_agent_availability(h: Harness) {
    let settings = h
        .svc
        .get_kpi_settings(h.req(
            &zeki(),
            GetKpiSettingsRequest {
                name: "kpiSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        settings.targets,
        vec![KpiTarget {
            kind: KpiKind::AgentAvailability as i32,
            threshold: Some(kpi_target::Threshold::MinPercent(75.0)),
        }]
    );
    let update = |targets: Vec<KpiTarget>, etag: &str| UpdateKpiSettingsRequest {
        kpi_settings: Some(KpiSettings {
            name: "kpiSettings".into(),
            targets,
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["targets".into()],
        }),
    };
    use kpi_target::Threshold;
    let target = |kind: KpiKind, t: Threshold| KpiTarget {
        kind: kind as i32,
        threshold: Some(t),
    };
    let bad = h
        .svc
        .update_kpi_settings(h.req(
            &cem(),
            update(
                vec![
                    target(KpiKind::AgentAvailability, Threshold::MinPercent(120.0)),
                    target(KpiKind::CreditsGranted, Threshold::MinPercent(10.0)),
                    target(KpiKind::TimeToResolve, Threshold::MinPercent(10.0)),
                    target(KpiKind::AgentAvailability, Threshold::MinPercent(80.0)),
                    KpiTarget {
                        kind: KpiKind::BacklogAge as i32,
                        threshold: None,
                    },
                ],
                "",
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&bad),
        vec![
            "kpi_settings.targets[0].min_percent",
            "kpi_settings.targets[1].kind",
            "kpi_settings.targets[2].threshold",
            "kpi_settings.targets[3].kind",
            "kpi_settings.targets[4].threshold",
        ]
    );
    let agent = h
        .svc
        .update_kpi_settings(h.req(
            &zeki(),
            update(
                vec![target(
                    KpiKind::AgentAvailability,
                    Threshold::MinPercent(80.0),
                )],
                "",
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(agent.code(), Code::PermissionDenied);
    let changed = h
        .svc
        .update_kpi_settings(h.req(
            &cem(),
            update(
                vec![target(
                    KpiKind::AgentAvailability,
                    Threshold::MinPercent(80.0),
                )],
                &settings.etag,
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(changed.etag, settings.etag);
    let stale = h
        .svc
        .update_kpi_settings(h.req(&cem(), update(Vec::new(), &settings.etag)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // Monday 2 November: Ali is scheduled 09-17 and available 09-12, on a
    // call 12-13, on a break 13-14, available 14-16 (6 h of 8, 75%); Veli
    // scheduled 8 h, available 7 h (87.5%), one hour of it before his shift.
    use availability_interval::Kind as K;
    let day = h.clock.now();
    let hour = |n: i64| day + SignedDuration::from_hours(n);
    let batch = |requests: Vec<CreateAvailabilityIntervalRequest>, id: &str| {
        BatchCreateAvailabilityIntervalsRequest {
            requests,
            request_id: id.into(),
        }
    };
    let first = vec![
        interval("ali", K::Scheduled, hour(0), 8.0, "a1"),
        interval("ali", K::Available, hour(0), 3.0, "a2"),
        interval("ali", K::OnCall, hour(3), 1.0, "a3"),
        interval("ali", K::Break, hour(4), 1.0, "a4"),
        interval("ali", K::Available, hour(5), 1.0, "a5"),
        interval("veli", K::Scheduled, hour(0), 8.0, "v1"),
        interval("veli", K::Available, hour(-1), 8.0, ""),
    ];
    // One bad interval refuses the batch, named by its place.
    let mut broken = first.clone();
    broken[4].availability_interval.as_mut().unwrap().end_time = ts(hour(4));
    broken[6]
        .availability_interval
        .as_mut()
        .unwrap()
        .staff_member = "ali".into();
    let refused = h
        .svc
        .batch_create_availability_intervals(h.req(&cem(), batch(broken, "b0")))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&refused),
        vec![
            "requests[4].availability_interval.end_time",
            "requests[6].availability_interval.staff_member"
        ]
    );
    assert!(intervals(&h, "").await.is_empty(), "all or nothing");
    let made = h
        .svc
        .batch_create_availability_intervals(h.req(&cem(), batch(first.clone(), "b1")))
        .await
        .unwrap()
        .into_inner()
        .availability_intervals;
    assert_eq!(made.len(), 7);
    let again = h
        .svc
        .batch_create_availability_intervals(h.req(&cem(), batch(first.clone(), "b1")))
        .await
        .unwrap()
        .into_inner()
        .availability_intervals;
    assert_eq!(made, again, "a retried batch is stored once");
    assert_eq!(intervals(&h, "").await.len(), 7);
    // Re-ingesting a5 with its corrected end (available 14-16) replaces it.
    let corrected = h
        .svc
        .create_availability_interval(
            h.req(&cem(), interval("ali", K::Available, hour(5), 2.0, "a5")),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(corrected.name, made[4].name, "the same interval");
    assert_eq!(corrected.end_time, ts(hour(7)));
    let ali = intervals(&h, "staff_member = \"staff/ali\"").await;
    assert_eq!(ali.len(), 5);
    assert!(
        ali.windows(2)
            .all(|w| at(w[0].start_time) <= at(w[1].start_time)),
        "ordered by start time"
    );
    let agent = h
        .svc
        .create_availability_interval(
            h.req(&zeki(), interval("zeki", K::Available, hour(0), 1.0, "")),
        )
        .await
        .unwrap_err();
    assert_eq!(agent.code(), Code::PermissionDenied);

    let (start_month, end_month) = november();
    let by_agent = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![KpiKind::AgentAvailability as i32],
            group_by: vec![Dimension::Agent as i32],
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    let shares: Vec<(String, i64, i64, f64, bool)> = by_agent
        .rows
        .iter()
        .map(|r| {
            let v = &r.values[0];
            let share = ratio(v);
            (
                r.group.as_ref().unwrap().agent.clone(),
                share.numerator,
                share.denominator,
                share.percent,
                v.meets_target,
            )
        })
        .collect();
    assert_eq!(
        shares,
        vec![
            ("staff/ali".to_string(), 6 * 3600, 8 * 3600, 75.0, false),
            ("staff/veli".to_string(), 7 * 3600, 8 * 3600, 87.5, true),
        ],
        "seconds available within the schedule, against the 80% bar"
    );
    let total = ratio(&by_agent.totals[0]);
    assert_eq!((total.numerator, total.denominator), (13 * 3600, 16 * 3600));
    // One row a page, then the next.
    let page = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![KpiKind::AgentAvailability as i32],
            group_by: vec![Dimension::Agent as i32],
            start_month,
            end_month,
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.rows.len(), 1);
    let next = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![KpiKind::AgentAvailability as i32],
            group_by: vec![Dimension::Agent as i32],
            start_month,
            end_month,
            page_size: 1,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(next.rows[0].group.as_ref().unwrap().agent, "staff/veli");
    assert!(next.next_page_token.is_empty());
    // Availability has no account: a filter on one leaves it out.
    let acme = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![KpiKind::AgentAvailability as i32],
            filter: "account = \"accounts/acme\"".into(),
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ratio(&acme.totals[0]).denominator, 0);

    // An interval ingested in error goes; a second delete finds nothing.
    let delete = |name: &str| DeleteAvailabilityIntervalRequest {
        name: name.into(),
        ..Default::default()
    };
    h.svc
        .delete_availability_interval(h.req(&cem(), delete(&made[6].name)))
        .await
        .unwrap();
    let gone = h
        .svc
        .delete_availability_interval(h.req(&cem(), delete(&made[6].name)))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(
        intervals(&h, "staff_member = \"staff/veli\"").await.len(),
        1
    );
}

/// A case under an SLA policy counts its first response and its resolution
/// in business time of the policy's calendar, read off its stopped client
/// clocks, and each stopped clock once in SLA compliance.
async fn kpis_count_business_time_from_the_cases_sla_clocks(h: Harness) {
    let c = &h.cases;
    let day = |weekday: cases::Weekday| cases::WorkingPeriod {
        weekday: weekday as i32,
        start_minute: 9 * 60,
        end_minute: 17 * 60,
    };
    use cases::Weekday as W;
    c.svc
        .create_calendar(
            c.req(
                &admin(),
                cases::CreateCalendarRequest {
                    calendar: Some(cases::Calendar {
                        display_name: "Istanbul office".into(),
                        time_zone: Some(concierge_proto::types::TimeZone { id: "UTC".into() }),
                        working_periods: [
                            W::Monday,
                            W::Tuesday,
                            W::Wednesday,
                            W::Thursday,
                            W::Friday,
                        ]
                        .into_iter()
                        .map(day)
                        .collect(),
                        ..Default::default()
                    }),
                    calendar_id: "office".into(),
                    request_id: String::new(),
                },
            ),
        )
        .await
        .unwrap();
    let target = |key: &str, hours: i64| cases::SlaTarget {
        key: key.into(),
        display_name: key.into(),
        duration: Some(Duration {
            seconds: hours * 3600,
            nanos: 0,
        }),
        basis: 0,
    };
    c.svc
        .create_sla_policy(c.req(
            &admin(),
            cases::CreateSlaPolicyRequest {
                sla_policy: Some(cases::SlaPolicy {
                    display_name: "Inquiries".into(),
                    calendar: "calendars/office".into(),
                    first_response: Some(target("first_response", 4)),
                    overall_delivery: Some(target("resolve", 3)),
                    ..Default::default()
                }),
                sla_policy_id: "inquiries".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // Friday 6 November 16:00; answered Monday 10:00 (1 h + 1 h of business
    // time, met), resolved Monday 12:00 (1 h + 3 h, over the 3 h target).
    h.clock.set("2026-11-06T16:00:00Z".parse().unwrap());
    let case = open_case(&h, "acme", "ali", "Weekend question").await;
    assert_eq!(case.sla_policy, "slaPolicies/inquiries");
    h.clock.set("2026-11-09T10:00:00Z".parse().unwrap());
    c.svc
        .open_case(c.req(
            &zeki(),
            cases::OpenCaseRequest {
                name: case.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    h.clock.set("2026-11-09T12:00:00Z".parse().unwrap());
    c.svc
        .resolve_case(c.req(
            &zeki(),
            cases::ResolveCaseRequest {
                name: case.name.clone(),
                resolution: Some(cases::Resolution {
                    root_cause: "Answered".into(),
                    resolution_code: "FIXED".into(),
                    summary: "Explained".into(),
                    resolver: String::new(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    deliver_kpi_facts(&h, &[]).await;
    let (start_month, end_month) = november();
    let all = kpis(
        &h,
        QueryKpisRequest {
            kinds: vec![
                KpiKind::FirstResponseTime as i32,
                KpiKind::TimeToResolve as i32,
                KpiKind::SlaCompliance as i32,
            ],
            start_month,
            end_month,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(secs(&stats(&all.totals[0]).mean), 2 * 3600, "not 66 h");
    assert_eq!(secs(&stats(&all.totals[1]).mean), 4 * 3600, "not 68 h");
    let sla = ratio(&all.totals[2]);
    assert_eq!(
        (sla.numerator, sla.denominator, all.totals[2].sample_count),
        (1, 2, 2),
        "the first response met, the resolution breached"
    );
}

async fn generate(
    h: &Harness,
    who: &Principal,
    req: GenerateMonthlyReportRequest,
) -> Result<MonthlyReport, Status> {
    h.svc
        .generate_monthly_report(h.req(who, req))
        .await
        .map(|r| r.into_inner())
}

fn november_report(portfolio: &str) -> GenerateMonthlyReportRequest {
    GenerateMonthlyReportRequest {
        portfolio: portfolio.into(),
        month: Some(Month {
            year: 2026,
            month: 11,
        }),
        ..Default::default()
    }
}

fn delivery_states(r: &MonthlyReport) -> Vec<(String, report_delivery::State)> {
    r.deliveries
        .iter()
        .map(|d| {
            (
                d.email.clone(),
                report_delivery::State::try_from(d.state).unwrap(),
            )
        })
        .collect()
}

/// A manager's month at a glance: the portfolio's scores against the month
/// before and a year of trend, its clients least satisfied first, the KPIs
/// against their targets and the plans; as a page with charts (names
/// escaped) and as CSV; kept as generated, listed, e-mailed on demand and
/// by the monthly run on the first of the month.
async fn the_monthly_report_shows_the_month_and_goes_to_managers(h: Harness) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    let customers = &h._customers;
    customers
        .svc
        .update_account(customers.req(
            &admin(),
            concierge_proto::customers::UpdateAccountRequest {
                account: Some(concierge_proto::customers::Account {
                    name: "accounts/globex".into(),
                    display_name: "Globex <Holding> & Co".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap();
    deliver_account_events(&h).await;
    let csat = create_template(&h, "csat", SurveyKind::Csat15).await;
    let nps = create_template(&h, "nps", SurveyKind::Nps010).await;
    let a = open_case(&h, "acme", "ali", "Acme case").await;
    answered(&h, &csat.name, &a, &[Some(5), Some(1)]).await;
    let g = open_case(&h, "globex", "gul", "Globex case").await;
    answered(&h, &csat.name, &g, &[Some(5), Some(4)]).await;
    let g2 = open_case(&h, "globex", "gul", "Globex NPS case").await;
    answered(&h, &nps.name, &g2, &[Some(10), Some(8), Some(9)]).await;

    // Who may ask, and for what.
    let refused = generate(&h, &zeki(), november_report("staff/ayse"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "an agent");
    let refused = generate(&h, &client("acme"), november_report(""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "a client");
    for (req, field) in [
        (november_report("accounts/acme"), "portfolio"),
        (november_report("staff/nobody"), "portfolio"),
        (
            GenerateMonthlyReportRequest {
                month: Some(Month {
                    year: 2026,
                    month: 12,
                }),
                ..november_report("")
            },
            "month",
        ),
        (
            GenerateMonthlyReportRequest {
                month: Some(Month {
                    year: 2026,
                    month: 13,
                }),
                ..november_report("")
            },
            "month",
        ),
        (
            GenerateMonthlyReportRequest {
                month: None,
                ..november_report("")
            },
            "month",
        ),
        (
            GenerateMonthlyReportRequest {
                time_zone: Some(concierge_proto::types::TimeZone {
                    id: "Mars/Olympus".into(),
                }),
                ..november_report("")
            },
            "time_zone.id",
        ),
        (
            GenerateMonthlyReportRequest {
                recipients: vec!["boss@example.com".into()],
                ..november_report("staff/ayse")
            },
            "recipients",
        ),
        (
            GenerateMonthlyReportRequest {
                send: true,
                recipients: vec!["not an address".into()],
                ..november_report("staff/ayse")
            },
            "recipients[0]",
        ),
        (
            GenerateMonthlyReportRequest {
                send: true,
                ..november_report("")
            },
            "recipients",
        ),
    ] {
        let bad = generate(&h, &cem(), req).await.unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{field}: {bad:?}");
        assert_eq!(violations(&bad), vec![field.to_string()], "{bad:?}");
    }

    // Ayşe's portfolio: both clients.
    let once = GenerateMonthlyReportRequest {
        request_id: "ayse-november".into(),
        ..november_report("staff/ayse")
    };
    let report = generate(&h, &staff("ayse", Role::AccountManager), once.clone())
        .await
        .unwrap();
    let again = generate(&h, &staff("ayse", Role::AccountManager), once)
        .await
        .unwrap();
    assert_eq!(
        again.name, report.name,
        "a retried request makes one report"
    );
    assert_eq!(
        monthly_report::Trigger::try_from(report.trigger).unwrap(),
        monthly_report::Trigger::OnDemand
    );
    assert_eq!(report.portfolio_display_name, "ayse's portfolio");
    assert_eq!(report.generator, "oidc/ayse");
    let s = report.scores.unwrap();
    assert_eq!((s.csat_response_count, s.csat_percent), (4, 75.0));
    assert_eq!(s.nps_response_count, 3);
    assert!(
        (s.nps - 200.0 / 3.0).abs() < 1e-9,
        "2 promoters of 3: {}",
        s.nps
    );
    assert_eq!(report.previous_scores.unwrap().csat_response_count, 0);
    assert_eq!(report.score_trend.len(), 12, "a year of months");
    let first = report.score_trend[0].group.as_ref().unwrap().month.unwrap();
    assert_eq!((first.year, first.month), (2025, 12));
    assert_eq!(
        report.score_trend[11].scores.unwrap().csat_response_count,
        4
    );
    let accounts: Vec<(&str, Level)> = report
        .accounts
        .iter()
        .map(|a| {
            (
                a.account_display_name.as_str(),
                Level::try_from(a.level).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        accounts,
        vec![
            ("Acme Lojistik", Level::AtRisk),
            ("Globex <Holding> & Co", Level::Satisfied)
        ],
        "the detractor's client first"
    );
    assert_eq!(report.accounts[0].scores.unwrap().csat_percent, 50.0);
    assert_eq!(report.corrective_action_plans_opened, 1, "Ali's 1");
    let availability = report
        .kpis
        .iter()
        .find(|k| k.kind == KpiKind::AgentAvailability as i32)
        .expect("every KPI is in the report");
    assert!(availability.target.is_some(), "75 % by default");

    let html = &report.html_content;
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("ayse&#x27;s portfolio") || html.contains("ayse's portfolio"));
    assert_eq!(html.matches("<svg").count(), 3, "the trend and two spreads");
    assert!(html.contains("Globex &lt;Holding&gt; &amp; Co"), "escaped");
    assert!(!html.contains("<Holding>"));
    assert!(html.contains("Agent availability"));
    let csv = &report.csv_content;
    assert!(
        csv.starts_with("section,subject,measure,value")
            || csv.contains("\nscores,2026-11,csat_percent,75.00\n"),
        "{csv}"
    );
    assert!(csv.contains("scores,2026-11,csat_percent,75.00\n"), "{csv}");
    assert!(
        csv.contains("account,accounts/acme,level,at risk\n"),
        "{csv}"
    );
    assert!(
        csv.contains("account,accounts/globex,name,Globex <Holding> & Co\n"),
        "{csv}"
    );
    assert!(csv.contains("plans,corrective_action_plans,opened,1\n"));

    // The whole company, e-mailed to a named address.
    let company = generate(
        &h,
        &cem(),
        GenerateMonthlyReportRequest {
            send: true,
            recipients: vec!["board@example.com".into(), "staff/cem".into()],
            ..november_report("")
        },
    )
    .await
    .unwrap();
    assert_eq!(company.portfolio_display_name, "The whole company");
    assert_eq!(
        delivery_states(&company),
        vec![
            ("board@example.com".into(), report_delivery::State::Pending),
            ("cem@example.com".into(), report_delivery::State::Pending),
        ]
    );
    let before = h.mails().len();
    h.sweep().await;
    let mails = h.mails();
    let sent: Vec<&Mail> = mails[before..].iter().collect();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|m| m.subject == "Monthly report 2026-11: The whole company"),
        "{sent:?}"
    );
    assert!(
        sent[0].body.contains("CSAT %: 75.0 (4 answers)"),
        "{}",
        sent[0].body
    );
    assert_eq!(
        sent[0].attachments,
        vec![
            format!(
                "monthly-report-2026-11-{}.html",
                company.name.trim_start_matches("monthlyReports/")
            ),
            format!(
                "monthly-report-2026-11-{}.csv",
                company.name.trim_start_matches("monthlyReports/")
            ),
        ]
    );
    let got = h
        .svc
        .get_monthly_report(h.req(
            &zeki(),
            GetMonthlyReportRequest {
                name: company.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        delivery_states(&got),
        vec![
            ("board@example.com".into(), report_delivery::State::Sent),
            ("cem@example.com".into(), report_delivery::State::Sent),
        ]
    );
    assert!(got.html_content.contains("<svg"), "Get reads the page");

    // Ayşe's report sent again, to her and her manager by default.
    let resent = h
        .svc
        .send_monthly_report(h.req(
            &cem(),
            SendMonthlyReportRequest {
                name: report.name.clone(),
                request_id: "resend".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        delivery_states(&resent),
        vec![
            ("ayse@example.com".into(), report_delivery::State::Pending),
            ("cem@example.com".into(), report_delivery::State::Pending),
        ]
    );
    h.sweep().await;
    let to: Vec<String> = h.mails()[before + 2..]
        .iter()
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(to, vec!["ayse@example.com", "cem@example.com"]);
    let missing = h
        .svc
        .send_monthly_report(h.req(
            &cem(),
            SendMonthlyReportRequest {
                name: "monthlyReports/nope".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad = h
        .svc
        .send_monthly_report(h.req(
            &cem(),
            SendMonthlyReportRequest {
                name: report.name.clone(),
                recipients: vec!["staff/nobody".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), vec!["recipients[0]"], "{bad:?}");
    let refused = h
        .svc
        .send_monthly_report(h.req(
            &zeki(),
            SendMonthlyReportRequest {
                name: report.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "an agent");

    // Listed newest first, without the page; filtered by portfolio.
    let list = |filter: &str| {
        let h = &h;
        let filter = filter.to_string();
        async move {
            h.svc
                .list_monthly_reports(h.req(
                    &zeki(),
                    ListMonthlyReportsRequest {
                        filter,
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner().monthly_reports)
        }
    };
    let all = list("").await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec![company.name.as_str(), report.name.as_str()]
    );
    assert!(
        all.iter()
            .all(|r| r.html_content.is_empty() && r.csv_content.is_empty())
    );
    assert_eq!(list("portfolio = \"staff/ayse\"").await.unwrap().len(), 1);
    assert_eq!(
        list("month.month = 11 AND trigger = TRIGGER_SCHEDULED")
            .await
            .unwrap()
            .len(),
        0
    );
    let bad = list("colour = \"red\"").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let client_list = h
        .svc
        .list_monthly_reports(h.req(&client("acme"), ListMonthlyReportsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(client_list.code(), Code::PermissionDenied);

    // The first of December, 01:00 UTC: November's run, once.
    let mails_before = h.mails().len();
    h.clock.set("2026-12-01T01:00:00Z".parse().unwrap());
    h.sweep().await;
    h.sweep().await;
    let scheduled = list("trigger = TRIGGER_SCHEDULED").await.unwrap();
    let mut names: Vec<&str> = scheduled.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "monthlyReports/r202611-ayse",
            "monthlyReports/r202611-company"
        ]
    );
    assert!(scheduled.iter().all(|r| r.generator == "system/scheduler"));
    let ayse = scheduled
        .iter()
        .find(|r| r.portfolio == "staff/ayse")
        .unwrap();
    assert_eq!(ayse.scores.unwrap().csat_response_count, 4);
    let mails = h.mails();
    let to: Vec<&str> = mails[mails_before..]
        .iter()
        .map(|m| m.to.as_str())
        .collect();
    assert_eq!(
        to,
        vec!["ayse@example.com", "cem@example.com"],
        "the portfolio's report to its manager and theirs; the company's to nobody"
    );
    h.clock.set("2027-01-01T01:00:00Z".parse().unwrap());
    h.sweep().await;
    h.sweep().await;
    assert_eq!(
        list("month.month = 12").await.unwrap().len(),
        2,
        "December's run"
    );

    // A mail server that never answers: retried with growing waits, then
    // the delivery is marked failed and nothing more is tried.
    let offline = h
        .svc
        .clone()
        .with_mail(Arc::new(concierge_common::mail::Mailer::Off));
    let late = generate(
        &h,
        &cem(),
        GenerateMonthlyReportRequest {
            send: true,
            recipients: vec!["late@example.com".into()],
            ..november_report("")
        },
    )
    .await
    .unwrap();
    let mails_before = h.mails().len();
    for _ in 0..12 {
        offline.sweep("test", h.clock.now()).await.unwrap();
        h.clock.advance(SignedDuration::from_hours(1));
    }
    let failed = h
        .svc
        .get_monthly_report(h.req(
            &cem(),
            GetMonthlyReportRequest {
                name: late.name.clone(),
                view: MonthlyReportView::Basic as i32,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        delivery_states(&failed),
        vec![("late@example.com".into(), report_delivery::State::Failed)]
    );
    assert!(
        failed.deliveries[0].error.contains("10 attempts"),
        "{:?}",
        failed.deliveries[0]
    );
    assert!(failed.html_content.is_empty(), "the BASIC view");
    h.sweep().await;
    assert_eq!(h.mails().len(), mails_before, "given up for good");

    // Sent again and again, a report stops at 200 recipients in all.
    for round in 0..9 {
        h.svc
            .send_monthly_report(
                h.req(
                    &cem(),
                    SendMonthlyReportRequest {
                        name: late.name.clone(),
                        recipients: (0..20)
                            .map(|i| format!("r{round}-{i}@example.com"))
                            .collect(),
                        ..Default::default()
                    },
                ),
            )
            .await
            .unwrap();
    }
    let full = h
        .svc
        .send_monthly_report(h.req(
            &cem(),
            SendMonthlyReportRequest {
                name: late.name.clone(),
                recipients: (0..20).map(|i| format!("more-{i}@example.com")).collect(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&full), vec!["recipients"], "{full:?}");
}

concierge_common::both_backends!(
    harness = Harness;
    a_resolved_case_is_surveyed_once_in_the_contacts_language,
    suppression_reopening_and_missing_addresses,
    response_links_cannot_be_forged_reused_or_stretched,
    templates_and_triggers_are_checked_and_guarded,
    a_survey_is_sent_by_hand_once,
    csat_restarting_mid_stream_surveys_each_case_once,
    events_and_columns_follow_the_contract,
    scores_follow_the_contracts_formulas,
    a_detractor_opens_a_corrective_action_plan_that_runs_late,
    corrective_action_plans_are_opened_by_hand,
    kpis_follow_cases_and_disputes,
    kpi_targets_and_agent_availability,
    kpis_count_business_time_from_the_cases_sla_clocks,
    the_monthly_report_shows_the_month_and_goes_to_managers,
);
