//! An account changing hands moves its open cases to the new manager's
//! portfolio: a consumer of the customers service's `account_updated`
//! events. Each moved case becomes a new revision with a `case_updated`
//! event, all in the transaction that records the event in the inbox, so a
//! redelivered event moves nothing twice. Closed, resolved and cancelled
//! cases stay in the portfolio that worked them.

use concierge_common::clock;
use concierge_common::crud::{Ctx, Store};
use concierge_common::error::{Error, Result};
use concierge_common::inbox::{Consumer, Inbox, Subscription};
use concierge_common::resource;
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::Case;
use concierge_proto::customers::Account;
use concierge_proto::events::Event;

use crate::resources::CASES;
use crate::{Cases, RULES};

/// The durable name of the consumer.
pub const CONSUMER: &str = "cases-account-handover";

pub struct AccountHandover {
    cases: Cases,
}

impl AccountHandover {
    pub fn new(cases: Cases) -> Self {
        Self { cases }
    }
}

impl Consumer for AccountHandover {
    fn subscription(&self) -> Subscription {
        Subscription::new(
            CONSUMER,
            "customers",
            &[catalogue::customers::ACCOUNT_UPDATED.event_type()],
        )
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let account: Account = concierge_common::outbox::unpack(event)?;
        let update_time = account
            .update_time
            .as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_micros)
            .ok_or_else(|| Error::invalid("payload.update_time", "not set"))?;
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        let mut moved = 0usize;
        if crate::store::cases::claim_handover(&mut tx.conn(), &account.name, update_time).await? {
            let names = crate::store::cases::open_cases_filed_elsewhere(
                &mut tx.conn(),
                &account.name,
                &account.account_manager,
            )
            .await?;
            let ctx = Ctx::system(CONSUMER, &event.request_id);
            let now = self.cases.store().now();
            for name in names {
                let Some(stored) = resource::get_for_update(&mut tx.conn(), &CASES, &name).await?
                else {
                    continue;
                };
                let mut case: Case = Store::decode::<Case, crate::Rules>(&stored)?;
                case.account_manager = account.account_manager.clone();
                let next = resource::Stored {
                    update_time: now,
                    ..stored.clone()
                };
                crate::store::cases::write_locked(&mut tx.conn(), &next, &case).await?;
                case.update_time = Some(clock::to_proto(clock::from_micros(now)));
                self.cases
                    .store()
                    .record(
                        &RULES,
                        &mut tx.conn(),
                        &ctx,
                        catalogue::cases::CASE_UPDATED,
                        &case,
                        now,
                    )
                    .await?;
                moved += 1;
            }
        }
        tx.commit().await?;
        self.cases.directory().forget(&account.name).await;
        if moved > 0 {
            self.cases.store().nudge();
            tracing::info!(account = %account.name, account_manager = %account.account_manager, cases = moved, "open cases moved to the new account manager's portfolio");
        }
        Ok(())
    }
}
