//! A peer's refusals as the service that called it sees them, against a
//! real gRPC server on a loopback port standing in for the peer: which
//! codes are waited out and how often, which are asked once, and what each
//! becomes for this service's own caller.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierge_common::error::{Error, Reason, reason_from_name};
use concierge_common::peer::{Peer, PeerError, Retry};
use concierge_common::principal::{Principal, PrincipalCodec, REQUEST_ID_HEADER};
use concierge_proto::concierge::testing::v1::test_clock_service_client::TestClockServiceClient;
use concierge_proto::concierge::testing::v1::test_clock_service_server::{
    SERVICE_NAME, TestClockService, TestClockServiceServer,
};
use concierge_proto::concierge::testing::v1::{
    AdvanceTestClockRequest, GetTestClockRequest, TestClock,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

/// What the stand-in answers its n-th call (counting from 1).
type Script = Box<dyn Fn(u32) -> Answer + Send + Sync>;

enum Answer {
    Clock,
    Refuse(Status),
    /// Never answers: a peer that hangs.
    Hang,
}

/// Who each call to the stand-in was signed as, and its request id.
type Seen = Arc<Mutex<Vec<(Principal, Option<String>)>>>;

/// The peer: answers as scripted, and keeps what it was sent.
struct StandIn {
    script: Script,
    calls: Arc<AtomicU32>,
    seen: Seen,
    codec: PrincipalCodec,
}

impl StandIn {
    async fn answer<T>(&self, request: &Request<T>) -> Result<Response<TestClock>, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let caller = self.codec.from_request(request, SERVICE_NAME)?;
        let request_id = request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        self.seen.lock().unwrap().push((caller, request_id));
        match (self.script)(n) {
            Answer::Clock => Ok(Response::new(TestClock {
                name: "testClock".into(),
                now: None,
            })),
            Answer::Refuse(status) => Err(status),
            Answer::Hang => std::future::pending().await,
        }
    }
}

#[tonic::async_trait]
impl TestClockService for StandIn {
    async fn get_test_clock(
        &self,
        request: Request<GetTestClockRequest>,
    ) -> Result<Response<TestClock>, Status> {
        self.answer(&request).await
    }

    async fn advance_test_clock(
        &self,
        request: Request<AdvanceTestClockRequest>,
    ) -> Result<Response<TestClock>, Status> {
        self.answer(&request).await
    }
}

struct Harness {
    peer: Peer<TestClockServiceClient<Channel>>,
    calls: Arc<AtomicU32>,
    seen: Seen,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Waits short enough for a test, as often as a deployment would.
const QUICK: Retry = Retry {
    attempts: 3,
    first_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(10),
    deadline: Duration::from_secs(10),
};

impl Harness {
    async fn new(script: impl Fn(u32) -> Answer + Send + Sync + 'static) -> Self {
        Self::with_retry(QUICK, script).await
    }

    async fn with_retry(
        retry: Retry,
        script: impl Fn(u32) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let codec = PrincipalCodec::new("peer-test-secret".into());
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stand_in = StandIn {
            script: Box::new(script),
            calls: calls.clone(),
            seen: seen.clone(),
            codec: codec.clone(),
        };
        // Bound before the client exists: its first connection is taken
        // into the listen backlog, however soon it comes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TestClockServiceServer::new(stand_in))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let peer = Peer::new(
            TestClockServiceClient::new(channel),
            &codec,
            SERVICE_NAME,
            "cases",
        )
        .named("the test clock")
        .with_retry(retry);
        Self {
            peer,
            calls,
            seen,
            server,
        }
    }

    async fn read(&self) -> Result<TestClock, PeerError> {
        self.peer
            .read(
                "req-42",
                GetTestClockRequest::default(),
                |mut c, r| async move { c.get_test_clock(r).await },
            )
            .await
    }

