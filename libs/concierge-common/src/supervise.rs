//! Background work under supervision: the timer sweep, the outbox relay, the
//! calendar re-arm and the purge of old request ids each run as a worker
//! that is restarted with a bounded exponential backoff when it panics or
//! returns (both are faults: a worker runs for the life of the process).
//! Every worker shows as `concierge_workers_live{worker}` (1 or 0), every
//! restart as `concierge_worker_restarts_total{worker}`, every end is logged
//! with its cause (a panic's message included), and while a required worker
//! is down the server's health reads NOT_SERVING, so that Kubernetes stops
//! routing to a replica that no longer detects SLA breaches.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::server::Health;

/// Whether a worker being down makes the process unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Without it the service breaks a promise (SLA breaches go unseen,
    /// events stay unpublished): health is NOT_SERVING while it is down.
    Required,
    /// Housekeeping: logged and counted, health unaffected.
    Optional,
}

/// What the supervisor knows of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerState {
    pub need: Need,
    pub live: bool,
    /// How many times it ended and was started again.
    pub restarts: u64,
    /// Why it last ended ("panicked: …", "failed: …", "returned").
    pub last_failure: Option<String>,
}

/// The bounds of the restart backoff: the first restart waits `min`, each
/// following one twice as long up to `max`; a worker that ran for `stable`
/// before ending starts again from `min`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(200),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive quick ends (1 for the first),
    /// with up to a quarter of jitter so that replicas do not restart in step.
    pub fn delay(&self, failures: u32) -> Duration {
        let doubled = self.min.saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let base = doubled.min(self.max);
        let jitter = rand::random_range(0.75..=1.0);
        base.mul_f64(jitter).max(self.min.min(self.max))
    }
}

/// Runs workers and knows which are live. Clones share the workers.
#[derive(Clone)]
pub struct Supervisor {
    state: Arc<watch::Sender<BTreeMap<String, WorkerState>>>,
    backoff: Backoff,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("workers", &*self.state.borrow())
            .finish()
    }
}

impl Supervisor {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            state: Arc::new(watch::Sender::new(BTreeMap::new())),
            backoff,
        }
    }

    /// Starts `name` now and whenever it ends, after the backoff. `run` makes
    /// one run of the worker; an `Err` is its cause of death.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, need: Need, mut run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        self.update(&name, |w| {
            *w = Some(WorkerState {
                need,
                live: false,
                restarts: 0,
                last_failure: None,
            })
        });
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let started = Instant::now();
                // Its own task, so that a panic ends the run, not the supervisor.
                let mut handle = tokio::spawn(run());
                // A first start counts at once; a restart only once it has
                // kept running for a while, so that a worker failing in a
                // loop never makes health flap to SERVING.
                let settle = if failures == 0 {
                    Duration::ZERO
                } else {
                    this.backoff.min
                };
                let ended = tokio::select! {
                    ended = &mut handle => Some(ended),
                    _ = tokio::time::sleep(settle) => None,
                };
                let ended = match ended {
                    Some(ended) => ended,
                    None => {
                        this.update(&name, |w| {
                            if let Some(w) = w {
                                w.live = true
                            }
                        });
                        metrics::gauge!("concierge_workers_live", "worker" => name.clone())
                            .set(1.0);
                        handle.await
                    }
                };
                let cause = match ended {
                    Ok(Ok(())) => "returned".to_string(),
                    Ok(Err(e)) => format!("failed: {e:#}"),
                    Err(e) if e.is_panic() => {
                        format!("panicked: {}", panic_message(e.into_panic()))
                    }
                    Err(e) => format!("cancelled: {e}"),
                };
                metrics::gauge!("concierge_workers_live", "worker" => name.clone()).set(0.0);
                metrics::counter!("concierge_worker_restarts_total", "worker" => name.clone())
                    .increment(1);
                this.update(&name, |w| {
                    if let Some(w) = w {
                        w.live = false;
                        w.restarts += 1;
                        w.last_failure = Some(cause.clone());
                    }
                });
                if started.elapsed() >= this.backoff.stable {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let wait = this.backoff.delay(failures);
                tracing::error!(
                    worker = %name,
                    required = need == Need::Required,
                    cause = %cause,
                    restart_in_ms = wait.as_millis() as u64,
                    "background worker ended; restarting"
                );
                tokio::time::sleep(wait).await;
            }
        });
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Option<WorkerState>)) {
        self.state.send_modify(|all| {
            let mut w = all.remove(name);
            f(&mut w);
            if let Some(w) = w {
                all.insert(name.to_string(), w);
            }
        });
    }

    /// Every worker and its state.
    pub fn workers(&self) -> BTreeMap<String, WorkerState> {
        self.state.borrow().clone()
    }

    /// True when no required worker is down.
    pub fn healthy(&self) -> bool {
        healthy(&self.state.borrow())
    }

    /// Resolves once every required worker is running: part of a service's
    /// readiness.
    pub async fn wait_healthy(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(healthy).await;
    }

    /// Keeps `health` NOT_SERVING while a required worker is down, and
    /// SERVING again once it is back, until `draining` turns true (the
    /// server owns health from then on). Before the first fault the server's
    /// own readiness decides, so a replica never reads SERVING early.
    pub fn report_health(&self, health: Health, mut draining: watch::Receiver<bool>) {
        let mut rx = self.state.subscribe();
        tokio::spawn(async move {
            let mut degraded = false;
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = draining.wait_for(|d| *d) => return,
                }
                let ok = healthy(&rx.borrow_and_update());
                if *draining.borrow() {
                    return;
                }
                if ok == degraded {
                    degraded = !ok;
                    let down: Vec<String> = rx
                        .borrow()
                        .iter()
                        .filter(|(_, w)| w.need == Need::Required && !w.live)
                        .map(|(n, _)| n.clone())
                        .collect();
                    if ok {
                        tracing::info!("every required worker is running again: SERVING");
                    } else {
                        tracing::warn!(down = ?down, "a required worker is down: NOT_SERVING");
                    }
                    health.set(ok).await;
                }
            }
        });
    }
}

fn healthy(all: &BTreeMap<String, WorkerState>) -> bool {
    all.values().all(|w| w.need == Need::Optional || w.live)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
            stable: Duration::from_secs(60),
        };
        let d: Vec<Duration> = (1..=40).map(|n| b.delay(n)).collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(600) && d[3] <= Duration::from_millis(800));
        assert!(d.iter().all(|d| *d <= Duration::from_secs(2)), "{d:?}");
        assert!(d[39] >= Duration::from_millis(1500));
    }
}
