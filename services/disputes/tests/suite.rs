//! The disputes service through its gRPC trait, with signed principals as
//! the gateway delivers them, calling a real customers and cases service on
//! loopback; once on SQLite, once on PostgreSQL.

use concierge_cases::Cases;
use concierge_common::clock::{Clock as _, TestClock};
use concierge_common::kit::Peers;
use concierge_common::principal::{Principal, PrincipalCodec, Role};
use concierge_common::server::Running;
use concierge_common::testing::{self, Backend};
use concierge_customers::Customers;
use concierge_disputes::Disputes;
use concierge_proto::disputes::disputes_service_server::DisputesService;
use concierge_proto::disputes::*;
use concierge_proto::types::Money;
use prost_types::{Duration, FieldMask, Timestamp};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A disputes service on the backend under test, with the customers
/// service (acme, owned by ayse, with a 1,200.00 USD/month circuit; globex)
/// and the cases service it asks, both on SQLite behind loopback ports.
struct Harness {
    disputes: testing::Harness<Disputes>,
    cases: testing::Harness<Cases>,
    _servers: Vec<Running>,
    _customers: testing::Harness<Customers>,
}

impl std::ops::Deref for Harness {
    type Target = testing::Harness<Disputes>;
    fn deref(&self) -> &Self::Target {
        &self.disputes
    }
}