    async fn write(&self) -> Result<TestClock, PeerError> {
        self.peer
            .write(
                "req-43",
                AdvanceTestClockRequest::default(),
                |mut c, r| async move { c.advance_test_clock(r).await },
            )
            .await
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What this service's own caller is sent for `refused`.
fn as_sent_on(refused: PeerError) -> Status {
    Status::from(Error::from(refused))
}

fn reason_of(status: &Status) -> Option<Reason> {
    status
        .get_error_details()
        .error_info()
        .and_then(|i| reason_from_name(&i.reason))
}

fn refusal(err: Error) -> impl Fn(u32) -> Answer + Send + Sync + 'static {
    let status = Status::from(err);
    move |_| Answer::Refuse(status.clone())
}

#[tokio::test]
async fn the_peer_is_called_as_this_service_on_behalf_of_the_request() {
    let h = Harness::new(|_| Answer::Clock).await;
    h.read().await.unwrap();
    h.peer
        .read("", GetTestClockRequest::default(), |mut c, r| async move {
            c.get_test_clock(r).await
        })
        .await
        .unwrap();
    let seen = h.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Principal::system("cases"), Some("req-42".to_string())),
            // Work of the service's own carries no request id.
            (Principal::system("cases"), None),
        ]
    );
}

#[tokio::test]
async fn a_missing_resource_is_asked_once_and_stays_not_found() {
    let h = Harness::new(refusal(Error::NotFound {
        resource_type: "Account",
        name: "accounts/nobody".into(),
    }))
    .await;
    let refused = h.read().await.unwrap_err();
    assert_eq!(
        h.calls(),
        1,
        "a missing resource is not there the second time"
    );
    assert_eq!(refused.attempts(), 1);
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(refused.reason(), Some(Reason::NotFound));
    assert_eq!(refused.peer(), "the test clock");
    let sent = as_sent_on(refused);
    assert_eq!(sent.code(), Code::NotFound, "{sent:?}");
    assert_eq!(reason_of(&sent), Some(Reason::NotFound));
    assert_eq!(
        sent.get_details_resource_info().map(|r| r.resource_name),
        Some("accounts/nobody".to_string()),
        "the caller is told what is missing"
    );
}

