//! `SubscribeEvents`: every domain's events as they happen, filtered to
//! what the caller may see and asked for, resumable from a cursor.
//!
//! A client principal receives only the PUBLIC events of its own account
//! (so never an internal note, never another account's event); staff receive
//! every event. Filters narrow that further: event types (exact, or a prefix
//! ending in "*"), accounts, subject prefixes.
//!
//! Every message carries the cursor just after it. Events the caller does
//! not receive still move the cursor, which the next heartbeat carries, so
//! that a resume does not read them again.

use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{SharedClock, to_micros};
use concierge_common::error::{Error, Result, Violations};
use concierge_common::follow::{self, Cursor, Start};
use concierge_common::principal::{Principal, Role};
use concierge_common::relay::{Bus, BusTarget, JetStreamBus};
use concierge_proto::concierge::gateway::v1::{SubscribeEventsRequest, SubscribeEventsResponse};
use concierge_proto::events::{Event, Visibility};
use futures::StreamExt;
use tokio::sync::{OnceCell, Semaphore, mpsc};

/// Where the gateway reads events from.
#[derive(Clone)]
pub struct Feed {
    /// The bus: `concierge dev`'s local log, or NATS.
    pub bus: BusTarget,
    /// The domains whose streams are followed (every service's short name).
    pub sources: Vec<&'static str>,
    /// How long an idle subscription waits before sending a heartbeat.
    pub heartbeat: Duration,
    /// Subscriptions open at once, across callers.
    pub max_subscriptions: usize,
    /// Where webhook receivers may be: public addresses only in production;
    /// anything (this machine included) in `concierge dev` and tests.
    pub webhook_targets: crate::webhooks::Targets,
    /// How often the webhook worker looks for due deliveries without a
    /// wake-up (a retry coming due).
    pub poll: Duration,
}

impl Feed {
    pub fn new(bus: BusTarget, sources: Vec<&'static str>) -> Self {
        Self {
            bus,
            sources,
            heartbeat: Duration::from_secs(15),
            max_subscriptions: 1000,
            webhook_targets: crate::webhooks::Targets::Public,
            poll: Duration::from_secs(1),
        }
    }
}

/// The most entries of each filter list.
const MAX_FILTERS: usize = 100;
/// The longest filter entry.
const MAX_FILTER_LEN: usize = 256;
/// Messages buffered per subscription before the follower waits on the
/// caller.
const BUFFER: usize = 64;
/// Subscriptions one caller (principal) may hold open at once, so that one
/// caller cannot take every subscription the gateway allows.
pub const MAX_PER_CALLER: usize = 16;

/// The subscriptions of one gateway.
pub struct Subscriptions {
    feed: Feed,
    bus: OnceCell<Bus>,
    open: Arc<Semaphore>,
    /// Open subscriptions per caller.
    per_caller: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    clock: SharedClock,
}

/// One caller's hold on a subscription, given back when it ends.
struct CallerSlot {
    caller: String,
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.caller);
            }
        }
    }
}

impl Subscriptions {
    pub fn new(feed: Feed, clock: SharedClock) -> Self {
        let open = Arc::new(Semaphore::new(feed.max_subscriptions));
        Self {
            feed,
            bus: OnceCell::new(),
            open,
            per_caller: Arc::default(),
            clock,
        }
    }

    async fn bus(&self) -> Result<&Bus> {
        self.bus
            .get_or_try_init(|| async {
                match &self.feed.bus {
                    BusTarget::Ready(bus) => Ok(bus.clone()),
                    BusTarget::Nats(url) => {
                        Ok(Bus::JetStream(JetStreamBus::connect_reader(url).await?))
                    }
                }
            })
            .await
    }

    /// Starts a subscription for `caller`: its messages arrive on the
    /// receiver until the caller goes away.
    pub async fn subscribe(
        &self,
        caller: &Principal,
        req: &SubscribeEventsRequest,
    ) -> Result<mpsc::Receiver<std::result::Result<SubscribeEventsResponse, tonic::Status>>> {
        let filter = Filter::parse(caller, req)?;
        let start = if !req.resume_cursor.is_empty() {
            Start::After(Cursor::decode("resume_cursor", &req.resume_cursor)?)
        } else if let Some(t) =
            concierge_common::bounded::Instant::optional("start_time", &req.start_time)?
        {
            Start::Since(to_micros(t))
        } else {
            Start::Now
        };
        let slot = {
            let mut counts = self.per_caller.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(caller.subject.clone()).or_default();
            if *n >= MAX_PER_CALLER {
                return Err(Error::RateLimited {
                    retry_after: Duration::from_secs(1),
                });
            }
            *n += 1;
            CallerSlot {
                caller: caller.subject.clone(),
                counts: self.per_caller.clone(),
            }
        };
        let permit = self.open.clone().try_acquire_owned().map_err(|_| {
            Error::Unavailable("too many event subscriptions are open; retry later".into())
        })?;
        let bus = self.bus().await?;
        let now = to_micros(self.clock.now());
        let following = follow::follow(bus, &self.feed.sources, start, now).await?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let heartbeat = self.feed.heartbeat;
        let clock = self.clock.clone();
        metrics::gauge!("concierge_gateway_event_subscriptions").increment(1.0);
        tokio::spawn(async move {
            let _held = (permit, slot);
            relay_to(tx, following, filter, heartbeat, clock).await;
            metrics::gauge!("concierge_gateway_event_subscriptions").decrement(1.0);
        });
        Ok(rx)
    }
}