impl Harness {
    async fn new(backend: Backend, test: &str) -> Option<Self> {
        let codec = PrincipalCodec::new("disputes-test-secret".into());
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
        let disputes = testing::Harness::open(backend, test, codec, clock, peers).await?;
        Some(Self {
            disputes,
            cases,
            _servers: vec![customers_server, cases_server],
            _customers: customers,
        })
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

/// Ayse, acme's account manager, vets its disputes.
fn ayse() -> Principal {
    staff("ayse", Role::AccountManager)
}

/// Cem and Dan are managers: either approves a credit the other proposed.
fn cem() -> Principal {
    staff("cem", Role::Manager)
}

fn dan() -> Principal {
    staff("dan", Role::Manager)
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
        ("dan", StaffRole::Manager, ""),
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
    for id in ["acme", "globex"] {
        customers
            .svc
            .create_account(customers.req(
                &admin,
                CreateAccountRequest {
                    account: Some(Account {
                        display_name: id.into(),
                        tier: Tier::Enterprise as i32,
                        account_manager: "staff/ayse".into(),
                        time_zone: "America/Chicago".into(),
                        ..Default::default()
                    }),
                    account_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
        customers
            .svc
            .create_site(customers.req(
                &admin,
                CreateSiteRequest {
                    parent: format!("accounts/{id}"),
                    site: Some(Site {
                        display_name: "HQ".into(),
                        time_zone: "America/Chicago".into(),
                        ..Default::default()
                    }),
                    site_id: "hq".into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
        customers
            .svc
            .create_contact(customers.req(
                &admin,
                CreateContactRequest {
                    parent: format!("accounts/{id}"),
                    contact: Some(Contact {
                        display_name: format!("{id} delegate"),
                        email: format!("delegate@{id}.example"),
                        roles: vec![ContactRole::Billing as i32],
                        client_delegate: true,
                        ..Default::default()
                    }),
                    contact_id: "delegate".into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    customers
        .svc
        .create_inventory_item(customers.req(
            &admin,
            CreateInventoryItemRequest {
                parent: "accounts/acme/sites/hq".into(),
                inventory_item: Some(InventoryItem {
                    kind: InventoryKind::Data as i32,
                    product: "DIA 10 Mb".into(),
                    role: InventoryRole::Primary as i32,
                    state: inventory_item::State::Active as i32,
                    mrc: Some(Money {
                        currency_code: "USD".into(),
                        minor_units: 120_000,
                    }),
                    ..Default::default()
                }),
                inventory_item_id: "dia".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "USD".into(),
        minor_units: minor,
    })
}

fn date(year: i32, month: i32, day: i32) -> Option<CalendarDate> {
    Some(CalendarDate { year, month, day })
}

fn november() -> Option<BillingPeriod> {
    Some(BillingPeriod {
        start_date: date(2026, 11, 1),
        end_date: date(2026, 11, 30),
    })
}

/// The DIA circuit's November charge, `disputed` of it disputed.
fn line(disputed: i64) -> DisputeLine {
    DisputeLine {
        charge_description: "DIA 10 Mb - Chicago HQ".into(),
        inventory_item: "accounts/acme/sites/hq/inventoryItems/dia".into(),
        billed_amount: usd(300_000),
        disputed_amount: usd(disputed),
        service_period: november(),
        reason: DisputeReason::Outage as i32,
        ..Default::default()
    }
}

fn claim(account: &str, disputed: i64) -> Dispute {
    Dispute {
        account: format!("accounts/{account}"),
        invoice_number: "INV-2026-11-0042".into(),
        invoice_period: november(),
        description: "The circuit was down for most of a day".into(),
        lines: vec![line(disputed)],
        contact: format!("accounts/{account}/contacts/delegate"),
        ..Default::default()
    }
}

fn field_violations(status: &Status) -> Vec<String> {
    let mut v: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn ts(s: &str) -> Timestamp {
    concierge_common::clock::to_proto(s.parse().unwrap())
}

fn advance(h: &Harness, by: jiff::SignedDuration) {
    h.clock.advance(by);
}

async fn create(h: &Harness, p: &Principal, d: Dispute) -> Result<Dispute, Status> {
    h.svc
        .create_dispute(h.req(
            p,
            CreateDisputeRequest {
                dispute: Some(d),
                dispute_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn get(h: &Harness, p: &Principal, name: &str) -> Result<Dispute, Status> {
    h.svc
        .get_dispute(h.req(p, GetDisputeRequest { name: name.into() }))
        .await
        .map(|r| r.into_inner())
}

async fn history(h: &Harness, name: &str) -> Vec<DisputeHistoryEntry> {
    h.svc
        .list_dispute_history_entries(h.req(
            &ayse(),
            ListDisputeHistoryEntriesRequest {
                parent: name.into(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .dispute_history_entries
}

/// Every custom method of the life cycle, called with arguments that are
/// right in themselves, so that only the dispute's state decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Submit,
    StartVetting,
    RequestInformation,
    ProvideInformation,
    ProposeWhole,
    ProposePart,
    ApproveCredit,
    RejectCredit,
    Deny,
    IssueCredit,
    PublishPosition,
    ConfirmOutcome,
    RejectOutcome,
    Close,
}

const ACTS: [Act; 14] = [
    Act::Submit,
    Act::StartVetting,
    Act::RequestInformation,
    Act::ProvideInformation,
    Act::ProposeWhole,
    Act::ProposePart,
    Act::ApproveCredit,
    Act::RejectCredit,
    Act::Deny,
    Act::IssueCredit,
    Act::PublishPosition,
    Act::ConfirmOutcome,
    Act::RejectOutcome,
    Act::Close,
];

/// Takes `act` on `d` as the staff member who would: Ayse vets and
/// proposes, Dan decides on her proposals; the client's answers are
/// recorded by Ayse from its delegate.
async fn act(h: &Harness, a: Act, d: &Dispute) -> Result<Dispute, Status> {
    let name = d.name.clone();
    let svc = &h.svc;
    let contact = format!("{}/contacts/delegate", d.account);
    let approved = d.approved_credit.clone();
    let r = match a {
        Act::Submit => {
            svc.submit_dispute(h.req(
                &ayse(),
                SubmitDisputeRequest {
                    name,
                    ..Default::default()
                },
            ))
            .await
        }
        Act::StartVetting => {
            svc.start_dispute_vetting(h.req(
                &ayse(),
                StartDisputeVettingRequest {
                    name,
                    ..Default::default()
                },
            ))
            .await
        }
        Act::RequestInformation => {
            svc.request_dispute_information(h.req(
                &ayse(),
                RequestDisputeInformationRequest {
                    name,
                    question: "Which hours was the circuit down?".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::ProvideInformation => {
            svc.provide_dispute_information(h.req(
                &client("acme"),
                ProvideDisputeInformationRequest {
                    name,
                    answer: "From 08:30 to 16:00".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::ProposeWhole | Act::ProposePart => {
            let (method, inputs) = if a == Act::ProposeWhole {
                (CreditMethod::Full, None)
            } else {
                (
                    CreditMethod::Manual,
                    Some(CreditInputs {
                        manual_amount: usd(5_000),
                        manual_reason: "half a day of the month's charge".into(),
                        ..Default::default()
                    }),
                )
            };
            svc.propose_credit(h.req(
                &ayse(),
                ProposeCreditRequest {
                    name,
                    lines: vec![LineCreditInput {
                        line_id: "1".into(),
                        method: method as i32,
                        inputs,
                    }],
                    reason: "outage confirmed".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::ApproveCredit => {
            svc.approve_credit(h.req(
                &dan(),
                ApproveCreditRequest {
                    name,
                    ..Default::default()
                },
            ))
            .await
        }
        Act::RejectCredit => {
            svc.reject_credit(h.req(
                &dan(),
                RejectCreditRequest {
                    name,
                    comment: "take the SLA tier instead".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::Deny => {
            svc.deny_dispute(h.req(
                &ayse(),
                DenyDisputeRequest {
                    name,
                    reason: "the outage was on the client's side".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::IssueCredit => {
            svc.issue_credit(h.req(
                &ayse(),
                IssueCreditRequest {
                    name,
                    credit_issue: Some(CreditIssue {
                        credit_reference: "CM-1001".into(),
                        amount: approved.or(usd(20_000)),
                        invoice_number: "INV-2026-12-0007".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::PublishPosition => {
            svc.publish_position(h.req(
                &ayse(),
                PublishPositionRequest {
                    name,
                    message: "We credit the outage in full on your next invoice.".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::ConfirmOutcome => {
            svc.confirm_outcome(h.req(
                &ayse(),
                ConfirmOutcomeRequest {
                    name,
                    contact,
                    comment: "confirmed by phone".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::RejectOutcome => {
            svc.reject_outcome(h.req(
                &ayse(),
                RejectOutcomeRequest {
                    name,
                    contact,
                    comment: "the outage was longer".into(),
                    ..Default::default()
                },
            ))
            .await
        }
        Act::Close => {
            svc.close_dispute(h.req(
                &ayse(),
                CloseDisputeRequest {
                    name,
                    ..Default::default()
                },
            ))
            .await
        }
    };
    r.map(|r| r.into_inner())
}

/// Where a dispute can stand, the pending approval counted as its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Draft,
    Submitted,
    Vetting,
    ApprovalPending,
    InformationRequested,
    Approved,
    PartiallyApproved,
    Denied,
    CreditIssued,
    ClientConfirmed,
    Closed,
}

/// A new dispute of acme's, walked to `at` (with the position published
/// once it is decided, so that only the state decides what the client may
/// answer).
async fn dispute_at(h: &Harness, at: At) -> Dispute {
    // 2,000.00 disputed is above the 1,000.00 USD threshold; 200.00 is not.
    let disputed = if at == At::ApprovalPending {
        200_000
    } else {
        20_000
    };
    let mut d = create(h, &client("acme"), claim("acme", disputed))
        .await
        .unwrap();
    let path: &[Act] = match at {
        At::Draft => &[],
        At::Submitted => &[Act::Submit],
        At::Vetting => &[Act::Submit, Act::StartVetting],
        At::ApprovalPending => &[Act::Submit, Act::StartVetting, Act::ProposeWhole],
        At::InformationRequested => &[Act::Submit, Act::StartVetting, Act::RequestInformation],
        At::Approved => &[
            Act::Submit,
            Act::StartVetting,
            Act::ProposeWhole,
            Act::PublishPosition,
        ],
        At::PartiallyApproved => &[
            Act::Submit,
            Act::StartVetting,
            Act::ProposePart,
            Act::PublishPosition,
        ],
        At::Denied => &[
            Act::Submit,
            Act::StartVetting,
            Act::Deny,
            Act::PublishPosition,
        ],
        At::CreditIssued => &[
            Act::Submit,
            Act::StartVetting,
            Act::ProposeWhole,
            Act::IssueCredit,
            Act::PublishPosition,
        ],
        At::ClientConfirmed => &[
            Act::Submit,
            Act::StartVetting,
            Act::ProposeWhole,
            Act::IssueCredit,
            Act::PublishPosition,
            Act::ConfirmOutcome,
        ],
        At::Closed => &[
            Act::Submit,
            Act::StartVetting,
            Act::ProposeWhole,
            Act::IssueCredit,
            Act::PublishPosition,
            Act::ConfirmOutcome,
            Act::Close,
        ],
    };
    for a in path {
        d = act(h, *a, &d)
            .await
            .unwrap_or_else(|e| panic!("walking to {at:?}, {a:?}: {e:?}"));
    }
    d
}

/// The contract's transition table, from DisputesService's comment: where
/// each act takes a dispute standing `at`, or None when it is refused.
fn table(at: At, a: Act) -> Option<dispute::State> {
    use dispute::State as S;
    let decided = matches!(
        at,
        At::Submitted
            | At::Vetting
            | At::ApprovalPending
            | At::InformationRequested
            | At::Approved
            | At::PartiallyApproved
            | At::Denied
            | At::CreditIssued
            | At::ClientConfirmed
    );
    let stays = match at {
        At::Draft => S::Draft,
        At::Submitted => S::Submitted,
        At::Vetting | At::ApprovalPending => S::Vetting,
        At::InformationRequested => S::InformationRequested,
        At::Approved => S::Approved,
        At::PartiallyApproved => S::PartiallyApproved,
        At::Denied => S::Denied,
        At::CreditIssued => S::CreditIssued,
        At::ClientConfirmed => S::ClientConfirmed,
        At::Closed => S::Closed,
    };
    match (at, a) {
        (At::Draft, Act::Submit) => Some(S::Submitted),
        (At::Submitted, Act::StartVetting) => Some(S::Vetting),
        (At::Vetting, Act::RequestInformation) => Some(S::InformationRequested),
        (At::InformationRequested, Act::ProvideInformation) => Some(S::Vetting),
        (At::Vetting, Act::ProposeWhole) => Some(S::Approved),
        (At::Vetting, Act::ProposePart) => Some(S::PartiallyApproved),
        (At::ApprovalPending, Act::ApproveCredit) => Some(S::Approved),
        (At::ApprovalPending, Act::RejectCredit) => Some(S::Vetting),
        (At::Vetting, Act::Deny) => Some(S::Denied),
        (At::Approved | At::PartiallyApproved, Act::IssueCredit) => Some(S::CreditIssued),
        (_, Act::PublishPosition) if decided => Some(stays),
        (At::CreditIssued | At::Denied, Act::ConfirmOutcome) => Some(S::ClientConfirmed),
        (
            At::Approved | At::PartiallyApproved | At::CreditIssued | At::Denied,
            Act::RejectOutcome,
        ) => Some(S::Vetting),
        (At::ClientConfirmed, Act::Close) => Some(S::Closed),
        _ => None,
    }
}

/// Every method from every state: what the table allows moves the dispute
/// where the table says and adds one history entry; anything else is
/// FAILED_PRECONDITION naming the dispute and changes nothing.
async fn every_transition_follows_the_contract_table(h: Harness) {
    let all = [
        At::Draft,
        At::Submitted,
        At::Vetting,
        At::ApprovalPending,
        At::InformationRequested,
        At::Approved,
        At::PartiallyApproved,
        At::Denied,
        At::CreditIssued,
        At::ClientConfirmed,
        At::Closed,
    ];
    let mut allowed = 0;
    for at in all {
        let standing = dispute_at(&h, at).await;
        let entries = history(&h, &standing.name).await.len();
        for a in ACTS {
            match table(at, a) {
                Some(to) => {
                    // A fresh dispute each time: the act moves it.
                    let d = dispute_at(&h, at).await;
                    let before = history(&h, &d.name).await.len();
                    let after = act(&h, a, &d)
                        .await
                        .unwrap_or_else(|e| panic!("{a:?} at {at:?}: {e:?}"));
                    assert_eq!(after.state, to as i32, "{a:?} at {at:?}");
                    assert_eq!(
                        history(&h, &d.name).await.len(),
                        before + 1,
                        "{a:?} at {at:?} is recorded"
                    );
                    allowed += 1;
                }
                None => {
                    let err = act(&h, a, &standing)
                        .await
                        .expect_err(&format!("{a:?} at {at:?} is not in the table"));
                    assert_eq!(
                        err.code(),
                        Code::FailedPrecondition,
                        "{a:?} at {at:?}: {err:?}"
                    );
                    let info = err.get_error_details().precondition_failure().cloned();
                    assert_eq!(
                        info.map(|p| p.violations[0].subject.clone()),
                        Some(standing.name.clone()),
                        "{a:?} at {at:?} names the dispute"
                    );
                    let now = get(&h, &ayse(), &standing.name).await.unwrap();
                    assert_eq!(now.etag, standing.etag, "{a:?} at {at:?} changed nothing");
                }
            }
        }
        assert_eq!(
            history(&h, &standing.name).await.len(),
            entries,
            "refusals at {at:?} write no history"
        );
    }
    // Counted from the table: 1 + 2 + 5 + 3 + 2 + 3 + 3 + 3 + 3 + 2 + 0.
    assert_eq!(allowed, 27);
}

/// A client files its claim; the account manager vets it and proposes a
/// credit under the threshold (approved at once); billing issues it; the
/// client reads the position and confirms; the dispute closes. Every step
/// is in the history, who, when, from, to and why.
async fn a_claim_is_vetted_credited_and_confirmed_by_the_client(h: Harness) {
    let acme = client("acme");
    let d = create(&h, &acme, claim("acme", 20_000)).await.unwrap();
    assert_eq!(d.state, dispute::State::Draft as i32);
    assert_eq!(
        d.account_manager, "staff/ayse",
        "from the customers service"
    );
    assert_eq!(d.creator, "apiKeys/acme-portal");
    assert_eq!(d.lines[0].id, "1", "generated");
    assert_eq!(
        (d.total_billed.clone(), d.total_disputed.clone()),
        (usd(300_000), usd(20_000))
    );

    let d = h
        .svc
        .submit_dispute(h.req(
            &acme,
            SubmitDisputeRequest {
                name: d.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.state, dispute::State::Submitted as i32);
    assert_eq!(
        d.vetting_due_time,
        Some(ts("2026-11-07T09:00:00Z")),
        "five days by default, wall-clock until a calendar is set"
    );
    advance(&h, jiff::SignedDuration::from_hours(2));
    let d = act(&h, Act::StartVetting, &d).await.unwrap();
    assert_eq!(d.owner, "staff/ayse", "the caller vets it when nobody does");
    let d = act(&h, Act::ProposeWhole, &d).await.unwrap();
    assert_eq!(d.state, dispute::State::Approved as i32);
    let approval = d.approval.clone().unwrap();
    assert_eq!(approval.state, credit_approval::State::NotRequired as i32);
    assert_eq!(approval.threshold, usd(100_000));
    assert_eq!(d.approved_credit, usd(20_000));
    assert_eq!(d.lines[0].approved_amount, usd(20_000));
    let proposal = d.credit_proposal.clone().unwrap();
    assert_eq!(proposal.proposer, "staff/ayse");
    assert_eq!(
        proposal.calculations[0].steps[0].description,
        "Whole disputed amount"
    );

    // The client reads its dispute without the company's working.
    let seen = get(&h, &acme, &d.name).await.unwrap();
    assert_eq!((seen.credit_proposal, seen.approval), (None, None));
    assert_eq!(seen.approved_credit, usd(20_000));

    // The client answers only once the company has told it its position.
    let early = h
        .svc
        .confirm_outcome(h.req(
            &acme,
            ConfirmOutcomeRequest {
                name: d.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    let d = act(&h, Act::IssueCredit, &d).await.unwrap();
    assert_eq!(d.state, dispute::State::CreditIssued as i32);
    assert_eq!(d.credit_issue.clone().unwrap().issuer, "staff/ayse");
    let early = h
        .svc
        .confirm_outcome(h.req(
            &acme,
            ConfirmOutcomeRequest {
                name: d.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&early), "POSITION_NOT_PUBLISHED");
    let d = act(&h, Act::PublishPosition, &d).await.unwrap();
    let position = d.position.clone().unwrap();
    assert_eq!(
        position.notified_contacts,
        ["accounts/acme/contacts/delegate"]
    );
    let d = h
        .svc
        .confirm_outcome(h.req(
            &acme,
            ConfirmOutcomeRequest {
                name: d.name.clone(),
                comment: "Thank you".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.state, dispute::State::ClientConfirmed as i32);
    let outcome = d.client_outcome.clone().unwrap();
    assert_eq!(
        (outcome.decision, outcome.responder.as_str()),
        (
            client_outcome::Decision::Confirmed as i32,
            "apiKeys/acme-portal"
        )
    );
    let d = act(&h, Act::Close, &d).await.unwrap();
    assert_eq!(d.state, dispute::State::Closed as i32);
    assert!(d.close_time.is_some());

    let entries = history(&h, &d.name).await;
    let steps: Vec<(&str, i32, i32, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.from_state,
                e.to_state,
                e.actor.as_str(),
            )
        })
        .collect();
    use dispute::State as S;
    assert_eq!(
        steps,
        [
            ("CreateDispute", 0, S::Draft as i32, "apiKeys/acme-portal"),
            (
                "SubmitDispute",
                S::Draft as i32,
                S::Submitted as i32,
                "apiKeys/acme-portal"
            ),
            (
                "StartDisputeVetting",
                S::Submitted as i32,
                S::Vetting as i32,
                "oidc/ayse"
            ),
            (
                "ProposeCredit",
                S::Vetting as i32,
                S::Approved as i32,
                "oidc/ayse"
            ),
            (
                "IssueCredit",
                S::Approved as i32,
                S::CreditIssued as i32,
                "oidc/ayse"
            ),
            (
                "PublishPosition",
                S::CreditIssued as i32,
                S::CreditIssued as i32,
                "oidc/ayse"
            ),
            (
                "ConfirmOutcome",
                S::CreditIssued as i32,
                S::ClientConfirmed as i32,
                "apiKeys/acme-portal"
            ),
            (
                "CloseDispute",
                S::ClientConfirmed as i32,
                S::Closed as i32,
                "oidc/ayse"
            ),
        ]
    );
    assert_eq!(entries[3].amount, usd(20_000), "the proposed credit");
    assert_eq!(entries[3].reason, "outage confirmed");
    assert!(
        entries.windows(2).all(|w| w[0].name < w[1].name),
        "sorted by name"
    );
    let one = h
        .svc
        .get_dispute_history_entry(h.req(
            &ayse(),
            GetDisputeHistoryEntryRequest {
                name: entries[4].name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one, entries[4]);

    let events: Vec<String> = h.events().await.into_iter().map(|e| e.r#type).collect();
    let count = |t: &str| events.iter().filter(|e| e.ends_with(t)).count();
    assert_eq!(count(".dispute_created"), 1);
    assert_eq!(count(".dispute_state_changed"), 6, "{events:?}");
    assert_eq!(count(".credit_proposed"), 1);
    assert_eq!(count(".credit_issued"), 1);
    assert_eq!(count(".dispute_position_published"), 1);

    // The public events carry what the client reads; the staff-only one
    // carries the working.
    use prost::Message as _;
    let all = h.events().await;
    let payload = |e: &concierge_proto::events::Event| {
        Dispute::decode(e.payload.as_ref().unwrap().value.as_slice()).unwrap()
    };
    let approved = all
        .iter()
        .find(|e| {
            e.r#type.ends_with(".dispute_state_changed")
                && payload(e).state == dispute::State::Approved as i32
        })
        .unwrap();
    assert_eq!(
        approved.visibility,
        concierge_proto::events::Visibility::Public as i32
    );
    assert_eq!(payload(approved).credit_proposal, None);
    assert_eq!(payload(approved).approved_credit, usd(20_000));
    let proposed = all
        .iter()
        .find(|e| e.r#type.ends_with(".credit_proposed"))
        .unwrap();
    assert_eq!(
        proposed.visibility,
        concierge_proto::events::Visibility::Internal as i32
    );
    assert!(payload(proposed).credit_proposal.is_some());
}

/// Above the threshold a proposal waits for a manager from the staff
/// directory who is not its proposer.
async fn a_credit_above_the_threshold_needs_a_second_managers_approval(h: Harness) {
    let d = dispute_at(&h, At::Vetting).await;
    let d2 = dispute_at(&h, At::ApprovalPending).await;
    assert_eq!(d2.state, dispute::State::Vetting as i32);
    assert_eq!(
        d2.approval.clone().unwrap().state,
        credit_approval::State::Pending as i32
    );
    assert_eq!(d2.approved_credit, None, "nothing approved yet");
    // Nor can it be proposed again or denied while it waits.
    let again = act(&h, Act::ProposeWhole, &d2).await.unwrap_err();
    assert_eq!(reason(&again), "APPROVAL_PENDING");
    let deny = act(&h, Act::Deny, &d2).await.unwrap_err();
    assert_eq!(reason(&deny), "APPROVAL_PENDING");

    let approve = |p: Principal| {
        let name = d2.name.clone();
        let h = &h;
        async move {
            h.svc
                .approve_credit(h.req(
                    &p,
                    ApproveCreditRequest {
                        name,
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    // Ayse is no manager; an admin key is nobody in the directory; a
    // manager who proposed cannot approve.
    assert_eq!(
        approve(ayse()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        approve(admin()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let by_cem = h
        .svc
        .propose_credit(h.req(
            &cem(),
            ProposeCreditRequest {
                name: d.name.clone(),
                lines: vec![LineCreditInput {
                    line_id: "1".into(),
                    method: CreditMethod::Manual as i32,
                    inputs: Some(CreditInputs {
                        manual_amount: usd(10_000),
                        manual_reason: "goodwill".into(),
                        ..Default::default()
                    }),
                }],
                reason: "goodwill".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_cem.state,
        dispute::State::PartiallyApproved as i32,
        "under the threshold"
    );
    let unchanged = get(&h, &ayse(), &d2.name).await.unwrap();
    assert_eq!(unchanged.etag, d2.etag, "refusals change nothing");

    let approved = approve(dan()).await.unwrap().into_inner();
    assert_eq!(approved.state, dispute::State::Approved as i32);
    let a = approved.approval.clone().unwrap();
    assert_eq!(
        (a.state, a.approver.as_str()),
        (credit_approval::State::Approved as i32, "staff/dan")
    );
    assert_eq!(approved.approved_credit, usd(200_000));
    let last = history(&h, &d2.name).await.pop().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.actor.as_str(),
            last.amount.clone()
        ),
        ("ApproveCredit", "oidc/dan", usd(200_000))
    );

    // A proposal Dan made himself waits for someone else.
    let mut d3 = create(&h, &client("acme"), claim("acme", 200_000))
        .await
        .unwrap();
    for a in [Act::Submit, Act::StartVetting] {
        d3 = act(&h, a, &d3).await.unwrap();
    }
    d3 = h
        .svc
        .propose_credit(h.req(
            &dan(),
            ProposeCreditRequest {
                name: d3.name.clone(),
                lines: vec![LineCreditInput {
                    line_id: "1".into(),
                    method: CreditMethod::Manual as i32,
                    inputs: Some(CreditInputs {
                        manual_amount: usd(150_000),
                        manual_reason: "a bigger goodwill credit".into(),
                        ..Default::default()
                    }),
                }],
                reason: "goodwill".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let own = h
        .svc
        .approve_credit(h.req(
            &dan(),
            ApproveCreditRequest {
                name: d3.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied, "four eyes: {own:?}");
    let rejected = h
        .svc
        .reject_credit(h.req(
            &cem(),
            RejectCreditRequest {
                name: d3.name.clone(),
                comment: "not without the outage report".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.state, dispute::State::Vetting as i32);
    assert_eq!(
        rejected.approval.unwrap().state,
        credit_approval::State::Rejected as i32
    );
    let no_comment = h
        .svc
        .reject_credit(h.req(
            &cem(),
            RejectCreditRequest {
                name: d3.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_violations(&no_comment), ["comment"]);
}

/// The outage of a repair case, 08:30 to 16:00 with an hour and a half
/// waiting on the client within it, credits six hours: 1,200.00 × 6 h /
/// 720 h = 10.00 USD, with the MRC read from the line's circuit.
async fn a_credit_takes_the_repair_cases_down_time_without_the_wait_on_the_client(h: Harness) {
    use concierge_proto::concierge::cases::v1 as cases;
    use concierge_proto::concierge::cases::v1::cases_service_server::CasesService as _;
    let c = &h.cases;
    let agent = staff("zeki", Role::Agent);
    let case = c
        .svc
        .create_case(c.req(
            &agent,
            cases::CreateCaseRequest {
                case: Some(cases::Case {
                    title: "DIA down at HQ".into(),
                    r#type: cases::CaseType::Repair as i32,
                    account: "accounts/acme".into(),
                    site: "accounts/acme/sites/hq".into(),
                    outage: Some(cases::Outage {
                        start_time: Some(ts("2026-11-02T08:30:00Z")),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let name = case.name.clone();
    c.svc
        .open_case(c.req(
            &agent,
            cases::OpenCaseRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    advance(&h, jiff::SignedDuration::from_hours(1)); // 10:00
    c.svc
        .pend_case_on_client(c.req(
            &agent,
            cases::PendCaseOnClientRequest {
                name: name.clone(),
                reason: "site access for the technician".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    advance(&h, jiff::SignedDuration::from_mins(90)); // 11:30
    c.svc
        .resume_case(c.req(
            &agent,
            cases::ResumeCaseRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    advance(&h, jiff::SignedDuration::from_mins(270)); // 16:00
    c.svc
        .resolve_case(c.req(
            &agent,
            cases::ResolveCaseRequest {
                name: name.clone(),
                resolution: Some(cases::Resolution {
                    root_cause: "fibre cut".into(),
                    resolution_code: "FIXED".into(),
                    summary: "spliced".into(),
                    ..Default::default()
                }),
                restore_time: Some(ts("2026-11-02T16:00:00Z")),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let read = c
        .svc
        .get_case(c.req(&agent, cases::GetCaseRequest { name: name.clone() }))
        .await
        .unwrap()
        .into_inner();
    let outage = read.outage.unwrap();
    assert_eq!(outage.duration.unwrap().seconds, 7 * 3600 + 1800);
    assert_eq!(outage.client_hold_duration.unwrap().seconds, 5400);

    let mut d = claim("acme", 120_000);
    d.related_case = name.clone();
    let d = create(&h, &client("acme"), d).await.unwrap();
    let d = act(&h, Act::Submit, &d).await.unwrap();
    let d = act(&h, Act::StartVetting, &d).await.unwrap();
    let calc = h
        .svc
        .calculate_credit(h.req(
            &ayse(),
            CalculateCreditRequest {
                method: CreditMethod::ProratedOutage as i32,
                dispute: d.name.clone(),
                line_id: "1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(calc.result, usd(1_000));
    let inputs = calc.inputs.clone().unwrap();
    assert_eq!(inputs.outage_duration.unwrap().seconds, 6 * 3600);
    assert_eq!(inputs.outage_case, name);
    assert_eq!(inputs.mrc, usd(120_000));
    assert_eq!(
        inputs.mrc_source,
        "accounts/acme/sites/hq/inventoryItems/dia"
    );
    assert_eq!(inputs.period_start_time, Some(ts("2026-11-01T00:00:00Z")));
    assert_eq!(inputs.period_end_time, Some(ts("2026-12-01T00:00:00Z")));
    assert!(
        calc.steps[0].formula.contains("left out"),
        "{}",
        calc.steps[0].formula
    );
    // Given inputs win over the dispute's.
    let given = h
        .svc
        .calculate_credit(h.req(
            &ayse(),
            CalculateCreditRequest {
                method: CreditMethod::ProratedOutage as i32,
                dispute: d.name.clone(),
                line_id: "1".into(),
                inputs: Some(CreditInputs {
                    outage_duration: Some(Duration {
                        seconds: 7 * 3600 + 1800,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(given.result, usd(1_250));

    // Proposed as the SLA tier: six hours is the 10 % band, 120.00.
    let proposed = h
        .svc
        .propose_credit(h.req(
            &ayse(),
            ProposeCreditRequest {
                name: d.name.clone(),
                lines: vec![LineCreditInput {
                    line_id: "1".into(),
                    method: CreditMethod::SlaTier as i32,
                    inputs: None,
                }],
                reason: "SLA credit for the repair's outage".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proposed.state, dispute::State::PartiallyApproved as i32);
    assert_eq!(proposed.approved_credit, usd(12_000));
    // Calculations are staff work.
    let by_client = h
        .svc
        .calculate_credit(h.req(
            &client("acme"),
            CalculateCreditRequest {
                method: CreditMethod::Full as i32,
                dispute: d.name.clone(),
                line_id: "1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(by_client.code(), Code::PermissionDenied);
}

/// Bad input is refused with the field named, and nothing is written.
async fn bad_claims_are_refused_naming_the_field(h: Harness) {
    let acme = client("acme");
    let refused = |d: Dispute| {
        let h = &h;
        let acme = acme.clone();
        async move { create(h, &acme, d).await.unwrap_err() }
    };
    let mut negative = claim("acme", 20_000);
    negative.lines[0].billed_amount = usd(-5);
    let e = refused(negative).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        field_violations(&e),
        ["dispute.lines[0].billed_amount.minor_units"]
    );
    let mut zero = claim("acme", 20_000);
    zero.lines[0].disputed_amount = usd(0);
    assert_eq!(
        field_violations(&refused(zero).await),
        ["dispute.lines[0].disputed_amount.minor_units"]
    );
    let more = claim("acme", 300_001);
    assert_eq!(
        field_violations(&refused(more).await),
        ["dispute.lines[0].disputed_amount"]
    );
    let mut unknown = claim("acme", 20_000);
    unknown.lines[0].billed_amount = Some(Money {
        currency_code: "XYZ".into(),
        minor_units: 1,
    });
    unknown.lines[0].disputed_amount = Some(Money {
        currency_code: "XYZ".into(),
        minor_units: 1,
    });
    let e = refused(unknown).await;
    assert!(
        field_violations(&e).contains(&"dispute.lines[0].billed_amount.currency_code".to_string()),
        "{e:?}"
    );
    let mut mixed = claim("acme", 20_000);
    let mut eur = line(1_000);
    eur.billed_amount = Some(Money {
        currency_code: "EUR".into(),
        minor_units: 5_000,
    });
    eur.disputed_amount = Some(Money {
        currency_code: "EUR".into(),
        minor_units: 1_000,
    });
    mixed.lines.push(eur);
    assert_eq!(
        field_violations(&refused(mixed).await),
        [
            "dispute.lines[1].billed_amount.currency_code",
            "dispute.lines[1].disputed_amount.currency_code"
        ]
    );
    let mut backwards = claim("acme", 20_000);
    backwards.invoice_period = Some(BillingPeriod {
        start_date: date(2026, 11, 30),
        end_date: date(2026, 11, 1),
    });
    assert_eq!(
        field_violations(&refused(backwards).await),
        ["dispute.invoice_period.end_date"]
    );
    let mut no_reason = claim("acme", 20_000);
    no_reason.lines[0].reason = 0;
    assert_eq!(
        field_violations(&refused(no_reason).await),
        ["dispute.lines[0].reason"]
    );
    let mut other = claim("acme", 20_000);
    other.lines[0].reason = DisputeReason::Other as i32;
    assert_eq!(
        field_violations(&refused(other).await),
        ["dispute.lines[0].reason_detail"]
    );
    let mut no_invoice = claim("acme", 20_000);
    no_invoice.invoice_number.clear();
    assert_eq!(
        field_violations(&refused(no_invoice).await),
        ["dispute.invoice_number"]
    );
    let mut gone = claim("acme", 20_000);
    gone.related_case = "cases/nope".into();
    assert_eq!(
        field_violations(&refused(gone).await),
        ["dispute.related_case"]
    );
    let unknown_account = create(&h, &admin(), claim("initech", 20_000))
        .await
        .unwrap_err();
    assert_eq!(field_violations(&unknown_account), ["dispute.account"]);

    // An empty draft cannot be submitted.
    let mut empty = claim("acme", 20_000);
    empty.lines.clear();
    let empty = create(&h, &acme, empty).await.unwrap();
    let e = act(&h, Act::Submit, &empty).await.unwrap_err();
    assert_eq!(field_violations(&e), ["name"]);
    let list = h
        .svc
        .list_disputes(h.req(&admin(), ListDisputesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 1, "only the empty draft was written");

    // Proposals: an unknown line, a mixed currency, a zero credit.
    let d = dispute_at(&h, At::Vetting).await;
    let propose = |lines: Vec<LineCreditInput>| {
        let (h, name) = (&h, d.name.clone());
        async move {
            h.svc
                .propose_credit(h.req(
                    &ayse(),
                    ProposeCreditRequest {
                        name,
                        lines,
                        reason: "r".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap_err()
        }
    };
    let e = propose(vec![LineCreditInput {
        line_id: "9".into(),
        method: CreditMethod::Full as i32,
        inputs: None,
    }])
    .await;
    assert_eq!(field_violations(&e), ["lines[0].line_id"]);
    let e = propose(vec![LineCreditInput {
        line_id: "1".into(),
        method: CreditMethod::Manual as i32,
        inputs: Some(CreditInputs {
            manual_amount: Some(Money {
                currency_code: "EUR".into(),
                minor_units: 100,
            }),
            manual_reason: "r".into(),
            ..Default::default()
        }),
    }])
    .await;
    assert_eq!(
        field_violations(&e),
        ["lines[0].inputs.manual_amount.currency_code"]
    );
    let e = propose(vec![LineCreditInput {
        line_id: "1".into(),
        method: 0,
        inputs: None,
    }])
    .await;
    assert_eq!(field_violations(&e), ["lines[0].method"]);
    let e = propose(vec![]).await;
    assert_eq!(field_violations(&e), ["lines"]);
    assert_eq!(get(&h, &ayse(), &d.name).await.unwrap().etag, d.etag);

    // The credit issued is the credit approved.
    let approved = act(&h, Act::ProposeWhole, &d).await.unwrap();
    let wrong = h
        .svc
        .issue_credit(h.req(
            &ayse(),
            IssueCreditRequest {
                name: approved.name.clone(),
                credit_issue: Some(CreditIssue {
                    credit_reference: "CM-1".into(),
                    amount: usd(19_999),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_violations(&wrong), ["credit_issue.amount"]);
}

/// A client key files, submits, answers and confirms its own account's
/// disputes, and finds nothing of another account's.
async fn a_client_key_works_its_own_disputes_and_no_one_elses(h: Harness) {
    let acme = client("acme");
    let globex = client("globex");
    let theirs = create(&h, &globex, claim("globex", 20_000)).await.unwrap();
    let mine = dispute_at(&h, At::CreditIssued).await;

    let not_found = |r: Result<Dispute, Status>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    };
    not_found(get(&h, &acme, &theirs.name).await);
    not_found(
        h.svc
            .confirm_outcome(h.req(
                &acme,
                ConfirmOutcomeRequest {
                    name: theirs.name.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner()),
    );
    not_found(
        h.svc
            .submit_dispute(h.req(
                &acme,
                SubmitDisputeRequest {
                    name: theirs.name.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner()),
    );
    let filed_for_them = create(&h, &acme, claim("globex", 20_000))
        .await
        .unwrap_err();
    assert_eq!(filed_for_them.code(), Code::NotFound);
    let listed = h
        .svc
        .list_disputes(h.req(&acme, ListDisputesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.iter().all(|d| d.account == "accounts/acme"));
    assert_eq!(listed.total_size, 1);
    // Nothing of the company's work is the client's to do.
    let vet = h
        .svc
        .start_dispute_vetting(h.req(
            &acme,
            StartDisputeVettingRequest {
                name: mine.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(vet.code(), Code::PermissionDenied);
    let history = h
        .svc
        .list_dispute_history_entries(h.req(
            &acme,
            ListDisputeHistoryEntriesRequest {
                parent: mine.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(history.code(), Code::PermissionDenied);
    let settings = h
        .svc
        .get_dispute_settings(h.req(
            &acme,
            GetDisputeSettingsRequest {
                name: "disputeSettings".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(settings.code(), Code::PermissionDenied);
    // A staff member records an answer only naming the contact who gave it.
    let unnamed = h
        .svc
        .confirm_outcome(h.req(
            &ayse(),
            ConfirmOutcomeRequest {
                name: mine.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_violations(&unnamed), ["contact"]);

    let confirmed = h
        .svc
        .confirm_outcome(h.req(
            &acme,
            ConfirmOutcomeRequest {
                name: mine.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.state, dispute::State::ClientConfirmed as i32);
    assert_eq!(
        confirmed.credit_proposal, None,
        "the client's reply has no working either"
    );
    let unchanged = get(&h, &globex, &theirs.name).await.unwrap();
    assert_eq!(unchanged.etag, theirs.etag);
}

/// The client's rejection sends the dispute back to vetting with a fresh
/// clock; the next decision needs a new position before the client answers.
async fn the_clients_rejection_reopens_vetting(h: Harness) {
    let d = dispute_at(&h, At::Denied).await;
    let acme = client("acme");
    let no_comment = h
        .svc
        .reject_outcome(h.req(
            &acme,
            RejectOutcomeRequest {
                name: d.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field_violations(&no_comment), ["comment"]);
    advance(&h, jiff::SignedDuration::from_hours(3));
    let reopened = h
        .svc
        .reject_outcome(h.req(
            &acme,
            RejectOutcomeRequest {
                name: d.name.clone(),
                comment: "We have the monitoring graphs".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reopened.state, dispute::State::Vetting as i32);
    assert_eq!(reopened.reopen_count, 1);
    assert_eq!(reopened.position, None);
    assert_eq!(reopened.approved_credit, None);
    assert_eq!(
        reopened.vetting_due_time,
        Some(ts("2026-11-07T12:00:00Z")),
        "a fresh vetting target from the reopening"
    );
    let decided = act(&h, Act::ProposeWhole, &reopened).await.unwrap();
    let e = h
        .svc
        .confirm_outcome(h.req(
            &acme,
            ConfirmOutcomeRequest {
                name: decided.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// The vetting target counts in the settings' calendar and pauses while the
/// company waits for the client's answer; past it, undecided, the dispute
/// is overdue once, announced, and found by the filter.
async fn vetting_counts_business_time_pauses_for_answers_and_turns_overdue(h: Harness) {
    use concierge_proto::concierge::cases::v1 as cases;
    use concierge_proto::concierge::cases::v1::cases_service_server::CasesService as _;
    let c = &h.cases;
    let day = |weekday: cases::Weekday| cases::WorkingPeriod {
        weekday: weekday as i32,
        start_minute: 540,
        end_minute: 1020,
    };
    c.svc
        .create_calendar(
            c.req(
                &admin(),
                cases::CreateCalendarRequest {
                    calendar: Some(cases::Calendar {
                        display_name: "Weekdays 9-17 UTC".into(),
                        time_zone: Some(concierge_proto::types::TimeZone { id: "UTC".into() }),
                        working_periods: [
                            cases::Weekday::Monday,
                            cases::Weekday::Tuesday,
                            cases::Weekday::Wednesday,
                            cases::Weekday::Thursday,
                            cases::Weekday::Friday,
                        ]
                        .into_iter()
                        .map(day)
                        .collect(),
                        ..Default::default()
                    }),
                    calendar_id: "weekdays".into(),
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    let settings = h
        .svc
        .get_dispute_settings(h.req(
            &ayse(),
            GetDisputeSettingsRequest {
                name: "disputeSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let by_agent = h
        .svc
        .update_dispute_settings(h.req(
            &ayse(),
            UpdateDisputeSettingsRequest {
                dispute_settings: Some(settings.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["calendar".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(by_agent.code(), Code::PermissionDenied);
    let updated = h
        .svc
        .update_dispute_settings(h.req(
            &cem(),
            UpdateDisputeSettingsRequest {
                dispute_settings: Some(DisputeSettings {
                    calendar: "calendars/weekdays".into(),
                    vetting_target: Some(Duration {
                        seconds: 16 * 3600,
                        nanos: 0,
                    }),
                    ..settings.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["calendar".into(), "vetting_target".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(updated.etag, settings.etag);
    let stale = h
        .svc
        .update_dispute_settings(h.req(
            &cem(),
            UpdateDisputeSettingsRequest {
                dispute_settings: Some(settings.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["calendar".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "a stale etag: {stale:?}");

    // Monday 2 November 09:00: two business days of vetting end Tuesday
    // 17:00.
    let d = act(
        &h,
        Act::Submit,
        &create(&h, &client("acme"), claim("acme", 20_000))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(d.vetting_due_time, Some(ts("2026-11-03T17:00:00Z")));
    let d = act(&h, Act::StartVetting, &d).await.unwrap();
    // Four hours in, Ayse asks; the client answers Wednesday 09:00: twelve
    // business hours are left, to Thursday 13:00.
    advance(&h, jiff::SignedDuration::from_hours(4));
    let d = act(&h, Act::RequestInformation, &d).await.unwrap();
    h.clock.set("2026-11-04T09:00:00Z".parse().unwrap());
    assert_eq!(
        h.svc.sweep_vetting("test", h.clock.now()).await.unwrap(),
        0,
        "paused: not overdue at its old due time"
    );
    let d = act(&h, Act::ProvideInformation, &d).await.unwrap();
    assert_eq!(d.vetting_due_time, Some(ts("2026-11-05T13:00:00Z")));
    assert_eq!(
        d.information_request.clone().unwrap().answer,
        "From 08:30 to 16:00"
    );

    h.clock.set("2026-11-05T12:59:59Z".parse().unwrap());
    assert_eq!(h.svc.sweep_vetting("test", h.clock.now()).await.unwrap(), 0);
    h.clock.set("2026-11-05T13:00:00Z".parse().unwrap());
    assert_eq!(h.svc.sweep_vetting("test", h.clock.now()).await.unwrap(), 1);
    assert_eq!(
        h.svc.sweep_vetting("test", h.clock.now()).await.unwrap(),
        0,
        "once"
    );
    let overdue = h
        .svc
        .list_disputes(h.req(
            &ayse(),
            ListDisputesRequest {
                filter: "overdue = true AND account_manager = \"staff/ayse\"".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        overdue
            .disputes
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        [d.name.as_str()]
    );
    let events = h.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.r#type == "concierge.disputes.v1.dispute_vetting_overdue")
            .count(),
        1
    );
    // Deciding ends the lateness.
    let decided = act(&h, Act::Deny, &overdue.disputes[0]).await.unwrap();
    assert!(!decided.overdue);

    // A calendar the cases service does not have stops submissions with a
    // reason to mend the settings, and submits nothing.
    let settings = h
        .svc
        .get_dispute_settings(h.req(
            &cem(),
            GetDisputeSettingsRequest {
                name: "disputeSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .update_dispute_settings(h.req(
            &cem(),
            UpdateDisputeSettingsRequest {
                dispute_settings: Some(DisputeSettings {
                    calendar: "calendars/gone".into(),
                    ..settings
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["calendar".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let draft = create(&h, &client("acme"), claim("acme", 20_000))
        .await
        .unwrap();
    let refused = act(&h, Act::Submit, &draft).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), "CALENDAR_GONE");
    assert_eq!(
        get(&h, &ayse(), &draft.name).await.unwrap().state,
        dispute::State::Draft as i32
    );
}

/// A retried create or transition with the same request_id does it once;
/// the same id with other parameters is refused.
async fn retries_with_a_request_id_act_once(h: Harness) {
    let req = CreateDisputeRequest {
        dispute: Some(claim("acme", 20_000)),
        dispute_id: String::new(),
        request_id: "5a0e6c1e-8b1d-4c57-9d54-3f3d2b7f2a10".into(),
    };
    let first = h
        .svc
        .create_dispute(h.req(&client("acme"), req.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = h
        .svc
        .create_dispute(h.req(&client("acme"), req.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let submit = SubmitDisputeRequest {
        name: first.name.clone(),
        etag: String::new(),
        request_id: "0d6f2c7e-1f5e-4c1a-b7e3-2f1b8c9d4e21".into(),
    };
    let s1 = h
        .svc
        .submit_dispute(h.req(&client("acme"), submit.clone()))
        .await
        .unwrap()
        .into_inner();
    let s2 = h
        .svc
        .submit_dispute(h.req(&client("acme"), submit))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s1, s2);
    assert_eq!(history(&h, &first.name).await.len(), 2);
    let list = h
        .svc
        .list_disputes(h.req(&admin(), ListDisputesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 1);
    let mut other = req;
    other.dispute.as_mut().unwrap().invoice_number = "INV-OTHER".into();
    let reused = h
        .svc
        .create_dispute(h.req(&client("acme"), other))
        .await
        .unwrap_err();
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
}

/// Lists filter on the documented fields, order, and page by keyset.
async fn disputes_are_listed_by_state_owner_and_amount(h: Harness) {
    let small = dispute_at(&h, At::Vetting).await;
    let _draft = dispute_at(&h, At::Draft).await;
    let big = dispute_at(&h, At::ApprovalPending).await;
    let list = |p: Principal, filter: &str, order_by: &str| {
        let h = &h;
        let (filter, order_by) = (filter.to_string(), order_by.to_string());
        async move {
            h.svc
                .list_disputes(h.req(
                    &p,
                    ListDisputesRequest {
                        filter,
                        order_by,
                        page_size: 1,
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let vetting = list(
        ayse(),
        "state = VETTING AND owner = \"staff/ayse\"",
        "total_disputed.minor_units desc",
    )
    .await
    .unwrap();
    assert_eq!(vetting.total_size, 2);
    assert_eq!(vetting.disputes[0].name, big.name);
    let next = h
        .svc
        .list_disputes(h.req(
            &ayse(),
            ListDisputesRequest {
                filter: "state = VETTING AND owner = \"staff/ayse\"".into(),
                order_by: "total_disputed.minor_units desc".into(),
                page_size: 1,
                page_token: vetting.next_page_token.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.disputes[0].name, small.name);
    assert!(next.next_page_token.is_empty());
    let large = list(ayse(), "total_disputed.minor_units > 100000", "")
        .await
        .unwrap();
    assert_eq!(large.total_size, 1);
    let pending = list(ayse(), "approval.state = PENDING", "").await.unwrap();
    assert_eq!(pending.disputes[0].name, big.name);
    let bad = list(ayse(), "colour = \"red\"", "").await.unwrap_err();
    assert_eq!(field_violations(&bad), ["filter"]);
}

/// Only drafts are deleted, by the company; edits keep to the states that
/// allow them.
async fn drafts_are_edited_and_deleted_submitted_disputes_are_not(h: Harness) {
    let acme = client("acme");
    let draft = create(&h, &acme, claim("acme", 20_000)).await.unwrap();
    let mut more = draft.clone();
    more.lines.push(DisputeLine {
        id: String::new(),
        ..line(5_000)
    });
    let edited = h
        .svc
        .update_dispute(h.req(
            &acme,
            UpdateDisputeRequest {
                dispute: Some(more),
                update_mask: Some(FieldMask {
                    paths: vec!["lines".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.lines[1].id, "2");
    assert_eq!(edited.total_disputed, usd(25_000));
    let by_client = h
        .svc
        .delete_dispute(h.req(
            &acme,
            DeleteDisputeRequest {
                name: draft.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(by_client.code(), Code::PermissionDenied);

    let vetting = dispute_at(&h, At::Vetting).await;
    let mut changed = vetting.clone();
    changed.lines[0].disputed_amount = usd(25_000);
    let locked = h
        .svc
        .update_dispute(h.req(
            &ayse(),
            UpdateDisputeRequest {
                dispute: Some(changed.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["lines".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::FailedPrecondition, "{locked:?}");
    let described = h
        .svc
        .update_dispute(h.req(
            &ayse(),
            UpdateDisputeRequest {
                dispute: Some(Dispute {
                    description: "per the call of 3 Nov".into(),
                    ..changed
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["description".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.description, "per the call of 3 Nov");
    assert_eq!(described.total_disputed, usd(20_000));
    let kept = h
        .svc
        .delete_dispute(h.req(
            &ayse(),
            DeleteDisputeRequest {
                name: vetting.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(kept.code(), Code::FailedPrecondition);
    let delete = DeleteDisputeRequest {
        name: draft.name.clone(),
        etag: String::new(),
        request_id: "2b7e1516-28ae-4d2a-a6f7-15883b0f3c11".into(),
    };
    h.svc
        .delete_dispute(h.req(&ayse(), delete.clone()))
        .await
        .unwrap();
    assert_eq!(
        get(&h, &ayse(), &draft.name).await.unwrap_err().code(),
        Code::NotFound
    );
    h.svc
        .delete_dispute(h.req(&ayse(), delete))
        .await
        .expect("a retried delete with its request id succeeds again");
    let deleted = h
        .events()
        .await
        .into_iter()
        .filter(|e| e.r#type == "concierge.disputes.v1.dispute_deleted")
        .count();
    assert_eq!(deleted, 1, "deleted once");
}

/// Every event is one the catalogue declares, with its payload, and the
/// filter columns match the tables on both databases.
async fn events_and_columns_follow_the_contract(h: Harness) {
    let _ = dispute_at(&h, At::Closed).await;
    let _ = dispute_at(&h, At::ApprovalPending).await;
    let pending = dispute_at(&h, At::ApprovalPending).await;
    act(&h, Act::RejectCredit, &pending).await.unwrap();
    let draft = dispute_at(&h, At::Draft).await;
    let mut edited = draft.clone();
    edited.description = "more detail".into();
    h.svc
        .update_dispute(h.req(
            &ayse(),
            UpdateDisputeRequest {
                dispute: Some(edited),
                update_mask: Some(FieldMask {
                    paths: vec!["description".into()],
                }),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_dispute(h.req(
            &ayse(),
            DeleteDisputeRequest {
                name: draft.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let settings = h
        .svc
        .get_dispute_settings(h.req(
            &ayse(),
            GetDisputeSettingsRequest {
                name: "disputeSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .update_dispute_settings(h.req(
            &cem(),
            UpdateDisputeSettingsRequest {
                dispute_settings: Some(DisputeSettings {
                    max_document_size_bytes: 1 << 20,
                    ..settings
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["max_document_size_bytes".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let (_running, mut c) = streaming_client(&h).await;
    let content = pdf(2000);
    let doc = c
        .upload_dispute_document(h.req(
            &ayse(),
            futures::stream::iter(upload_of(
                &pending.name,
                "application/pdf",
                &content,
                2000,
                &sha256_hex(&content),
            )),
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .delete_dispute_document(h.req(
            &ayse(),
            DeleteDisputeDocumentRequest {
                name: doc.name,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let late = dispute_at(&h, At::Submitted).await;
    h.clock.advance(jiff::SignedDuration::from_hours(24 * 30));
    h.svc.sweep_vetting("test", h.clock.now()).await.unwrap();
    assert!(get(&h, &ayse(), &late.name).await.unwrap().overdue);
    testing::assert_events_match_catalogue::<concierge_proto::disputes::EventType>(
        "disputes",
        &h.events().await,
    );
    testing::assert_columns_agree::<Dispute, concierge_disputes::Rules>(h.svc.db()).await;
    testing::assert_columns_agree::<DisputeHistoryEntry, concierge_disputes::Rules>(h.svc.db())
        .await;
    testing::assert_columns_agree::<DisputeDocument, concierge_disputes::Rules>(h.svc.db()).await;
}

/// A client of the served service, for the streaming methods.
async fn streaming_client(
    h: &Harness,
) -> (
    Running,
    concierge_proto::disputes::disputes_service_client::DisputesServiceClient<
        tonic::transport::Channel,
    >,
) {
    let (running, channel) = h.serve().await;
    (
        running,
        concierge_proto::disputes::disputes_service_client::DisputesServiceClient::new(channel)
            .max_decoding_message_size(8 * 1024 * 1024),
    )
}

/// `content` as an upload of `parent`: metadata announcing `size` and
/// `sha256`, then 1 MiB chunks.
fn upload_of(
    parent: &str,
    media_type: &str,
    content: &[u8],
    size: i64,
    sha256: &str,
) -> Vec<UploadDisputeDocumentRequest> {
    use upload_dispute_document_request::Payload;
    let mut messages = vec![UploadDisputeDocumentRequest {
        payload: Some(Payload::Upload(DisputeDocumentUpload {
            parent: parent.into(),
            dispute_document: Some(DisputeDocument {
                r#type: dispute_document::Type::OutageReport as i32,
                display_name: "outage-report.pdf".into(),
                media_type: media_type.into(),
                size_bytes: size,
                sha256: sha256.into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }];
    messages.extend(
        content
            .chunks(1024 * 1024)
            .map(|c| UploadDisputeDocumentRequest {
                payload: Some(Payload::Chunk(c.to_vec())),
            }),
    );
    messages
}

fn sha256_hex(content: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content))
}

/// A PDF of `size` bytes: its header, then noise.
fn pdf(size: usize) -> Vec<u8> {
    let mut content = b"%PDF-1.7\n".to_vec();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while content.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        content.extend_from_slice(&x.to_le_bytes());
    }
    content.truncate(size);
    content
}

async fn stored_files(h: &Harness) -> Vec<String> {
    use futures::TryStreamExt;
    h.files
        .store()
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// A 20 MiB outage report goes up in chunks and comes back byte for byte;
/// the client sees it on its dispute; the history records it.
async fn a_20_mib_document_is_uploaded_and_downloaded_whole(h: Harness) {
    let (_running, mut c) = streaming_client(&h).await;
    let d = dispute_at(&h, At::Vetting).await;
    let content = pdf(20 * 1024 * 1024);
    let sha = sha256_hex(&content);
    let upload = upload_of(
        &d.name,
        "application/pdf",
        &content,
        content.len() as i64,
        &sha,
    );
    let doc = c
        .upload_dispute_document(h.req(&client("acme"), futures::stream::iter(upload)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (doc.size_bytes, doc.sha256.as_str()),
        (content.len() as i64, sha.as_str())
    );
    assert_eq!(doc.media_type, "application/pdf");
    assert_eq!(doc.uploaded_by, "apiKeys/acme-portal");
    assert!(doc.name.starts_with(&format!("{}/documents/", d.name)));

    let mut stream = c
        .download_dispute_document(h.req(
            &client("acme"),
            DownloadDisputeDocumentRequest {
                name: doc.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    use download_dispute_document_response::Payload;
    let Some(Payload::DisputeDocument(meta)) = stream.message().await.unwrap().unwrap().payload
    else {
        panic!("metadata first")
    };
    assert_eq!(meta, doc);
    let mut back = Vec::with_capacity(content.len());
    let mut chunks = 0;
    while let Some(m) = stream.message().await.unwrap() {
        let Some(Payload::Chunk(c)) = m.payload else {
            panic!("then chunks")
        };
        assert!(c.len() <= 1024 * 1024);
        back.extend_from_slice(&c);
        chunks += 1;
    }
    assert_eq!(chunks, 20);
    assert!(back == content, "the same bytes come back");

    let listed = h
        .svc
        .list_dispute_documents(h.req(
            &client("acme"),
            ListDisputeDocumentsRequest {
                parent: d.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.dispute_documents, std::slice::from_ref(&doc));
    let other = h
        .svc
        .get_dispute_document(h.req(
            &client("globex"),
            GetDisputeDocumentRequest {
                name: doc.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let last = history(&h, &d.name).await.pop().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.reason.as_str(),
            last.from_state,
            last.to_state
        ),
        (
            "UploadDisputeDocument",
            "outage-report.pdf",
            d.state,
            d.state
        )
    );
    let events = h.events().await;
    let uploaded = events
        .iter()
        .find(|e| e.r#type == "concierge.disputes.v1.dispute_document_uploaded")
        .expect("announced");
    assert_eq!(uploaded.account, "accounts/acme");
    assert!(
        stored_files(&h)
            .await
            .iter()
            .all(|f| !f.starts_with("staging"))
    );
}

/// A wrong hash, a short or long upload, an executable, a type other than
/// the one announced, one over the limit: each refused naming the field,
/// nothing listed and nothing left in the file store.
async fn bad_documents_are_refused_and_leave_nothing(h: Harness) {
    let (_running, c) = streaming_client(&h).await;
    let d = dispute_at(&h, At::Vetting).await;
    let send = |messages: Vec<UploadDisputeDocumentRequest>| {
        let req = h.req(&client("acme"), futures::stream::iter(messages));
        let mut c = c.clone();
        async move { c.upload_dispute_document(req).await.unwrap_err() }
    };
    let content = pdf(3 * 1024 * 1024 + 17);
    let sha = sha256_hex(&content);
    let n = content.len() as i64;

    let wrong = send(upload_of(
        &d.name,
        "application/pdf",
        &content,
        n,
        &"0".repeat(64),
    ))
    .await;
    assert_eq!(
        field_violations(&wrong),
        ["dispute_document.sha256"],
        "{wrong:?}"
    );
    let short = send(upload_of(
        &d.name,
        "application/pdf",
        &content[..1000],
        n,
        &sha,
    ))
    .await;
    assert_eq!(field_violations(&short), ["dispute_document.size_bytes"]);
    let long = send(upload_of(&d.name, "application/pdf", &content, n - 1, &sha)).await;
    assert_eq!(field_violations(&long), ["dispute_document.size_bytes"]);
    let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
    elf.extend_from_slice(&[0u8; 4096]);
    let program = send(upload_of(
        &d.name,
        "application/pdf",
        &elf,
        elf.len() as i64,
        &sha256_hex(&elf),
    ))
    .await;
    assert_eq!(field_violations(&program), ["dispute_document.media_type"]);
    assert!(program.message().contains("program"), "{program:?}");
    let script = b"#!/bin/sh\nrm -rf /\n".to_vec();
    let shell = send(upload_of(
        &d.name,
        "text/plain",
        &script,
        script.len() as i64,
        &sha256_hex(&script),
    ))
    .await;
    assert_eq!(field_violations(&shell), ["dispute_document.media_type"]);
    let png = b"\x89PNG\r\n\x1a\n0000000000000000".to_vec();
    let renamed = send(upload_of(
        &d.name,
        "application/pdf",
        &png,
        png.len() as i64,
        &sha256_hex(&png),
    ))
    .await;
    assert!(renamed.message().contains("image/png"), "{renamed:?}");
    let no_metadata = send(vec![UploadDisputeDocumentRequest {
        payload: Some(upload_dispute_document_request::Payload::Chunk(vec![
            1, 2, 3,
        ])),
    }])
    .await;
    assert_eq!(field_violations(&no_metadata), ["upload"]);
    let mut empty_chunks = upload_of(&d.name, "application/pdf", &content, n, &sha);
    empty_chunks.insert(
        1,
        UploadDisputeDocumentRequest {
            payload: Some(upload_dispute_document_request::Payload::Chunk(vec![])),
        },
    );
    assert_eq!(field_violations(&send(empty_chunks).await), ["chunk"]);

    // Over the limit: refused before a byte is read.
    let settings = h
        .svc
        .get_dispute_settings(h.req(
            &cem(),
            GetDisputeSettingsRequest {
                name: "disputeSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .update_dispute_settings(h.req(
            &cem(),
            UpdateDisputeSettingsRequest {
                dispute_settings: Some(DisputeSettings {
                    max_document_size_bytes: 1024 * 1024,
                    ..settings
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["max_document_size_bytes".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let big = send(upload_of(&d.name, "application/pdf", &content, n, &sha)).await;
    assert_eq!(field_violations(&big), ["dispute_document.size_bytes"]);
    assert!(big.message().contains("limit"), "{big:?}");

    // Another account's dispute does not exist for this client.
    let theirs = create(&h, &client("globex"), claim("globex", 20_000))
        .await
        .unwrap();
    let small = pdf(1000);
    let hidden = send(upload_of(
        &theirs.name,
        "application/pdf",
        &small,
        1000,
        &sha256_hex(&small),
    ))
    .await;
    assert_eq!(hidden.code(), Code::NotFound);

    let listed = h
        .svc
        .list_dispute_documents(h.req(
            &ayse(),
            ListDisputeDocumentsRequest {
                parent: d.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.dispute_documents.is_empty());
    assert_eq!(
        stored_files(&h).await,
        Vec::<String>::new(),
        "nothing half-written stays"
    );
    assert_eq!(
        history(&h, &d.name).await.len(),
        3,
        "no document in the history"
    );

    // What a process that died mid-upload staged is swept once it is old.
    use object_store::ObjectStoreExt as _;
    let left = h.files.path("staging/6c0ffee0-dead-4bad-8000-000000000001");
    h.files
        .store()
        .put(&left, b"half an upload".to_vec().into())
        .await
        .unwrap();
    let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    assert_eq!(
        h.svc.sweep_staging(an_hour_ago).await.unwrap(),
        0,
        "not old yet"
    );
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
    assert_eq!(h.svc.sweep_staging(later).await.unwrap(), 1);
    assert!(stored_files(&h).await.is_empty());
}

/// A document uploaded in error is removed by staff before the decision,
/// recorded in the history; after the decision the evidence stays.
async fn documents_are_removed_only_before_the_decision(h: Harness) {
    let (_running, mut c) = streaming_client(&h).await;
    let d = dispute_at(&h, At::Vetting).await;
    let content = pdf(5000);
    let up = |name: &str| {
        upload_of(
            name,
            "application/pdf",
            &content,
            5000,
            &sha256_hex(&content),
        )
    };
    let doc = c
        .upload_dispute_document(h.req(&ayse(), futures::stream::iter(up(&d.name))))
        .await
        .unwrap()
        .into_inner();
    let by_client = h
        .svc
        .delete_dispute_document(h.req(
            &client("acme"),
            DeleteDisputeDocumentRequest {
                name: doc.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(by_client.code(), Code::PermissionDenied);
    h.svc
        .delete_dispute_document(h.req(
            &ayse(),
            DeleteDisputeDocumentRequest {
                name: doc.name.clone(),
                etag: doc.etag.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let gone = h
        .svc
        .get_dispute_document(h.req(
            &ayse(),
            GetDisputeDocumentRequest {
                name: doc.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(stored_files(&h).await.is_empty(), "its bytes went with it");
    assert_eq!(
        history(&h, &d.name).await.pop().unwrap().action,
        "DeleteDisputeDocument"
    );

    let decided = act(&h, Act::ProposeWhole, &d).await.unwrap();
    let kept = c
        .upload_dispute_document(h.req(&ayse(), futures::stream::iter(up(&decided.name))))
        .await
        .unwrap()
        .into_inner();
    let refused = h
        .svc
        .delete_dispute_document(h.req(
            &ayse(),
            DeleteDisputeDocumentRequest {
                name: kept.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // A retried upload with the same request id stores one document.
    let mut with_id = up(&decided.name);
    if let Some(upload_dispute_document_request::Payload::Upload(u)) = &mut with_id[0].payload {
        u.request_id = "7c1f4d2a-3b5e-4f60-8a71-9b2c3d4e5f60".into();
    }
    let first = c
        .upload_dispute_document(h.req(&ayse(), futures::stream::iter(with_id.clone())))
        .await
        .unwrap()
        .into_inner();
    let again = c
        .upload_dispute_document(h.req(&ayse(), futures::stream::iter(with_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let listed = h
        .svc
        .list_dispute_documents(h.req(
            &ayse(),
            ListDisputeDocumentsRequest {
                parent: decided.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.dispute_documents.len(), 2);
}

fn header<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .collect()
}

/// The position goes to the client delegate by e-mail in the delegate's
/// language, once, after the commit; a mail server that is down delays it,
/// never loses it.
async fn the_position_is_e_mailed_to_the_delegate_in_their_language(h: Harness) {
    use concierge_proto::customers::customers_service_server::CustomersService as _;
    let Some(sink) = testing::SmtpSink::start("the position e-mail").await else {
        return;
    };
    let customers = &h._customers;
    let delegate = customers
        .svc
        .get_contact(customers.req(
            &admin(),
            concierge_proto::customers::GetContactRequest {
                name: "accounts/acme/contacts/delegate".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    customers
        .svc
        .update_contact(customers.req(
            &admin(),
            concierge_proto::customers::UpdateContactRequest {
                contact: Some(concierge_proto::customers::Contact {
                    language_code: "tr-TR".into(),
                    ..delegate
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["language_code".into()],
                }),
            },
        ))
        .await
        .unwrap();
    dispute_at(&h, At::CreditIssued).await;
    let down = h.svc.clone().with_mail(std::sync::Arc::new(
        concierge_common::mail::Mailer::smtp(
            "smtp://127.0.0.1:1",
            "Concierge <concierge@example.com>",
        )
        .unwrap(),
    ));
    let now = h.clock.now();
    down.sweep_vetting("replica-a", now).await.unwrap();
    assert!(sink.messages().is_empty());
    let up = h.svc.clone().with_mail(std::sync::Arc::new(
        concierge_common::mail::Mailer::smtp(&sink.url, "Concierge <concierge@example.com>")
            .unwrap(),
    ));
    up.sweep_vetting("replica-b", now).await.unwrap();
    assert!(
        sink.messages().is_empty(),
        "the failed attempt waits before the next"
    );
    let later = h.clock.advance(jiff::SignedDuration::from_secs(30));
    up.sweep_vetting("replica-b", later).await.unwrap();
    let received = sink.messages();
    assert_eq!(received.len(), 1, "{received:?}");
    let m = &received[0];
    assert_eq!(header(m, "X-RcptTo"), ["delegate@acme.example"]);
    assert_eq!(header(m, "Content-Language"), ["tr"]);
    let parsed = mail_parser::MessageParser::default()
        .parse(m.as_bytes())
        .unwrap();
    assert_eq!(
        parsed.subject(),
        Some("INV-2026-11-0042 numaralı faturaya itirazınız: görüşümüz")
    );
    let body = parsed.body_text(0).unwrap();
    assert!(
        body.contains("We credit the outage in full on your next invoice."),
        "{body}"
    );
    assert!(body.contains("Sonuç: alacak kaydedildi"), "{body}");
    assert!(body.contains("Alacak: 200.00 USD"), "{body}");
    up.sweep_vetting(
        "replica-b",
        h.clock.advance(jiff::SignedDuration::from_hours(2)),
    )
    .await
    .unwrap();
    assert_eq!(sink.messages().len(), 1, "sent once");
}

/// The control document of an account lists its open billing disputes, read
/// from this service, when its settings say so: what each is and who acts
/// next; drafts, closed disputes and other accounts' stay out.
async fn the_control_document_lists_the_accounts_open_disputes(h: Harness) {
    use concierge_proto::concierge::cases::v1 as cases;
    use concierge_proto::concierge::cases::v1::cases_service_server::CasesService as _;
    let vetting = dispute_at(&h, At::Vetting).await;
    let denied = dispute_at(&h, At::Denied).await;
    dispute_at(&h, At::Draft).await;
    dispute_at(&h, At::Closed).await;
    create(&h, &client("globex"), claim("globex", 20_000))
        .await
        .unwrap();
    let (_running, channel) = h.serve().await;
    let c = &h.cases;
    let replica = c.svc.clone().with_disputes(channel);
    let generate = || {
        let replica = replica.clone();
        async move {
            replica
                .generate_control_document(c.req(
                    &admin(),
                    cases::GenerateControlDocumentRequest {
                        parent: "accounts/acme".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let without = generate().await;
    assert!(
        without
            .rows
            .iter()
            .all(|r| !r.resource.starts_with("disputes/")),
        "off unless the settings say so"
    );
    let settings = replica
        .get_control_document_settings(c.req(
            &admin(),
            cases::GetControlDocumentSettingsRequest {
                name: "controlDocumentSettings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    replica
        .update_control_document_settings(c.req(
            &admin(),
            cases::UpdateControlDocumentSettingsRequest {
                control_document_settings: Some(cases::ControlDocumentSettings {
                    include_disputes: true,
                    ..settings
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["include_disputes".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let doc = generate().await;
    let listed: Vec<(&str, &str, &str)> = doc
        .rows
        .iter()
        .filter(|r| r.resource.starts_with("disputes/"))
        .map(|r| {
            (
                r.resource.as_str(),
                r.status.as_str(),
                r.next_action.as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                vetting.name.as_str(),
                "Being vetted",
                "Company: vet the claim"
            ),
            (
                denied.name.as_str(),
                "Denied",
                "Client: confirm or reject the outcome"
            ),
        ]
    );
    let row = doc
        .rows
        .iter()
        .find(|r| r.resource == vetting.name)
        .unwrap();
    assert_eq!(
        row.category,
        cases::control_document_row::Category::Billing as i32
    );
    assert_eq!(row.title, "Invoice INV-2026-11-0042: 200.00 USD disputed");
    assert_eq!(row.eta_time, vetting.vetting_due_time);
    assert!(
        doc.html_content.contains("Invoice INV-2026-11-0042"),
        "in the page too"
    );
    assert_eq!(doc.row_count as usize, doc.rows.len());
}

/// A dispute holds at most 100 documents: the evidence of one claim.
async fn a_dispute_holds_a_bounded_number_of_documents(h: Harness) {
    let (_running, mut c) = streaming_client(&h).await;
    let d = dispute_at(&h, At::Vetting).await;
    let content = pdf(100);
    let sha = sha256_hex(&content);
    for _ in 0..100 {
        c.upload_dispute_document(h.req(
            &ayse(),
            futures::stream::iter(upload_of(&d.name, "application/pdf", &content, 100, &sha)),
        ))
        .await
        .unwrap();
    }
    let full = c
        .upload_dispute_document(h.req(
            &ayse(),
            futures::stream::iter(upload_of(&d.name, "application/pdf", &content, 100, &sha)),
        ))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition, "{full:?}");
    assert!(full.message().contains("100 documents"), "{full:?}");
}

concierge_common::both_backends!(
    harness = Harness;
    every_transition_follows_the_contract_table,
    a_claim_is_vetted_credited_and_confirmed_by_the_client,
    a_credit_above_the_threshold_needs_a_second_managers_approval,
    a_credit_takes_the_repair_cases_down_time_without_the_wait_on_the_client,
    bad_claims_are_refused_naming_the_field,
    a_client_key_works_its_own_disputes_and_no_one_elses,
    the_clients_rejection_reopens_vetting,
    vetting_counts_business_time_pauses_for_answers_and_turns_overdue,
    retries_with_a_request_id_act_once,
    disputes_are_listed_by_state_owner_and_amount,
    drafts_are_edited_and_deleted_submitted_disputes_are_not,
    events_and_columns_follow_the_contract,
    a_20_mib_document_is_uploaded_and_downloaded_whole,
    bad_documents_are_refused_and_leave_nothing,
    documents_are_removed_only_before_the_decision,
    the_position_is_e_mailed_to_the_delegate_in_their_language,
    the_control_document_lists_the_accounts_open_disputes,
    a_dispute_holds_a_bounded_number_of_documents,
);
