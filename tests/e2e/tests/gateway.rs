//! The gateway in front of a real customers service, both serving gRPC on
//! loopback ports, called the way an SDK user calls them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{SharedClock, SystemClock};
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::server::{self, Running, Serve};
use concierge_common::testing::{Backend, TestDb, eventually};
use concierge_customers::Customers;
use concierge_gateway::keys::{self, NewKey};
use concierge_gateway::oidc::OidcConfig;
use concierge_gateway::{Gateway, Limits};
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::*;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

struct Stack {
    gateway_url: String,
    service_url: String,
    admin_key: String,
    gateway_db: TestDb,
    codec: PrincipalCodec,
    _servers: Vec<Running>,
    _dbs: Vec<TestDb>,
}

async fn serve(routes: tonic::service::Routes, names: Vec<String>) -> Running {
    server::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        routes,
        Serve {
            health_names: names,
            grace_period: Duration::from_secs(1),
            drain_delay: Duration::ZERO,
        },
        async { Ok(()) },
        std::future::pending(),
    )
    .await
    .unwrap()
}

async fn stack(limits: Limits, oidc: Option<OidcConfig>) -> Stack {
    let codec = PrincipalCodec::new("shared-internal-secret".into());
    let clock: SharedClock = Arc::new(SystemClock);
    let customers_db = TestDb::new(Backend::Sqlite, "gateway").await.unwrap();
    let customers = Customers::open(customers_db.db.clone(), codec.clone(), clock.clone())
        .await
        .unwrap();
    let service = serve(
        tonic::service::Routes::new(customers.server()),
        vec![concierge_customers::SERVICE_NAME.into()],
    )
    .await;
    let service_url = format!("http://{}", service.addr);
    let gateway_db = TestDb::new(Backend::Sqlite, "gateway").await.unwrap();
    let backends = BTreeMap::from([(
        concierge_customers::SERVICE_NAME,
        concierge_gateway::remote(&service_url, 2).unwrap(),
    )]);
    let gw = Gateway::open(
        gateway_db.db.clone(),
        codec.clone(),
        clock.clone(),
        limits,
        oidc,
        backends,
        None,
    )
    .await
    .unwrap();
    let gateway = serve(gw.routes(), gw.service_names()).await;
    let admin_key = keys::mint(
        &gateway_db.db,
        NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "admin".into(),
            expire_time: None,
        },
        jiff::Timestamp::now(),
    )
    .await
    .unwrap()
    .key;
    let stack = Stack {
        gateway_url: format!("http://{}", gateway.addr),
        service_url,
        admin_key,
        gateway_db,
        codec,
        _servers: vec![gateway, service],
        _dbs: vec![customers_db],
    };
    let sdk = stack.sdk(&stack.admin_key);
    for id in ["acme", "globex"] {
        sdk.customers()
            .create_account(CreateAccountRequest {
                account: Some(Account {
                    display_name: format!("{id} Corp"),
                    tier: Tier::Enterprise as i32,
                    time_zone: "Europe/Istanbul".into(),
                    ..Default::default()
                }),
                account_id: id.into(),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    stack
}

impl Stack {
    fn sdk(&self, key: &str) -> concierge_sdk::Client {
        concierge_sdk::Client::builder(self.gateway_url.clone())
            .api_key(key)
            .build()
            .unwrap()
    }

    async fn key(&self, role: Role, account: Option<&str>) -> String {
        keys::mint(
            &self.gateway_db.db,
            NewKey {
                role,
                account: account.map(String::from),
                staff_member: None,
                display_name: "test".into(),
                expire_time: None,
            },
            jiff::Timestamp::now(),
        )
        .await
        .unwrap()
        .key
    }

    async fn raw(&self) -> CustomersServiceClient<Channel> {
        CustomersServiceClient::connect(self.gateway_url.clone())
            .await
            .unwrap()
    }
}

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn get(name: &str) -> GetAccountRequest {
    GetAccountRequest { name: name.into() }
}

#[tokio::test]
async fn calls_without_valid_credentials_are_unauthenticated() {
    let s = stack(Limits::default(), None).await;
    let mut raw = s.raw().await;
    let none = raw.get_account(get("accounts/acme")).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    let (id_part, _) = s.admin_key.rsplit_once('_').unwrap();
    for bad in [
        "garbage",
        "ck_nope_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &format!("{id_part}_{}", "x".repeat(43)),
    ] {
        let err = s
            .sdk(bad)
            .customers()
            .get_account(get("accounts/acme"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad}");
        assert_eq!(
            err.get_error_details().error_info().unwrap().reason,
            "UNAUTHENTICATED"
        );
    }
    let ok = s
        .sdk(&s.admin_key)
        .customers()
        .get_account(get("accounts/acme"))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().display_name, "acme Corp");
}

#[tokio::test]
async fn a_client_key_sees_only_its_account_even_with_a_forged_principal() {
    let s = stack(Limits::default(), None).await;
    let key = s.key(Role::Client, Some("accounts/acme")).await;
    let mut c = s.sdk(&key).customers();
    assert_eq!(
        c.get_account(get("accounts/acme"))
            .await
            .unwrap()
            .into_inner()
            .name,
        "accounts/acme"
    );
    assert_eq!(
        c.get_account(get("accounts/globex"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // A client that sends its own principal header, signed or not, is still itself.
    let forged = s.codec.encode(
        &Principal {
            subject: "apiKeys/evil".into(),
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "evil".into(),
        },
        concierge_customers::SERVICE_NAME,
    );
    let mut req = tonic::Request::new(get("accounts/globex"));
    req.metadata_mut()
        .insert(PRINCIPAL_HEADER, forged.parse().unwrap());
    assert_eq!(c.get_account(req).await.unwrap_err().code(), Code::NotFound);
    let listed = c
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
    let write = c
        .create_account(CreateAccountRequest {
            account: None,
            account_id: "x".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_service_refuses_calls_that_bypass_the_gateway() {
    let s = stack(Limits::default(), None).await;
    let mut direct = CustomersServiceClient::connect(s.service_url.clone())
        .await
        .unwrap();
    let mut req = tonic::Request::new(get("accounts/acme"));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", s.admin_key).parse().unwrap(),
    );
    assert_eq!(
        direct.get_account(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn each_principal_is_rate_limited_on_its_own() {
    let s = stack(
        Limits {
            requests_per_second: 1,
            burst: 2,
            ..Limits::default()
        },
        None,
    )
    .await;
    let fresh = s.key(Role::Manager, None).await;
    let mut admin = s.sdk(&fresh).customers();
    // The burst is served; right after it, the principal is held back. (A
    // slow machine may refill a token between calls, so keep calling: at one
    // per second, a few dozen quick calls always run dry.)
    let mut codes = Vec::new();
    let mut limited = None;
    for _ in 0..50 {
        match admin.get_account(get("accounts/acme")).await {
            Ok(_) => codes.push(Code::Ok),
            Err(e) if e.code() == Code::ResourceExhausted => {
                limited = Some(e);
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(codes.len() >= 2, "the burst of 2 is served: {codes:?}");
    let limited = limited.expect("the principal is rate limited after its burst");
    let retry = limited
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay);
    assert!(
        retry.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(1)),
        "{retry:?}"
    );
    let other = s.key(Role::Agent, None).await;
    s.sdk(&other)
        .customers()
        .get_account(get("accounts/acme"))
        .await
        .unwrap();
}

#[tokio::test]
async fn request_ids_are_assigned_or_kept() {
    let s = stack(Limits::default(), None).await;
    let mut c = s.sdk(&s.admin_key).customers();
    let assigned = c.get_account(get("accounts/acme")).await.unwrap();
    assert!(!assigned.metadata().get("x-request-id").unwrap().is_empty());
    let mut req = tonic::Request::new(get("accounts/acme"));
    req.metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let kept = c.get_account(req).await.unwrap();
    assert_eq!(kept.metadata().get("x-request-id").unwrap(), "trace-me-42");
}

#[tokio::test]
async fn health_and_reflection_answer_for_every_public_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let s = stack(Limits::default(), None).await;
    let mut health = HealthClient::new(channel(&s.gateway_url).await);
    for service in ["", concierge_customers::SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel(&s.gateway_url).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        concierge_customers::SERVICE_NAME,
        "concierge.gateway.v1.GatewayService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // Only what this gateway serves (its own service among them): it routes
    // no cases service, and no deployment serves disputes yet.
    for unserved in [
        "concierge.cases.v1.CasesService",
        "concierge.disputes.v1.DisputesService",
        "concierge.csat.v1.CsatService",
        "concierge.testing.v1.TestClockService",
    ] {
        assert!(
            !names.iter().any(|n| n == unserved),
            "{unserved} listed but not served: {names:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_backend_is_unavailable_with_retry_info() {
    let codec = PrincipalCodec::new("shared-internal-secret".into());
    let db = TestDb::new(Backend::Sqlite, "unavailable").await.unwrap();
    // A port that was just free: nothing listens there.
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let backends = BTreeMap::from([(
        concierge_customers::SERVICE_NAME,
        concierge_gateway::remote(&format!("http://{free}"), 1).unwrap(),
    )]);
    let gw = Gateway::open(
        db.db.clone(),
        codec,
        Arc::new(SystemClock),
        Limits::default(),
        None,
        backends,
        None,
    )
    .await
    .unwrap();
    let running = serve(gw.routes(), gw.service_names()).await;
    let key = keys::mint(
        &db.db,
        NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "a".into(),
            expire_time: None,
        },
        jiff::Timestamp::now(),
    )
    .await
    .unwrap()
    .key;
    let client = concierge_sdk::Client::builder(format!("http://{}", running.addr))
        .api_key(key)
        .build()
        .unwrap();
    let err = client
        .customers()
        .get_account(get("accounts/acme"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.get_error_details().retry_info().is_some());
}

const EC_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGbosrB4XqffaTZXN
ELuk8Xartx4CnK9a4j5Q3zxlYFehRANCAARk++TwCRH4yhOLBV7e+TbDv4uago9f
uODZffPsgkYHsaFb/fmpFTs3wU5cGKbY4Al0ZwWwaspC6NTh69IYgfEM
-----END PRIVATE KEY-----
";

/// Serves a JWKS document over HTTP/1.1 on loopback, as an identity provider does.
async fn jwks_server() -> String {
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": "ZPvk8AkR-MoTiwVe3vk2w7-LmoKPX7jg2X3z7IJGB7E",
        "y": "oVv9-akVOzfBTlwYptjgCXRnBbBqykLo1OHr0hiB8Qw"
    }]})
    .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            let body = jwks.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn token(claims: serde_json::Value, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn oidc_tokens_are_checked_for_signature_issuer_audience_and_expiry() {
    let oidc = OidcConfig {
        issuer: "https://id.example.com".into(),
        audience: "concierge".into(),
        jwks_url: jwks_server().await,
        role_claim: "concierge_role".into(),
        account_claim: "concierge_account".into(),
        staff_member_claim: "concierge_staff_member".into(),
        jwks_ttl: Duration::from_secs(600),
    };
    let s = stack(Limits::default(), Some(oidc)).await;
    let now = jiff::Timestamp::now().as_second();
    let claims = |iss: &str, aud: &str, exp: i64| {
        serde_json::json!({
            "iss": iss, "aud": aud, "exp": exp, "iat": now, "sub": "person-1", "name": "Deniz",
            "concierge_role": "client", "concierge_account": "accounts/acme"
        })
    };
    let good = token(
        claims("https://id.example.com", "concierge", now + 300),
        "k1",
    );
    let mut c = s.sdk(&good).customers();
    assert_eq!(
        c.get_account(get("accounts/acme"))
            .await
            .unwrap()
            .into_inner()
            .name,
        "accounts/acme"
    );
    assert_eq!(
        c.get_account(get("accounts/globex"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    for (why, bad) in [
        (
            "expired",
            token(
                claims("https://id.example.com", "concierge", now - 600),
                "k1",
            ),
        ),
        (
            "wrong issuer",
            token(
                claims("https://evil.example.com", "concierge", now + 300),
                "k1",
            ),
        ),
        (
            "wrong audience",
            token(
                claims("https://id.example.com", "other-app", now + 300),
                "k1",
            ),
        ),
        (
            "unknown key",
            token(
                claims("https://id.example.com", "concierge", now + 300),
                "k2",
            ),
        ),
        ("tampered", format!("{}x", &good[..good.len() - 1])),
    ] {
        let err = s
            .sdk(&bad)
            .customers()
            .get_account(get("accounts/acme"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "{why}: {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn health_turns_not_serving_when_the_server_drains() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let routes = tonic::service::Routes::default();
    let running = server::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        routes,
        Serve {
            health_names: vec!["x.v1.X".into()],
            grace_period: Duration::from_secs(2),
            drain_delay: Duration::ZERO,
        },
        async move {
            let _ = ready_rx.await;
            Ok(())
        },
        async move {
            let _ = rx.await;
        },
    )
    .await
    .unwrap();
    let mut health = HealthClient::new(channel(&format!("http://{}", running.addr)).await);
    let status = |h: &mut HealthClient<Channel>| {
        let mut h = h.clone();
        async move {
            h.check(HealthCheckRequest {
                service: "x.v1.X".into(),
            })
            .await
            .map(|r| r.into_inner().status)
        }
    };
    assert_eq!(
        status(&mut health).await.unwrap(),
        ServingStatus::NotServing as i32,
        "not serving until ready"
    );
    ready_tx.send(()).unwrap();
    eventually(Duration::from_secs(5), "SERVING once ready", || {
        let f = status(&mut health);
        async move { f.await.ok() == Some(ServingStatus::Serving as i32) }
    })
    .await;
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "x.v1.X".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    tx.send(()).unwrap();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "draining says NOT_SERVING"
    );
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("drains within the grace period")
        .unwrap();
}

#[tokio::test]
async fn a_hanging_backend_ends_at_the_callers_deadline_or_the_default_one() {
    let codec = PrincipalCodec::new("shared-internal-secret".into());
    let db = TestDb::new(Backend::Sqlite, "deadline").await.unwrap();
    let hangs = tower::service_fn(|_request: http::Request<tonic::body::Body>| {
        std::future::pending::<Result<http::Response<tonic::body::Body>, std::convert::Infallible>>(
        )
    });
    let backends = BTreeMap::from([(
        concierge_customers::SERVICE_NAME,
        concierge_gateway::local(hangs),
    )]);
    let limits = Limits {
        default_deadline: Duration::from_millis(800),
        max_deadline: Duration::from_millis(1500),
        ..Limits::default()
    };
    let gw = Gateway::open(
        db.db.clone(),
        codec,
        Arc::new(SystemClock),
        limits,
        None,
        backends,
        None,
    )
    .await
    .unwrap();
    let running = serve(gw.routes(), gw.service_names()).await;
    let key = keys::mint(
        &db.db,
        NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "a".into(),
            expire_time: None,
        },
        jiff::Timestamp::now(),
    )
    .await
    .unwrap()
    .key;
    let url = format!("http://{}", running.addr);
    // A caller without a deadline gets the gateway's default one.
    let mut raw = CustomersServiceClient::new(channel(&url).await);
    let mut req = tonic::Request::new(get("accounts/acme"));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let started = std::time::Instant::now();
    let err = raw.get_account(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(1400),
        "{elapsed:?}"
    );
    // A caller asking for more than the longest deadline gets the longest.
    let started = std::time::Instant::now();
    let mut req = tonic::Request::new(get("accounts/acme"));
    req.set_timeout(Duration::from_secs(60));
    let client = concierge_sdk::Client::builder(url.clone())
        .api_key(key.clone())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let err = client.customers().get_account(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

/// Calls `path` on the gateway with an empty message, as a client generated
/// from other contracts (or a scanner) would, with `key` when given.
async fn call_path(url: &str, path: &str, key: Option<&str>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel(url).await);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(GetAccountRequest::default());
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    grpc.unary::<_, Account, _>(
        request,
        http::uri::PathAndQuery::try_from(path).unwrap(),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn unserved_services_answer_unimplemented_after_authentication() {
    let s = stack(Limits::default(), None).await;
    let disputes = "/concierge.disputes.v1.DisputesService/GetDispute";
    let anonymous = call_path(&s.gateway_url, disputes, None).await;
    assert_eq!(
        anonymous.code(),
        Code::Unauthenticated,
        "{}",
        anonymous.message()
    );
    let known = call_path(&s.gateway_url, disputes, Some(&s.admin_key)).await;
    assert_eq!(known.code(), Code::Unimplemented, "{}", known.message());
    assert!(
        known
            .message()
            .contains("concierge.disputes.v1.DisputesService is not served"),
        "{}",
        known.message()
    );
    for path in [
        "/concierge.cases.v1.CasesService/GetCase",
        "/concierge.testing.v1.TestClockService/AdvanceTestClock",
    ] {
        let status = call_path(&s.gateway_url, path, Some(&s.admin_key)).await;
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        assert!(status.message().contains("not served"), "{status:?}");
    }
    let unknown = call_path(&s.gateway_url, "/no.such.Service/Nope", Some(&s.admin_key)).await;
    assert_eq!(unknown.code(), Code::Unimplemented, "{}", unknown.message());
    assert!(
        unknown.message().contains("/no.such.Service/Nope"),
        "{}",
        unknown.message()
    );
    // A method a served service lacks is the service's own UNIMPLEMENTED.
    let missing = call_path(
        &s.gateway_url,
        "/concierge.customers.v1.CustomersService/Nope",
        Some(&s.admin_key),
    )
    .await;
    assert_eq!(missing.code(), Code::Unimplemented, "{missing:?}");
}

#[tokio::test]
async fn a_storm_of_bad_keys_from_one_peer_is_held_back() {
    let s = stack(
        Limits {
            failed_authentications_per_second: 1,
            failed_authentications_burst: 5,
            ..Limits::default()
        },
        None,
    )
    .await;
    // A key in use before the storm: the gateway already knows it.
    let mut admin = s.sdk(&s.admin_key).customers();
    admin.get_account(get("accounts/acme")).await.unwrap();
    let mut codes = Vec::new();
    let mut limited = None;
    for i in 0..40 {
        let bad = format!("ck_storm{i}_{}", "x".repeat(43));
        let err = s
            .sdk(&bad)
            .customers()
            .get_account(get("accounts/acme"))
            .await
            .unwrap_err();
        match err.code() {
            Code::Unauthenticated => codes.push(err.code()),
            Code::ResourceExhausted => {
                limited = Some(err);
                break;
            }
            _ => panic!("{err:?}"),
        }
    }
    // Looking up the admin key when the stack was set up spent one of the 5.
    assert!(codes.len() >= 4, "the burst is answered: {codes:?}");
    let limited = limited.expect("the peer is held back after its burst of failures");
    let retry = limited
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay);
    assert!(
        retry.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(1)),
        "{retry:?}"
    );
    // Without credentials at all it is held back too.
    let none = s
        .raw()
        .await
        .get_account(get("accounts/acme"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::ResourceExhausted, "{none:?}");
    // The principal whose key the gateway already verified is not.
    admin.get_account(get("accounts/acme")).await.unwrap();
}

#[tokio::test]
async fn a_repeated_unknown_key_is_looked_up_once() {
    let s = stack(Limits::default(), None).await;
    let unknown = format!("ck_unknown_{}", "y".repeat(43));
    let call = |key: String| {
        let sdk = s.sdk(&key);
        async move {
            sdk.customers()
                .get_account(get("accounts/acme"))
                .await
                .unwrap_err()
        }
    };
    assert_eq!(call(unknown.clone()).await.code(), Code::Unauthenticated);
    // With the key store gone, only a lookup can fail as UNAVAILABLE: the
    // known-bad key is answered without one, a new key needs one.
    s.gateway_db.db.close().await;
    let again = call(unknown.clone()).await;
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");
    let other = call(format!("ck_other_{}", "z".repeat(43))).await;
    assert_eq!(other.code(), Code::Unavailable, "{other:?}");
}

#[tokio::test]
async fn unknown_method_paths_do_not_grow_the_metrics() {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let series = || {
        metrics
            .render()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count()
    };
    let s = stack(Limits::default(), None).await;
    let mut grpc = tonic::client::Grpc::new(channel(&s.gateway_url).await);
    let mut send = async |path: String| {
        grpc.ready().await.unwrap();
        grpc.unary::<_, Account, _>(
            tonic::Request::new(GetAccountRequest::default()),
            http::uri::PathAndQuery::try_from(path).unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err()
    };
    // Warm up: every kind of path once, so the series they need exist.
    send("/concierge.junk0.v1.S/M".into()).await;
    send("/concierge.customers.v1.CustomersService/Junk".into()).await;
    send("/junk0/m".into()).await;
    let before = series();
    for i in 0..2_000 {
        let path = match i % 3 {
            0 => format!("/concierge.junk{i}.v1.S/M{i}"),
            1 => format!("/concierge.customers.v1.CustomersService/Junk{i}"),
            _ => format!("/junk{i}/m"),
        };
        let status = send(path).await;
        assert!(
            matches!(
                status.code(),
                Code::Unauthenticated | Code::ResourceExhausted
            ),
            "{status:?}"
        );
    }
    let after = series();
    assert!(
        after <= before + 20,
        "2,000 junk paths grew the series from {before} to {after}"
    );
}

#[tokio::test]
async fn a_draining_server_keeps_serving_through_its_drain_delay() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let start = |drain_delay| async move {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = server::start(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tonic::service::Routes::default(),
            Serve {
                health_names: vec!["x.v1.X".into()],
                grace_period: Duration::from_secs(2),
                drain_delay,
            },
            async { Ok(()) },
            async move {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
        (running, tx)
    };
    let check = |url: String| async move {
        // A new connection each time: the point is that they are accepted.
        let channel = Channel::from_shared(url).unwrap().connect().await?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "x.v1.X".into(),
            })
            .await?
            .into_inner()
            .status;
        Ok::<_, Box<dyn std::error::Error>>(status)
    };

    let (running, stop) = start(Duration::from_secs(600)).await;
    let url = format!("http://{}", running.addr);
    eventually(Duration::from_secs(5), "SERVING once ready", || {
        let f = check(url.clone());
        async move { f.await.ok() == Some(ServingStatus::Serving as i32) }
    })
    .await;
    stop.send(()).unwrap();
    eventually(Duration::from_secs(5), "NOT_SERVING once draining", || {
        let f = check(url.clone());
        async move { f.await.ok() == Some(ServingStatus::NotServing as i32) }
    })
    .await;
    // Still accepting and answering well after the signal.
    for _ in 0..3 {
        assert_eq!(
            check(url.clone()).await.unwrap(),
            ServingStatus::NotServing as i32
        );
    }

    // After a short window it stops by itself.
    let (running, stop) = start(Duration::from_millis(300)).await;
    let url = format!("http://{}", running.addr);
    stop.send(()).unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("stops after the drain delay and the grace period")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        check(url).await.is_err(),
        "refuses connections once stopped"
    );
}

#[tokio::test]
async fn a_captured_principal_header_is_no_use_elsewhere_or_later() {
    let s = stack(Limits::default(), None).await;
    let admin = Principal {
        subject: "apiKeys/captured".into(),
        role: Role::Admin,
        account: None,
        staff_member: None,
        display_name: "captured".into(),
    };
    let mut direct = CustomersServiceClient::connect(s.service_url.clone())
        .await
        .unwrap();
    let with = |header: String| {
        let mut req = tonic::Request::new(get("accounts/acme"));
        req.metadata_mut()
            .insert(PRINCIPAL_HEADER, header.parse().unwrap());
        req
    };
    // Signed just now for this service: accepted (the checks below are
    // about the audience and the time, not the signature).
    let fresh = s.codec.encode(&admin, concierge_customers::SERVICE_NAME);
    direct.get_account(with(fresh)).await.unwrap();
    // Signed for the cases service: refused by customers.
    let for_cases = s.codec.encode(&admin, "concierge.cases.v1.CasesService");
    let err = direct.get_account(with(for_cases)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("signed for"), "{}", err.message());
    // Captured ten minutes ago: expired.
    let old = s.codec.encode_at(
        &admin,
        concierge_customers::SERVICE_NAME,
        std::time::SystemTime::now() - Duration::from_secs(600),
    );
    let err = direct.get_account(with(old)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("expired"), "{}", err.message());
}

/// A CA and a certificate it issued for "localhost": (CA PEM, cert PEM, key PEM).
fn issued_for_localhost(ca_name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn the_server_terminates_tls_and_picks_up_a_renewed_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    // As a renewal does it: new files moved into place whole.
    let install = |(_, cert_pem, key_pem): &(String, String, String)| {
        let staged = dir.path().join("staged");
        std::fs::write(&staged, key_pem).unwrap();
        std::fs::rename(&staged, &key).unwrap();
        std::fs::write(&staged, cert_pem).unwrap();
        std::fs::rename(&staged, &cert).unwrap();
    };
    let first = issued_for_localhost("First test CA");
    let renewed = issued_for_localhost("Renewed test CA");
    install(&first);
    let running = server::start(
        server::Listener::new(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            Some(server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                reload_every: Duration::from_millis(50),
            }),
        ),
        tonic::service::Routes::default(),
        Serve {
            health_names: vec!["x.v1.X".into()],
            grace_period: Duration::from_secs(1),
            drain_delay: Duration::ZERO,
        },
        async { Ok(()) },
        std::future::pending(),
    )
    .await
    .unwrap();
    let addr = running.addr;
    let check = |ca_pem: String| async move {
        let channel = Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    check(first.0.clone()).await.unwrap();
    assert!(
        check(renewed.0.clone()).await.is_err(),
        "a client trusting another CA is refused"
    );
    // In clear, nothing is served.
    let plain = async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    assert!(plain.await.is_err(), "plaintext h2c is not served");

    install(&renewed);
    eventually(
        Duration::from_secs(10),
        "the renewed certificate is served",
        || {
            let f = check(renewed.0.clone());
            async move { f.await.is_ok() }
        },
    )
    .await;
    assert!(check(first.0.clone()).await.is_err(), "the old one is gone");
}