async fn relay_to(
    tx: mpsc::Sender<std::result::Result<SubscribeEventsResponse, tonic::Status>>,
    following: follow::Following,
    filter: Filter,
    heartbeat: Duration,
    clock: SharedClock,
) {
    use concierge_proto::concierge::gateway::v1::subscribe_events_response::{Heartbeat, Item};
    let mut cursor = following.start;
    let mut events = following.events;
    // Idle means nothing sent: events the caller does not receive do not
    // put its heartbeat off.
    let mut idle_until = tokio::time::Instant::now() + heartbeat;
    loop {
        let message = tokio::select! {
            next = events.next() => match next {
                Some(Ok(followed)) => {
                    cursor = followed.cursor;
                    if !filter.admits(&followed.event) {
                        continue;
                    }
                    Ok(SubscribeEventsResponse {
                        item: Some(Item::Event(followed.event)),
                        cursor: cursor.encode(),
                    })
                }
                Some(Err(e)) => Err(tonic::Status::from(e)),
                None => Err(tonic::Status::unavailable("the event stream ended; resume from the last cursor")),
            },
            _ = tokio::time::sleep_until(idle_until) => Ok(SubscribeEventsResponse {
                item: Some(Item::Heartbeat(Heartbeat {
                    time: Some(concierge_common::clock::to_proto(clock.now())),
                })),
                cursor: cursor.encode(),
            }),
            _ = tx.closed() => return,
        };
        let ended = message.is_err();
        if tx.send(message).await.is_err() || ended {
            return;
        }
        idle_until = tokio::time::Instant::now() + heartbeat;
    }
}

/// What one subscription lets through.
#[derive(Debug, Clone)]
struct Filter {
    /// A client's account: only its PUBLIC events.
    client_of: Option<String>,
    /// Exact types, and prefixes (from entries ending in "*").
    types: Vec<String>,
    prefixes: Vec<String>,
    accounts: Vec<String>,
    subjects: Vec<String>,
}

impl Filter {
    fn parse(caller: &Principal, req: &SubscribeEventsRequest) -> Result<Self> {
        let mut v = Violations::new();
        let bounded = |v: &mut Violations, field: &str, list: &[String]| {
            if list.len() > MAX_FILTERS {
                v.add(field, format!("at most {MAX_FILTERS} entries"));
            }
            for (i, item) in list.iter().enumerate().take(MAX_FILTERS) {
                if item.is_empty() || item.len() > MAX_FILTER_LEN {
                    v.add(
                        format!("{field}[{i}]"),
                        format!("1 to {MAX_FILTER_LEN} characters"),
                    );
                }
            }
        };
        bounded(&mut v, "event_types", &req.event_types);
        bounded(&mut v, "accounts", &req.accounts);
        bounded(&mut v, "subject_prefixes", &req.subject_prefixes);
        let (mut types, mut prefixes) = (Vec::new(), Vec::new());
        for (i, t) in req.event_types.iter().enumerate().take(MAX_FILTERS) {
            let body = t.strip_suffix('*').unwrap_or(t);
            if body.contains('*') {
                v.add(
                    format!("event_types[{i}]"),
                    "\"*\" may only end a prefix, e.g. \"concierge.cases.v1.*\"",
                );
            } else if !body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            {
                v.add(
                    format!("event_types[{i}]"),
                    "an event type is dotted lower-case words, e.g. \"concierge.cases.v1.case_resolved\"",
                );
            } else if t.ends_with('*') {
                prefixes.push(body.to_string());
            } else {
                types.push(t.clone());
            }
        }
        for (i, a) in req.accounts.iter().enumerate().take(MAX_FILTERS) {
            if concierge_common::names::parse(&format!("accounts[{i}]"), a, &["accounts"]).is_err()
            {
                v.add(
                    format!("accounts[{i}]"),
                    "an account, \"accounts/{account}\"",
                );
            }
        }
        v.into_result()?;
        let client_of = match caller.role {
            Role::Client => {
                let own = caller.account.clone().ok_or_else(|| {
                    Error::PermissionDenied("a client key without an account".into())
                })?;
                if req.accounts.iter().any(|a| *a != own) {
                    return Err(Error::PermissionDenied(format!(
                        "accounts: a client subscribes to its own account ({own}) only"
                    )));
                }
                Some(own)
            }
            _ => None,
        };
        Ok(Self {
            client_of,
            types,
            prefixes,
            accounts: req.accounts.clone(),
            subjects: req.subject_prefixes.clone(),
        })
    }

