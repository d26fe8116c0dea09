//! The webhook delivery log as stored, on SQLite and PostgreSQL: an event is
//! queued to a webhook once however often it is matched, and finished
//! deliveries are forgotten once the streams no longer keep their event,
//! never a pending one.

use std::sync::Arc;

use concierge_common::clock::{SharedClock, SystemClock, to_micros};
use concierge_common::crud::Store;
use concierge_common::on_conn;
use concierge_common::testing::{Backend, TestDb};
use concierge_gateway::delivery::{Deliveries, KEPT};
use concierge_gateway::webhooks::Targets;
use concierge_proto::concierge::gateway::v1::{Webhook, webhook_delivery};
use concierge_proto::events::Event;

async fn deliveries(backend: Backend) -> Option<(Deliveries, TestDb)> {
    let db = TestDb::new(backend, "gateway-deliveries").await?;
    let m = concierge_gateway::migrations();
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::open(
        db.db.clone(),
        m.sqlite,
        m.postgres,
        clock,
        "concierge.gateway.v1",
        "gateway",
    )
    .await
    .unwrap();
    Some((Deliveries::new(store, Targets::Any).unwrap(), db))
}

fn event(i: usize) -> Event {
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: "concierge.cases.v1.escalation_raised".into(),
        subject: format!("cases/c{i}/escalations/1"),
        ..Default::default()
    }
}

async fn count(db: &concierge_common::storage::Db, sql: &str) -> i64 {
    let mut pooled = db.acquire().await.unwrap();
    on_conn!(&mut pooled.conn(), c => sqlx::query_scalar(sql).fetch_one(&mut **c).await.unwrap())
}

#[tokio::test]
async fn an_event_is_queued_once_and_old_finished_deliveries_are_forgotten() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some((d, db)) = deliveries(backend).await else {
            continue;
        };
        let w = Webhook {
            name: "webhooks/channel".into(),
            ..Default::default()
        };
        let now = to_micros(jiff::Timestamp::now());
        let events: Vec<Event> = (0..4).map(event).collect();
        let mut tx = db.db.begin().await.unwrap();
        for e in events.iter().chain(events.iter().take(1)) {
            d.queue(&mut tx.conn(), &w, e, now).await.unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(
            count(&db.db, "SELECT COUNT(*) FROM webhook_deliveries").await,
            4,
            "{backend:?}"
        );
        assert_eq!(
            count(&db.db, "SELECT COUNT(*) FROM timers").await,
            4,
            "{backend:?}: one timer each"
        );

        // Two finished long ago, one finished lately, one still pending long ago.
        let old = now - KEPT.as_micros() as i64 - 1;
        let set = |state: webhook_delivery::State, at: i64, subject: String| {
            let db = db.db.clone();
            async move {
                let mut pooled = db.acquire().await.unwrap();
                on_conn!(&mut pooled.conn(), c => sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, update_time = $2 WHERE event_subject = $3")
                    .bind(state as i64)
                    .bind(at)
                    .bind(subject)
                    .execute(&mut **c)
                    .await
                    .unwrap()
                    .rows_affected());
            }
        };
        set(
            webhook_delivery::State::Succeeded,
            old,
            events[0].subject.clone(),
        )
        .await;
        set(
            webhook_delivery::State::Failed,
            old,
            events[1].subject.clone(),
        )
        .await;
        set(
            webhook_delivery::State::Succeeded,
            now,
            events[2].subject.clone(),
        )
        .await;
        set(
            webhook_delivery::State::Retrying,
            old,
            events[3].subject.clone(),
        )
        .await;
        assert_eq!(d.purge(now, 1000).await.unwrap(), 2, "{backend:?}");
        let kept: Vec<String> = {
            let mut pooled = db.db.acquire().await.unwrap();
            on_conn!(&mut pooled.conn(), c => sqlx::query_scalar(
                "SELECT event_subject FROM webhook_deliveries ORDER BY event_subject")
                .fetch_all(&mut **c)
                .await
                .unwrap())
        };
        assert_eq!(
            kept,
            vec![events[2].subject.clone(), events[3].subject.clone()]
        );
        assert_eq!(d.purge(now, 1000).await.unwrap(), 0);
    }
}
