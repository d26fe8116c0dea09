//! Background workers under the supervisor: one that panics is restarted
//! and shows so in its gauge and in health; one that keeps failing leaves
//! the server NOT_SERVING for as long as it is down.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use concierge_common::server::{self, Running, Serve};
use concierge_common::supervise::{Backoff, Need, Supervisor};
use concierge_common::testing::eventually;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

/// The value of `concierge_workers_live{worker="…"}`, if exported.
fn live_gauge(worker: &str) -> Option<f64> {
    let prefix = format!("concierge_workers_live{{worker=\"{worker}\"}} ");
    prometheus()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().parse().unwrap()))
}

/// A server whose readiness waits for the supervisor's required workers,
/// with the supervisor reporting into its health: as `concierge serve` runs.
async fn serve(supervisor: &Supervisor) -> Running {
    let ready = supervisor.clone();
    let running = server::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tonic::service::Routes::default(),
        Serve {
            health_names: vec!["concierge.test.v1.Worked".into()],
            grace_period: Duration::from_secs(1),
            drain_delay: Duration::ZERO,
        },
        async move {
            ready.wait_healthy().await;
            Ok(())
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    supervisor.report_health(running.health(), running.draining());
    running
}

async fn health(running: &Running) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "concierge.test.v1.Worked".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

async fn wait_health(running: &Running, want: ServingStatus) {
    eventually(
        Duration::from_secs(20),
        &format!("health {want:?}"),
        || async { health(running).await == want },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_panics_is_restarted_and_health_shows_the_gap() {
    prometheus();
    // A long first backoff: the gap between the panic and the restart is
    // wide enough to be seen from outside.
    let supervisor = Supervisor::new(Backoff {
        min: Duration::from_secs(2),
        max: Duration::from_secs(2),
        stable: Duration::from_secs(60),
    });
    let runs = Arc::new(AtomicU32::new(0));
    let (panic_tx, panic_rx) = tokio::sync::watch::channel(false);
    supervisor.spawn("test-sweeper", Need::Required, {
        let runs = runs.clone();
        move || {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let mut panic_rx = panic_rx.clone();
            async move {
                if run == 1 {
                    let _ = panic_rx.wait_for(|p| *p).await;
                    panic!("the sweep met a case it could not read");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    });
    let running = serve(&supervisor).await;
    wait_health(&running, ServingStatus::Serving).await;
    assert_eq!(live_gauge("test-sweeper"), Some(1.0));

    panic_tx.send(true).unwrap();
    wait_health(&running, ServingStatus::NotServing).await;
    let down = supervisor.workers()["test-sweeper"].clone();
    assert!(
        down.last_failure
            .as_deref()
            .is_some_and(|f| f.contains("the sweep met a case it could not read")),
        "the cause is kept, panic message included: {down:?}"
    );

    // Restarted after the backoff: live again, and SERVING again.
    wait_health(&running, ServingStatus::Serving).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let up = supervisor.workers()["test-sweeper"].clone();
    assert!(up.live && up.restarts == 1, "{up:?}");
    assert_eq!(live_gauge("test-sweeper"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_keeps_failing_leaves_the_server_not_serving() {
    prometheus();
    let supervisor = Supervisor::new(Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
        stable: Duration::from_secs(60),
    });
    // An optional worker that is down changes nothing.
    supervisor.spawn("test-housekeeping", Need::Optional, || async {
        anyhow::bail!("housekeeping is broken")
    });
    supervisor.spawn("test-relay", Need::Required, || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    let running = serve(&supervisor).await;
    wait_health(&running, ServingStatus::Serving).await;

    let attempts = Arc::new(AtomicU32::new(0));
    supervisor.spawn("test-broken", Need::Required, {
        let attempts = attempts.clone();
        move || {
            attempts.fetch_add(1, Ordering::SeqCst);
            async { anyhow::bail!("the database refuses our schema") }
        }
    });
    eventually(Duration::from_secs(20), "several restarts", || async {
        attempts.load(Ordering::SeqCst) >= 5
    })
    .await;
    assert_eq!(health(&running).await, ServingStatus::NotServing);
    assert_eq!(live_gauge("test-broken"), Some(0.0));
    assert_eq!(live_gauge("test-relay"), Some(1.0));
    let broken = supervisor.workers()["test-broken"].clone();
    assert!(
        broken
            .last_failure
            .as_deref()
            .is_some_and(|f| f.contains("refuses our schema")),
        "{broken:?}"
    );
    assert!(!supervisor.healthy());
}