#[tokio::test]
async fn a_permission_this_service_lacks_is_asked_once_and_stays_permission_denied() {
    let h = Harness::new(refusal(Error::PermissionDenied(
        "only admins may read the clock".into(),
    )))
    .await;
    let refused = h.read().await.unwrap_err();
    assert_eq!(h.calls(), 1);
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(refused.reason(), Some(Reason::PermissionDenied));
    let sent = as_sent_on(refused);
    assert_eq!(sent.code(), Code::PermissionDenied, "{sent:?}");
    assert_eq!(reason_of(&sent), Some(Reason::PermissionDenied));
    assert!(
        sent.message().contains("the test clock: only admins"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn a_brief_outage_is_waited_out() {
    let h = Harness::new(|n| match n {
        1 | 2 => Answer::Refuse(Status::from(Error::Unavailable("restarting".into()))),
        _ => Answer::Clock,
    })
    .await;
    let clock = h.read().await.unwrap();
    assert_eq!(clock.name, "testClock");
    assert_eq!(h.calls(), 3);
}

#[tokio::test]
async fn an_outage_past_the_bound_is_unavailable_to_the_caller() {
    let h = Harness::new(refusal(Error::Unavailable("down".into()))).await;
    let refused = h.read().await.unwrap_err();
    assert_eq!(
        h.calls(),
        QUICK.attempts,
        "tried as often as allowed, no more"
    );
    assert_eq!(refused.attempts(), QUICK.attempts);
    assert_eq!(refused.code(), Code::Unavailable);
    let sent = as_sent_on(refused);
    assert_eq!(sent.code(), Code::Unavailable, "{sent:?}");
    assert_eq!(reason_of(&sent), Some(Reason::Unavailable));
    assert!(sent.get_details_retry_info().is_some(), "{sent:?}");
    // A write the peer never took in is as safe to make again.
    let h = Harness::new(refusal(Error::Unavailable("down".into()))).await;
    h.write().await.unwrap_err();
    assert_eq!(h.calls(), QUICK.attempts);
}

#[tokio::test]
async fn a_bad_request_is_asked_once_and_is_this_services_fault() {
    let h = Harness::new(refusal(Error::RequestIdReused {
        request_id: "req-42".into(),
    }))
    .await;
    let refused = h.read().await.unwrap_err();
    assert_eq!(h.calls(), 1);
    // The code calling the peer is told exactly what was wrong…
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.reason(), Some(Reason::RequestIdReused));
    assert_eq!(refused.reason_name(), "REQUEST_ID_REUSED");
    assert_eq!(
        refused
            .details()
            .bad_request()
            .map(|b| b.field_violations[0].field.clone()),
        Some("request_id".to_string())
    );
    // …and its caller that this service sent a bad request, not that the
    // caller did.
    let sent = as_sent_on(refused);
    assert_eq!(sent.code(), Code::Internal, "{sent:?}");
    assert_eq!(reason_of(&sent), Some(Reason::Internal));
    assert!(sent.get_details_bad_request().is_none(), "{sent:?}");
}

#[tokio::test]
async fn a_failed_precondition_is_asked_once_and_keeps_its_reason_and_subject() {
    let h = Harness::new(refusal(Error::FailedPrecondition {
        reason: Reason::SiteHasInventory,
        subject: "accounts/acme/sites/hq".into(),
        description: "the site still has inventory".into(),
    }))
    .await;
    let refused = h.write().await.unwrap_err();
    assert_eq!(h.calls(), 1);
    let sent = as_sent_on(refused);
    assert_eq!(sent.code(), Code::FailedPrecondition, "{sent:?}");
    assert_eq!(reason_of(&sent), Some(Reason::SiteHasInventory));
    assert_eq!(
        sent.get_details_precondition_failure()
            .map(|p| p.violations[0].subject.clone()),
        Some("accounts/acme/sites/hq".to_string())
    );
}

#[tokio::test]
async fn a_busy_or_racing_peer_is_asked_again_for_a_read_but_not_for_a_write() {
    let busy = || Error::RateLimited {
        retry_after: Duration::from_millis(1),
    };
    let racing = || Error::Conflict {
        reason: Reason::TransactionConflict,
        description: "lost a race".into(),
    };
    for (what, refused_with) in [("busy", busy()), ("racing", racing())] {
        let code = Status::from(refused_with).code();
        let h = Harness::new(move |n| match n {
            1 => Answer::Refuse(Status::new(code, "once")),
            _ => Answer::Clock,
        })
        .await;
        h.read().await.unwrap();
        assert_eq!(h.calls(), 2, "{what}: a read is asked again");
        let h = Harness::new(refusal(match what {
            "busy" => busy(),
            _ => racing(),
        }))
        .await;
        let refused = h.write().await.unwrap_err();
        assert_eq!(h.calls(), 1, "{what}: a write is not made twice");
        assert_eq!(refused.code(), code);
    }
}

#[tokio::test]
async fn a_refusal_this_service_has_no_word_for_keeps_the_peers_code_and_reason() {
    let h = Harness::new(refusal(Error::AlreadyExists {
        resource_type: "TestClock",
        name: "testClock".into(),
    }))
    .await;
    let refused = h.write().await.unwrap_err();
    assert_eq!(h.calls(), 1);
    let sent = as_sent_on(refused);
    assert_eq!(sent.code(), Code::AlreadyExists, "{sent:?}");
    assert_eq!(reason_of(&sent), Some(Reason::AlreadyExists));
    assert_eq!(
        sent.get_details_resource_info().map(|r| r.resource_name),
        Some("testClock".to_string())
    );
    assert!(sent.message().starts_with("the test clock: "), "{sent:?}");
}

#[tokio::test]
async fn a_peer_that_never_answers_is_unavailable_once_the_deadline_passes() {
    let deadline = Duration::from_millis(300);
    let h = Harness::with_retry(Retry { deadline, ..QUICK }, |_| Answer::Hang).await;
    let started = tokio::time::Instant::now();
    let refused = h.read().await.unwrap_err();
    assert!(started.elapsed() < deadline * 10, "{:?}", started.elapsed());
    assert_eq!(refused.code(), Code::DeadlineExceeded, "{refused}");
    assert_eq!(as_sent_on(refused).code(), Code::Unavailable);
}

#[test]
fn only_an_outage_is_retried_and_a_busy_peer_or_a_lost_race_only_for_reads() {
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::FailedPrecondition,
        Code::Unauthenticated,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::DataLoss,
        Code::DeadlineExceeded,
        Code::Cancelled,
        Code::Unknown,
    ] {
        assert!(!Retry::retries(code, true), "{code:?}");
        assert!(!Retry::retries(code, false), "{code:?}");
    }
    assert!(Retry::retries(Code::Unavailable, true));
    assert!(Retry::retries(Code::Unavailable, false));
    for code in [Code::ResourceExhausted, Code::Aborted] {
        assert!(Retry::retries(code, true), "{code:?}");
        assert!(!Retry::retries(code, false), "{code:?}");
    }
}
