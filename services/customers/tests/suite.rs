//! The customers behaviour suite, run once on SQLite and once on PostgreSQL
//! (a fresh database per test). Calls go through the gRPC service trait with
//! a signed principal, exactly as the gateway delivers them.

use std::sync::Arc;

use concierge_common::clock::TestClock;
use concierge_common::kit::Peers;
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::testing::{self, Backend};
use concierge_customers::Customers;
use concierge_proto::customers::customers_service_server::CustomersService;
use concierge_proto::customers::*;
use concierge_proto::types::{ContactChannel, Money};
use prost_types::FieldMask;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// The customers service on a fresh database, and what its tests start from.
struct Harness(testing::Harness<Customers>);

impl std::ops::Deref for Harness {
    type Target = testing::Harness<Customers>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Harness {
    async fn new(backend: Backend, test: &str) -> Option<Self> {
        testing::Harness::open(
            backend,
            test,
            PrincipalCodec::new("test-secret-of-some-length".into()),
            TestClock::new(testing::TEST_EPOCH.parse().unwrap()),
            Peers::default(),
        )
        .await
        .map(Self)
    }

    /// The directory and two accounts most tests start from: acme (owned by
    /// account manager ayse) and globex (owned by bob).
    async fn seed(&self) {
        let admin = admin();
        for (id, role, manager) in [
            ("mira", StaffRole::Manager, ""),
            ("ayse", StaffRole::AccountManager, "staff/mira"),
            ("bob", StaffRole::AccountManager, "staff/mira"),
        ] {
            self.svc
                .create_staff_member(self.req(
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
        for (id, am) in [("acme", "staff/ayse"), ("globex", "staff/bob")] {
            self.create_account(&admin, id, account(id, am))
                .await
                .unwrap();
            self.svc
                .create_site(self.req(
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
        }
    }

    async fn create_account(
        &self,
        who: &Principal,
        id: &str,
        a: Account,
    ) -> Result<Account, Status> {
        self.svc
            .create_account(self.req(
                who,
                CreateAccountRequest {
                    account: Some(a),
                    account_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }
}

fn principal(role: Role, account: Option<&str>, staff: Option<&str>) -> Principal {
    Principal {
        subject: format!("apiKeys/{role:?}-{}", account.or(staff).unwrap_or("x")),
        role,
        account: account.map(String::from),
        staff_member: staff.map(String::from),
        display_name: format!("{role:?}"),
    }
}

fn admin() -> Principal {
    principal(Role::Admin, None, None)
}

fn account(name: &str, am: &str) -> Account {
    Account {
        display_name: format!("{name} Corp"),
        tier: Tier::Enterprise as i32,
        account_manager: am.into(),
        mrc: Some(Money {
            currency_code: "USD".into(),
            minor_units: 3_000_000,
        }),
        time_zone: "America/Chicago".into(),
        ..Default::default()
    }
}

fn violations(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|e| e.reason.clone())
        .unwrap_or_default()
}

concierge_common::both_backends!(
    harness = Harness;
    account_round_trip,
    retried_create_with_request_id_creates_once,
    bad_input_names_every_field_and_changes_nothing,
    update_applies_only_the_mask_and_guards_the_etag,
    soft_delete_and_undelete,
    keyset_pages_filters_and_order,
    page_tokens_are_bound_to_their_list,
    every_change_writes_one_event,
    sites_and_inventory,
    one_client_delegate_per_account,
    escalation_chain_and_loops,
    follow_up_lifecycle,
    authorisation_matrix,
    client_lists_only_its_own_account,
    concurrent_writers_all_land_and_duplicates_create_once,
    every_event_is_declared_in_the_catalogue,
);

async fn account_round_trip(h: Harness) {
    h.seed().await;
    let got = h
        .svc
        .get_account(h.req(
            &admin(),
            GetAccountRequest {
                name: "accounts/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.display_name, "acme Corp");
    assert_eq!(got.state, account::State::Active as i32);
    assert_eq!(got.mrc.unwrap().minor_units, 3_000_000);
    assert_eq!(got.etag, "\"1\"");
    assert!(got.create_time.is_some());
    let missing = h
        .svc
        .get_account(h.req(
            &admin(),
            GetAccountRequest {
                name: "accounts/nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let dup = h
        .create_account(&admin(), "acme", account("acme", "staff/ayse"))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
}

async fn retried_create_with_request_id_creates_once(h: Harness) {
    h.seed().await;
    let req = CreateAccountRequest {
        account: Some(account("initech", "staff/ayse")),
        account_id: String::new(),
        request_id: "7f1d3c1e-4c55-4d1c-9a57-2f6f0bde0001".into(),
    };
    let first = h
        .svc
        .create_account(h.req(&admin(), req.clone()))
        .await
        .unwrap()
        .into_inner();
    let second = h
        .svc
        .create_account(h.req(&admin(), req.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second, "a retry gets the first response");
    // Also when the caller chose the id, which the retry finds taken.
    let named = CreateAccountRequest {
        account_id: "initech-named".into(),
        request_id: "7f1d3c1e-4c55-4d1c-9a57-2f6f0bde0002".into(),
        ..req.clone()
    };
    let first_named = h
        .svc
        .create_account(h.req(&admin(), named.clone()))
        .await
        .unwrap()
        .into_inner();
    let retried_named = h
        .svc
        .create_account(h.req(&admin(), named))
        .await
        .expect("a retry of a create whose id is now taken replays")
        .into_inner();
    assert_eq!(first_named, retried_named);
    let mut other = req.clone();
    other.account.as_mut().unwrap().display_name = "Something else".into();
    let err = h
        .svc
        .create_account(h.req(&admin(), other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err), vec!["request_id"]);
    assert_eq!(reason(&err), "REQUEST_ID_REUSED");
    let all = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                filter: "display_name:\"initech\"".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.accounts.len(),
        2,
        "one account per request_id, however often the request came"
    );
}

async fn bad_input_names_every_field_and_changes_nothing(h: Harness) {
    h.seed().await;
    let before = h.events().await.len();
    let bad = Account {
        display_name: " ".into(),
        tier: 0,
        time_zone: "Mars/Olympus".into(),
        mrc: Some(Money {
            currency_code: "XYZ".into(),
            minor_units: -5,
        }),
        account_manager: "people/x".into(),
        ..Default::default()
    };
    let err = h.create_account(&admin(), "Bad Id", bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violations(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "account.account_manager",
            "account.display_name",
            "account.mrc.currency_code",
            "account.mrc.minor_units",
            "account.tier",
            "account.time_zone",
            "account_id",
        ]
    );
    let unknown_manager = h
        .create_account(&admin(), "x1", account("x1", "staff/ghost"))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&unknown_manager),
        vec!["account.account_manager"]
    );
    let missing = h
        .svc
        .create_account(h.req(&admin(), CreateAccountRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violations(&missing), vec!["account"]);
    assert_eq!(h.events().await.len(), before, "nothing was written");
}

async fn update_applies_only_the_mask_and_guards_the_etag(h: Harness) {
    h.seed().await;
    let patch = Account {
        name: "accounts/acme".into(),
        display_name: "ACME Corporation".into(),
        billing_account: "ignored because not in the mask".into(),
        etag: "\"1\"".into(),
        ..Default::default()
    };
    let updated = h
        .svc
        .update_account(h.req(
            &admin(),
            UpdateAccountRequest {
                account: Some(patch.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "ACME Corporation");
    assert_eq!(updated.billing_account, "");
    assert_eq!(
        updated.tier,
        Tier::Enterprise as i32,
        "fields outside the mask keep their values"
    );
    assert_eq!(updated.etag, "\"2\"");

    let stale = h
        .svc
        .update_account(h.req(
            &admin(),
            UpdateAccountRequest {
                account: Some(patch.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(reason(&stale), "ETAG_MISMATCH");

    let mut bad_path = patch.clone();
    bad_path.etag.clear();
    let err = h
        .svc
        .update_account(h.req(
            &admin(),
            UpdateAccountRequest {
                account: Some(bad_path.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["state".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["update_mask"]);
    let invalid = h
        .svc
        .update_account(h.req(
            &admin(),
            UpdateAccountRequest {
                account: Some(Account {
                    time_zone: "Nowhere/Land".into(),
                    ..bad_path
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["time_zone".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&invalid), vec!["account.time_zone"]);
    let now = h
        .svc
        .get_account(h.req(
            &admin(),
            GetAccountRequest {
                name: "accounts/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.time_zone, "America/Chicago");
    assert_eq!(now.etag, "\"2\"", "refused updates change nothing");
}

async fn soft_delete_and_undelete(h: Harness) {
    h.seed().await;
    let deleted = h
        .svc
        .delete_account(h.req(
            &admin(),
            DeleteAccountRequest {
                name: "accounts/acme".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.state, account::State::Deleted as i32);
    assert!(deleted.delete_time.is_some());
    let names =
        |r: ListAccountsResponse| r.accounts.into_iter().map(|a| a.name).collect::<Vec<_>>();
    let listed = h
        .svc
        .list_accounts(h.req(&admin(), ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(listed), vec!["accounts/globex"]);
    let with_deleted = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                show_deleted: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        names(with_deleted),
        vec!["accounts/acme", "accounts/globex"]
    );
    let update = h
        .svc
        .update_account(h.req(
            &admin(),
            UpdateAccountRequest {
                account: Some(Account {
                    name: "accounts/acme".into(),
                    display_name: "x".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        update.code(),
        Code::NotFound,
        "a deleted account cannot be edited"
    );
    let restored = h
        .svc
        .undelete_account(h.req(
            &admin(),
            UndeleteAccountRequest {
                name: "accounts/acme".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restored.state, account::State::Active as i32);
    assert!(restored.delete_time.is_none());
    let again = h
        .svc
        .undelete_account(h.req(
            &admin(),
            UndeleteAccountRequest {
                name: "accounts/acme".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
}

async fn keyset_pages_filters_and_order(h: Harness) {
    h.seed().await;
    for i in 0..23 {
        let mut a = account(
            &format!("a{i:02}"),
            if i % 2 == 0 {
                "staff/ayse"
            } else {
                "staff/bob"
            },
        );
        a.mrc.as_mut().unwrap().minor_units = (i % 5) * 100_000;
        a.tier = if i % 3 == 0 {
            Tier::Premium as i32
        } else {
            Tier::Standard as i32
        };
        h.create_account(&admin(), &format!("a{i:02}"), a)
            .await
            .unwrap();
    }
    let filter =
        r#"account_manager = "staff/ayse" AND tier = STANDARD OR tier = PREMIUM"#.to_string();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = h
            .svc
            .list_accounts(h.req(
                &admin(),
                ListAccountsRequest {
                    page_size: 4,
                    page_token: token.clone(),
                    filter: filter.clone(),
                    order_by: "mrc.minor_units desc".into(),
                    show_deleted: false,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.accounts.len() <= 4);
        seen.extend(page.accounts);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // 12 of a00..a22 are ayse's; every one is standard or premium; plus acme (enterprise) is excluded.
    assert_eq!(seen.len(), 12, "every match once, none twice");
    assert_eq!(pages, 3);
    let mrcs: Vec<i64> = seen
        .iter()
        .map(|a| a.mrc.as_ref().unwrap().minor_units)
        .collect();
    let mut sorted = mrcs.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(mrcs, sorted, "ordered by MRC, highest first, across pages");
    let mut names: Vec<_> = seen.iter().map(|a| a.name.clone()).collect();
    names.dedup();
    assert_eq!(names.len(), 12);

    for (filter, order_by, size) in [("colour = red", "", 0), ("", "shoe_size", 0), ("", "", -1)] {
        let err = h
            .svc
            .list_accounts(h.req(
                &admin(),
                ListAccountsRequest {
                    page_size: size,
                    filter: filter.into(),
                    order_by: order_by.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let field = violations(&err)[0].clone();
        assert!(["filter", "order_by", "page_size"].contains(&field.as_str()));
    }
    let huge = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                page_size: 100_000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        huge.accounts.len(),
        25,
        "a page size above the maximum is coerced, not refused"
    );
}

async fn page_tokens_are_bound_to_their_list(h: Harness) {
    h.seed().await;
    for i in 0..5 {
        h.create_account(
            &admin(),
            &format!("p{i}"),
            account(&format!("p{i}"), "staff/ayse"),
        )
        .await
        .unwrap();
    }
    let first = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let changed = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
                filter: "tier = ENTERPRISE".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&changed), vec!["page_token"]);
    let mut forged = first.next_page_token.clone().into_bytes();
    forged[3] ^= 1;
    let forged = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                page_size: 2,
                page_token: String::from_utf8_lossy(&forged).into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&forged), vec!["page_token"]);
    let foreign = h
        .svc
        .list_staff_members(h.req(
            &admin(),
            ListStaffMembersRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&foreign), vec!["page_token"]);
    let other_size = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                page_size: 3,
                page_token: first.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        other_size.accounts.len(),
        3,
        "the page size may change between pages"
    );
}

async fn every_change_writes_one_event(h: Harness) {
    h.seed().await;
    let start = h.events().await.len();
    let a = h
        .create_account(&admin(), "ev", account("ev", "staff/ayse"))
        .await
        .unwrap();
    h.svc
        .update_account(h.req(
            &admin(),
            UpdateAccountRequest {
                account: Some(Account {
                    name: a.name.clone(),
                    billing_account: "B-1".into(),
                    etag: a.etag,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["billing_account".into()],
                }),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_account(h.req(
            &admin(),
            DeleteAccountRequest {
                name: a.name.clone(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let events = h.events().await;
    let new: Vec<_> = events[start..]
        .iter()
        .map(|e| (e.r#type.as_str(), e.subject.as_str(), e.account.as_str()))
        .collect();
    assert_eq!(
        new,
        vec![
            (
                "concierge.customers.v1.account_created",
                "accounts/ev",
                "accounts/ev"
            ),
            (
                "concierge.customers.v1.account_updated",
                "accounts/ev",
                "accounts/ev"
            ),
            (
                "concierge.customers.v1.account_deleted",
                "accounts/ev",
                "accounts/ev"
            ),
        ]
    );
    let payload = events.last().unwrap().payload.as_ref().unwrap();
    let account: Account = prost::Message::decode(payload.value.as_slice()).unwrap();
    assert_eq!(
        account.state,
        concierge_proto::customers::account::State::Deleted as i32
    );
    assert_eq!(account.billing_account, "B-1");
}

async fn sites_and_inventory(h: Harness) {
    h.seed().await;
    let item = |product: &str, role: InventoryRole| InventoryItem {
        kind: InventoryKind::Data as i32,
        product: product.into(),
        role: role as i32,
        carrier: "Lumen".into(),
        bandwidth_kbps: 10_240,
        monitored: true,
        monitoring_tool: "PRTG".into(),
        mrc: Some(Money {
            currency_code: "USD".into(),
            minor_units: 120_000,
        }),
        state: inventory_item::State::Active as i32,
        ..Default::default()
    };
    h.svc
        .create_site(h.req(
            &admin(),
            CreateSiteRequest {
                parent: "accounts/acme".into(),
                site: Some(Site {
                    display_name: "Dallas".into(),
                    time_zone: "America/Chicago".into(),
                    ..Default::default()
                }),
                site_id: "dallas".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    for (site, id, product, role) in [
        (
            "hq",
            "dia",
            "Dedicated Internet 10 Mb",
            InventoryRole::Primary,
        ),
        ("hq", "lte", "4G backup", InventoryRole::Backup),
        ("dallas", "dsl", "DSL", InventoryRole::Secondary),
    ] {
        h.svc
            .create_inventory_item(h.req(
                &admin(),
                CreateInventoryItemRequest {
                    parent: format!("accounts/acme/sites/{site}"),
                    inventory_item: Some(item(product, role)),
                    inventory_item_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }
    let nowhere = h
        .svc
        .create_inventory_item(h.req(
            &admin(),
            CreateInventoryItemRequest {
                parent: "accounts/acme/sites/nowhere".into(),
                inventory_item: Some(item("x", InventoryRole::Primary)),
                inventory_item_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), Code::NotFound);
    let unmonitored = h
        .svc
        .create_inventory_item(h.req(
            &admin(),
            CreateInventoryItemRequest {
                parent: "accounts/acme/sites/hq".into(),
                inventory_item: Some(InventoryItem {
                    monitoring_tool: String::new(),
                    ..item("x", InventoryRole::Primary)
                }),
                inventory_item_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&unmonitored),
        vec!["inventory_item.monitoring_tool"]
    );
    let all = h
        .svc
        .list_inventory_items(h.req(
            &admin(),
            ListInventoryItemsRequest {
                parent: "accounts/acme/sites/-".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.inventory_items.len(),
        3,
        "the wildcard lists every site of the account"
    );
    let everywhere = h
        .svc
        .list_inventory_items(h.req(
            &admin(),
            ListInventoryItemsRequest {
                parent: "accounts/-/sites/-".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        everywhere.inventory_items.len(),
        3,
        "every site of every account, as the collection documents"
    );
    let backups = h
        .svc
        .list_inventory_items(h.req(
            &admin(),
            ListInventoryItemsRequest {
                parent: "accounts/acme/sites/hq".into(),
                filter: "role != PRIMARY".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        backups
            .inventory_items
            .iter()
            .map(|i| i.product.as_str())
            .collect::<Vec<_>>(),
        vec!["4G backup"]
    );
    let busy = h
        .svc
        .delete_site(h.req(
            &admin(),
            DeleteSiteRequest {
                name: "accounts/acme/sites/hq".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    assert_eq!(reason(&busy), "SITE_HAS_INVENTORY");
}

async fn one_client_delegate_per_account(h: Harness) {
    h.seed().await;
    let contact = |name: &str, delegate: bool| Contact {
        display_name: name.into(),
        email: format!("{}@acme.example", name.to_lowercase()),
        roles: vec![ContactRole::Primary as i32],
        client_delegate: delegate,
        preferred_channel: ContactChannel::Email as i32,
        language_code: "tr".into(),
        ..Default::default()
    };
    let create = |c: Contact, id: &str| {
        h.svc.create_contact(h.req(
            &admin(),
            CreateContactRequest {
                parent: "accounts/acme".into(),
                contact: Some(c),
                contact_id: id.into(),
                request_id: String::new(),
            },
        ))
    };
    create(contact("Deniz", true), "deniz").await.unwrap();
    let second = create(contact("Emre", true), "emre").await.unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition);
    assert_eq!(reason(&second), "CLIENT_DELEGATE_TAKEN");
    create(contact("Emre", false), "emre").await.unwrap();
    let bad = create(
        Contact {
            email: "not-an-address".into(),
            roles: vec![],
            ..contact("X", false)
        },
        "x",
    )
    .await
    .unwrap_err();
    let mut fields = violations(&bad);
    fields.sort();
    assert_eq!(fields, vec!["contact.email", "contact.roles"]);
}

async fn escalation_chain_and_loops(h: Harness) {
    h.seed().await;
    let chain = h
        .svc
        .get_escalation_chain(h.req(
            &admin(),
            GetEscalationChainRequest {
                name: "staff/ayse".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        chain
            .managers
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        vec!["staff/mira"]
    );
    let looped = h
        .svc
        .update_staff_member(h.req(
            &admin(),
            UpdateStaffMemberRequest {
                staff_member: Some(StaffMember {
                    name: "staff/mira".into(),
                    manager: "staff/ayse".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["manager".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&looped), vec!["staff_member.manager"]);
}

async fn follow_up_lifecycle(h: Harness) {
    h.seed().await;
    let agent = principal(Role::Agent, None, Some("staff/ayse"));
    let f = h
        .svc
        .create_follow_up(h.req(
            &agent,
            CreateFollowUpRequest {
                parent: "accounts/acme".into(),
                follow_up: Some(FollowUp {
                    summary: "Check the circuit is stable after the repair".into(),
                    due_time: Some(prost_types::Timestamp {
                        seconds: 1_800_000_000,
                        nanos: 0,
                    }),
                    owner: "staff/ayse".into(),
                    case: "cases/c-1".into(),
                    ..Default::default()
                }),
                follow_up_id: "check".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.state, follow_up::State::Open as i32);
    let done = h
        .svc
        .complete_follow_up(h.req(
            &agent,
            CompleteFollowUpRequest {
                name: f.name.clone(),
                outcome: "stable".into(),
                etag: f.etag,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state, follow_up::State::Done as i32);
    assert!(done.close_time.is_some());
    let twice = h
        .svc
        .cancel_follow_up(h.req(
            &agent,
            CancelFollowUpRequest {
                name: f.name,
                reason: "x".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&twice), "FOLLOW_UP_CLOSED");
    let open = h
        .svc
        .list_follow_ups(h.req(
            &agent,
            ListFollowUpsRequest {
                parent: "accounts/acme".into(),
                filter: "state = OPEN".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(open.follow_ups.is_empty());
}

/// What each principal gets for each kind of resource, on its own account
/// (acme, ayse's portfolio) and on another (globex, bob's).
async fn authorisation_matrix(h: Harness) {
    h.seed().await;
    let interaction = |account: &str| CreateInteractionRequest {
        parent: format!("accounts/{account}"),
        interaction: Some(Interaction {
            channel: ContactChannel::Phone as i32,
            direction: Direction::Inbound as i32,
            occur_time: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            }),
            summary: "Client called about the outage".into(),
            ..Default::default()
        }),
        interaction_id: String::new(),
        request_id: String::new(),
    };
    let logged = h
        .svc
        .create_interaction(h.req(&admin(), interaction("acme")))
        .await
        .unwrap()
        .into_inner();
    let globex_log = h
        .svc
        .create_interaction(h.req(&admin(), interaction("globex")))
        .await
        .unwrap()
        .into_inner();

    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD};
    let principals = [
        ("admin", admin()),
        (
            "manager",
            principal(Role::Manager, None, Some("staff/mira")),
        ),
        (
            "ayse (AM of acme)",
            principal(Role::AccountManager, None, Some("staff/ayse")),
        ),
        ("agent", principal(Role::Agent, None, Some("staff/zeki"))),
        (
            "client of acme",
            principal(Role::Client, Some("accounts/acme"), None),
        ),
    ];
    // Expected codes per principal, in this order:
    // read acme account, read globex account, write acme site, write globex site,
    // read acme interaction, read globex interaction, log acme interaction,
    // log globex interaction, read staff, write staff.
    let expected: [[Code; 10]; 5] = [
        [OK, OK, OK, OK, OK, OK, OK, OK, OK, OK],
        [OK, OK, OK, OK, OK, OK, OK, OK, OK, OK],
        [OK, OK, OK, PD, OK, OK, OK, OK, OK, PD],
        [OK, OK, PD, PD, OK, OK, OK, OK, OK, PD],
        [OK, NF, PD, NF, PD, NF, PD, NF, PD, PD],
    ];
    let code = |r: Result<(), Status>| r.map(|_| Code::Ok).unwrap_or_else(|s| s.code());
    for ((label, p), want) in principals.iter().zip(expected) {
        let site = |account: &str| UpdateSiteRequest {
            site: Some(Site {
                name: format!("accounts/{account}/sites/hq"),
                display_name: format!("HQ by {label}"),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into()],
            }),
        };
        let got = [
            code(
                h.svc
                    .get_account(h.req(
                        p,
                        GetAccountRequest {
                            name: "accounts/acme".into(),
                        },
                    ))
                    .await
                    .map(drop),
            ),
            code(
                h.svc
                    .get_account(h.req(
                        p,
                        GetAccountRequest {
                            name: "accounts/globex".into(),
                        },
                    ))
                    .await
                    .map(drop),
            ),
            code(h.svc.update_site(h.req(p, site("acme"))).await.map(drop)),
            code(h.svc.update_site(h.req(p, site("globex"))).await.map(drop)),
            code(
                h.svc
                    .get_interaction(h.req(
                        p,
                        GetInteractionRequest {
                            name: logged.name.clone(),
                        },
                    ))
                    .await
                    .map(drop),
            ),
            code(
                h.svc
                    .get_interaction(h.req(
                        p,
                        GetInteractionRequest {
                            name: globex_log.name.clone(),
                        },
                    ))
                    .await
                    .map(drop),
            ),
            code(
                h.svc
                    .create_interaction(h.req(p, interaction("acme")))
                    .await
                    .map(drop),
            ),
            code(
                h.svc
                    .create_interaction(h.req(p, interaction("globex")))
                    .await
                    .map(drop),
            ),
            code(
                h.svc
                    .get_staff_member(h.req(
                        p,
                        GetStaffMemberRequest {
                            name: "staff/ayse".into(),
                        },
                    ))
                    .await
                    .map(drop),
            ),
            code(
                h.svc
                    .update_staff_member(h.req(
                        p,
                        UpdateStaffMemberRequest {
                            staff_member: Some(StaffMember {
                                name: "staff/bob".into(),
                                team: "billing".into(),
                                ..Default::default()
                            }),
                            update_mask: Some(FieldMask {
                                paths: vec!["team".into()],
                            }),
                        },
                    ))
                    .await
                    .map(drop),
            ),
        ];
        assert_eq!(got, want, "{label}");
    }
    // A client cannot tell a missing account from another client's.
    let client = principal(Role::Client, Some("accounts/acme"), None);
    let ghost = h
        .svc
        .get_account(h.req(
            &client,
            GetAccountRequest {
                name: "accounts/ghost".into(),
            },
        ))
        .await
        .unwrap_err();
    let other = h
        .svc
        .get_account(h.req(
            &client,
            GetAccountRequest {
                name: "accounts/globex".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (ghost.code(), ghost.message().replace("ghost", "X")),
        (other.code(), other.message().replace("globex", "X"))
    );
    // No principal, or a forged one, is UNAUTHENTICATED.
    let anonymous = h
        .svc
        .get_account(Request::new(GetAccountRequest {
            name: "accounts/acme".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let mut forged = Request::new(GetAccountRequest {
        name: "accounts/acme".into(),
    });
    let other_codec = PrincipalCodec::new("not-the-shared-secret".into());
    forged.metadata_mut().insert(
        PRINCIPAL_HEADER,
        other_codec
            .encode(&admin(), concierge_customers::SERVICE_NAME)
            .parse()
            .unwrap(),
    );
    assert_eq!(
        h.svc.get_account(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // An account manager cannot hand an account to itself from another portfolio.
    let ayse = principal(Role::AccountManager, None, Some("staff/ayse"));
    let grab = h
        .svc
        .update_account(h.req(
            &ayse,
            UpdateAccountRequest {
                account: Some(Account {
                    name: "accounts/globex".into(),
                    account_manager: "staff/ayse".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["account_manager".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(grab.code(), Code::PermissionDenied);
    let give_away = h
        .svc
        .create_account(h.req(
            &ayse,
            CreateAccountRequest {
                account: Some(account("newco", "staff/bob")),
                account_id: "newco".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(give_away.code(), Code::PermissionDenied);
}

async fn client_lists_only_its_own_account(h: Harness) {
    h.seed().await;
    let client = principal(Role::Client, Some("accounts/acme"), None);
    let accounts = h
        .svc
        .list_accounts(h.req(&client, ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        accounts
            .accounts
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        vec!["accounts/acme"]
    );
    let sites = h
        .svc
        .list_sites(h.req(
            &client,
            ListSitesRequest {
                parent: "accounts/acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sites.sites.len(), 1);
    let other = h
        .svc
        .list_sites(h.req(
            &client,
            ListSitesRequest {
                parent: "accounts/globex".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    assert_eq!(
        other.message(),
        "Account accounts/globex not found",
        "the account the client cannot see is named, not a site"
    );
    let staff = h
        .svc
        .list_staff_members(h.req(&client, ListStaffMembersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(staff.code(), Code::PermissionDenied);
    let log = h
        .svc
        .list_interactions(h.req(
            &client,
            ListInteractionsRequest {
                parent: "accounts/acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(log.code(), Code::PermissionDenied);
}

async fn concurrent_writers_all_land_and_duplicates_create_once(h: Harness) {
    h.seed().await;
    let h = Arc::new(h);
    // Different accounts written at once: every one lands.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.create_account(
                &admin(),
                &format!("c{i:02}"),
                account(&format!("c{i:02}"), "staff/ayse"),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The same request sent eight times at once: one account, and every
    // answer is that account (a duplicate waits for the first to commit,
    // then gets its response).
    let req = CreateAccountRequest {
        account: Some(Account {
            display_name: "Dup Corp".into(),
            ..account("dup", "staff/ayse")
        }),
        account_id: String::new(),
        request_id: "dup-request-1".into(),
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let h = h.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            h.svc
                .create_account(h.req(&admin(), req))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut names = std::collections::BTreeSet::new();
    for t in tasks {
        names.insert(t.await.unwrap().unwrap().name);
    }
    let retried = h
        .svc
        .create_account(h.req(&admin(), req))
        .await
        .unwrap()
        .into_inner();
    names.insert(retried.name.clone());
    assert_eq!(names.len(), 1, "{names:?}");
    let listed = h
        .svc
        .list_accounts(h.req(
            &admin(),
            ListAccountsRequest {
                filter: r#"display_name = "Dup Corp""#.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
}

/// Every kind of change the service makes, then the outbox read as a
/// consumer reads it: each event's type is a value of the catalogue
/// (`customers/v1/events.proto`), its payload the message that value
/// declares, its visibility within the declared audience, and every
/// declared type is emitted by something (nothing listed that never happens).
async fn every_event_is_declared_in_the_catalogue(h: Harness) {
    h.seed().await;
    let a = admin();
    let mask = |p: &str| {
        Some(FieldMask {
            paths: vec![p.into()],
        })
    };
    h.svc
        .update_account(h.req(
            &a,
            UpdateAccountRequest {
                account: Some(Account {
                    name: "accounts/acme".into(),
                    billing_account: "B-7".into(),
                    ..Default::default()
                }),
                update_mask: mask("billing_account"),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_account(h.req(
            &a,
            DeleteAccountRequest {
                name: "accounts/globex".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    h.svc
        .undelete_account(h.req(
            &a,
            UndeleteAccountRequest {
                name: "accounts/globex".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let contact = h
        .svc
        .create_contact(h.req(
            &a,
            CreateContactRequest {
                parent: "accounts/acme".into(),
                contact: Some(Contact {
                    display_name: "Deniz".into(),
                    email: "deniz@acme.example".into(),
                    roles: vec![ContactRole::Primary as i32],
                    preferred_channel: ContactChannel::Email as i32,
                    ..Default::default()
                }),
                contact_id: "deniz".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .update_contact(h.req(
            &a,
            UpdateContactRequest {
                contact: Some(Contact {
                    name: contact.name.clone(),
                    display_name: "Deniz Y.".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_contact(h.req(
            &a,
            DeleteContactRequest {
                name: contact.name,
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let item = h
        .svc
        .create_inventory_item(h.req(
            &a,
            CreateInventoryItemRequest {
                parent: "accounts/acme/sites/hq".into(),
                inventory_item: Some(InventoryItem {
                    kind: InventoryKind::Data as i32,
                    product: "Dedicated Internet 10 Mb".into(),
                    role: InventoryRole::Primary as i32,
                    carrier: "Lumen".into(),
                    state: inventory_item::State::Active as i32,
                    ..Default::default()
                }),
                inventory_item_id: "dia".into(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.svc
        .update_inventory_item(h.req(
            &a,
            UpdateInventoryItemRequest {
                inventory_item: Some(InventoryItem {
                    name: item.name.clone(),
                    carrier: "Zayo".into(),
                    ..Default::default()
                }),
                update_mask: mask("carrier"),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_inventory_item(h.req(
            &a,
            DeleteInventoryItemRequest {
                name: item.name,
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    h.svc
        .update_site(h.req(
            &a,
            UpdateSiteRequest {
                site: Some(Site {
                    name: "accounts/acme/sites/hq".into(),
                    display_name: "Head office".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
            },
        ))
        .await
        .unwrap();
    h.svc
        .delete_site(h.req(
            &a,
            DeleteSiteRequest {
                name: "accounts/acme/sites/hq".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    h.svc
        .create_interaction(h.req(
            &a,
            CreateInteractionRequest {
                parent: "accounts/acme".into(),
                interaction: Some(Interaction {
                    channel: ContactChannel::Phone as i32,
                    direction: Direction::Inbound as i32,
                    occur_time: Some(prost_types::Timestamp {
                        seconds: 1_790_000_000,
                        nanos: 0,
                    }),
                    summary: "Client called about the outage".into(),
                    ..Default::default()
                }),
                interaction_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    for (id, cancel) in [("check", false), ("call-back", true)] {
        let f = h
            .svc
            .create_follow_up(h.req(
                &a,
                CreateFollowUpRequest {
                    parent: "accounts/acme".into(),
                    follow_up: Some(FollowUp {
                        summary: "Check the circuit is stable".into(),
                        due_time: Some(prost_types::Timestamp {
                            seconds: 1_800_000_000,
                            nanos: 0,
                        }),
                        owner: "staff/ayse".into(),
                        ..Default::default()
                    }),
                    follow_up_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        h.svc
            .update_follow_up(h.req(
                &a,
                UpdateFollowUpRequest {
                    follow_up: Some(FollowUp {
                        name: f.name.clone(),
                        summary: "Check the circuit is stable after the repair".into(),
                        ..Default::default()
                    }),
                    update_mask: mask("summary"),
                },
            ))
            .await
            .unwrap();
        if cancel {
            h.svc
                .cancel_follow_up(h.req(
                    &a,
                    CancelFollowUpRequest {
                        name: f.name,
                        reason: "no longer needed".into(),
                        etag: String::new(),
                    },
                ))
                .await
                .unwrap();
        } else {
            h.svc
                .complete_follow_up(h.req(
                    &a,
                    CompleteFollowUpRequest {
                        name: f.name,
                        outcome: "stable".into(),
                        etag: String::new(),
                    },
                ))
                .await
                .unwrap();
        }
    }
    h.svc
        .update_staff_member(h.req(
            &a,
            UpdateStaffMemberRequest {
                staff_member: Some(StaffMember {
                    name: "staff/bob".into(),
                    team: "enterprise".into(),
                    ..Default::default()
                }),
                update_mask: mask("team"),
            },
        ))
        .await
        .unwrap();

    testing::assert_events_match_catalogue::<EventType>("customers", &h.events().await);
}