    fn admits(&self, e: &Event) -> bool {
        if let Some(own) = &self.client_of
            && (e.account != *own || e.visibility != Visibility::Public as i32)
        {
            return false;
        }
        let typed = (self.types.is_empty() && self.prefixes.is_empty())
            || self.types.contains(&e.r#type)
            || self
                .prefixes
                .iter()
                .any(|p| e.r#type.starts_with(p.as_str()));
        typed
            && (self.accounts.is_empty() || self.accounts.contains(&e.account))
            && (self.subjects.is_empty()
                || self
                    .subjects
                    .iter()
                    .any(|p| e.subject.starts_with(p.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, account: Option<&str>) -> Principal {
        Principal {
            subject: "apiKeys/k".into(),
            role,
            account: account.map(str::to_string),
            staff_member: None,
            display_name: "k".into(),
        }
    }

    fn event(r#type: &str, account: &str, subject: &str, visibility: Visibility) -> Event {
        Event {
            r#type: r#type.into(),
            account: account.into(),
            subject: subject.into(),
            visibility: visibility as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_client_gets_its_own_accounts_public_events_only() {
        let f = Filter::parse(
            &principal(Role::Client, Some("accounts/acme")),
            &SubscribeEventsRequest::default(),
        )
        .unwrap();
        let t = "concierge.cases.v1.note_created";
        assert!(f.admits(&event(t, "accounts/acme", "cases/1", Visibility::Public)));
        assert!(!f.admits(&event(t, "accounts/acme", "cases/1", Visibility::Internal)));
        assert!(!f.admits(&event(
            t,
            "accounts/acme",
            "cases/1",
            Visibility::Unspecified
        )));
        assert!(!f.admits(&event(t, "accounts/globex", "cases/2", Visibility::Public)));
        assert!(!f.admits(&event(t, "", "staff/ayse", Visibility::Public)));
        let other = Filter::parse(
            &principal(Role::Client, Some("accounts/acme")),
            &SubscribeEventsRequest {
                accounts: vec!["accounts/globex".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(other, Error::PermissionDenied(_)));
        let staff = Filter::parse(
            &principal(Role::Agent, None),
            &SubscribeEventsRequest::default(),
        )
        .unwrap();
        assert!(staff.admits(&event(t, "accounts/acme", "cases/1", Visibility::Internal)));
    }

    #[test]
    fn filters_narrow_by_type_prefix_account_and_subject() {
        let f = Filter::parse(
            &principal(Role::Admin, None),
            &SubscribeEventsRequest {
                event_types: vec![
                    "concierge.cases.v1.case_resolved".into(),
                    "concierge.disputes.v1.*".into(),
                ],
                accounts: vec!["accounts/acme".into()],
                subject_prefixes: vec!["cases/1".into(), "disputes/".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let p = Visibility::Public;
        assert!(f.admits(&event(
            "concierge.cases.v1.case_resolved",
            "accounts/acme",
            "cases/12",
            p
        )));
        assert!(!f.admits(&event(
            "concierge.cases.v1.case_updated",
            "accounts/acme",
            "cases/12",
            p
        )));
        assert!(f.admits(&event(
            "concierge.disputes.v1.dispute_created",
            "accounts/acme",
            "disputes/d",
            p
        )));
        assert!(!f.admits(&event(
            "concierge.disputes.v1.dispute_created",
            "accounts/globex",
            "disputes/d",
            p
        )));
        assert!(!f.admits(&event(
            "concierge.cases.v1.case_resolved",
            "accounts/acme",
            "cases/2",
            p
        )));
    }

    #[test]
    fn a_bad_filter_names_its_entry() {
        let e = Filter::parse(
            &principal(Role::Admin, None),
            &SubscribeEventsRequest {
                event_types: vec!["concierge.*.v1".into(), "ok.type".into(), String::new()],
                accounts: vec!["acme".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        let text = e.to_string();
        for field in ["event_types[0]", "event_types[2]", "accounts[0]"] {
            assert!(text.contains(field), "{text}");
        }
        assert!(!text.contains("event_types[1]"), "{text}");
    }
}
