//! What the disputes service asks of the others over gRPC, never their
//! tables: the customers service for accounts, inventory MRCs, contacts and
//! the staff directory; the cases service for business time (its calendars)
//! and a repair case's down time.

use concierge_common::channel::{Traced, traced};
use concierge_common::error::{Error, Result};
use concierge_common::peer::{Peer, missing_is_invalid};
use concierge_common::principal::PrincipalCodec;
use concierge_proto::concierge::cases::v1::cases_service_client::CasesServiceClient;
use concierge_proto::concierge::cases::v1::cases_service_server::SERVICE_NAME as CASES;
use concierge_proto::concierge::cases::v1::{
    AddBusinessTimeRequest, Case, GetCaseRequest, MeasureBusinessTimeRequest,
};
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::customers_service_server::SERVICE_NAME as CUSTOMERS;
use concierge_proto::customers::{
    Account, Contact, GetAccountRequest, GetInventoryItemRequest, GetStaffMemberRequest,
    InventoryItem, ListContactsRequest, StaffMember,
};
use jiff::{SignedDuration, Timestamp};
use tonic::Code;
use tonic::transport::Channel;

/// The disputes service's clients of its peers, acting as itself.
#[derive(Clone)]
pub struct Peers {
    customers: Peer<CustomersServiceClient<Traced>>,
    cases: Peer<CasesServiceClient<Traced>>,
}

/// A calendar the settings name that the cases service does not know: the
/// settings need mending before anything can be counted in it.
fn calendar_gone(calendar: &str) -> impl Fn(concierge_common::peer::PeerError) -> Error {
    let calendar = calendar.to_string();
    move |refused| match refused.code() {
        Code::NotFound => Error::FailedPrecondition {
            reason: concierge_common::error::Reason::CalendarGone,
            subject: calendar.clone(),
            description: format!(
                "the disputes settings count vetting in {calendar}, which the cases service does not know: set dispute_settings.calendar"
            ),
        },
        _ => refused.into(),
    }
}

impl Peers {
    pub fn new(customers: Channel, cases: Channel, principals: &PrincipalCodec) -> Self {
        Self {
            customers: Peer::new(
                CustomersServiceClient::new(traced(customers)),
                principals,
                CUSTOMERS,
                "disputes",
            )
            .named("the customers service"),
            cases: Peer::new(
                CasesServiceClient::new(traced(cases)),
                principals,
                CASES,
                "disputes",
            )
            .named("the cases service"),
        }
    }

    /// The account a dispute is filed under; INVALID_ARGUMENT on `field`
    /// when it does not exist.
    pub async fn account(&self, request_id: &str, field: &str, name: &str) -> Result<Account> {
        let request = GetAccountRequest {
            name: name.to_string(),
        };
        self.customers
            .read(request_id, request, |mut c, r| async move {
                c.get_account(r).await
            })
            .await
            .map_err(missing_is_invalid(field, name))
    }

    /// An inventory item (its MRC); INVALID_ARGUMENT on `field` when gone.
    pub async fn inventory_item(
        &self,
        request_id: &str,
        field: &str,
        name: &str,
    ) -> Result<InventoryItem> {
        let request = GetInventoryItemRequest {
            name: name.to_string(),
        };
        self.customers
            .read(request_id, request, |mut c, r| async move {
                c.get_inventory_item(r).await
            })
            .await
            .map_err(missing_is_invalid(field, name))
    }

    /// A member of the staff directory, or none when it has no such entry.
    pub async fn staff_member(&self, request_id: &str, name: &str) -> Result<Option<StaffMember>> {
        let request = GetStaffMemberRequest {
            name: name.to_string(),
        };
        match self
            .customers
            .read(request_id, request, |mut c, r| async move {
                c.get_staff_member(r).await
            })
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(refused) if refused.code() == Code::NotFound => Ok(None),
            Err(refused) => Err(refused.into()),
        }
    }

    /// The account's client delegates.
    pub async fn client_delegates(&self, request_id: &str, account: &str) -> Result<Vec<Contact>> {
        let request = ListContactsRequest {
            parent: account.to_string(),
            filter: "client_delegate = true".into(),
            page_size: 10,
            ..Default::default()
        };
        Ok(self
            .customers
            .read(request_id, request, |mut c, r| async move {
                c.list_contacts(r).await
            })
            .await?
            .contacts)
    }

    /// A contact of an account; INVALID_ARGUMENT on `field` when gone.
    pub async fn contact(&self, request_id: &str, field: &str, name: &str) -> Result<Contact> {
        let request = concierge_proto::customers::GetContactRequest {
            name: name.to_string(),
        };
        self.customers
            .read(request_id, request, |mut c, r| async move {
                c.get_contact(r).await
            })
            .await
            .map_err(missing_is_invalid(field, name))
    }

    /// A case as the cases service reads it (its outage's down time and the
    /// time within it the case waited on the client included).
    pub async fn case(&self, request_id: &str, field: &str, name: &str) -> Result<Case> {
        let request = GetCaseRequest {
            name: name.to_string(),
        };
        self.cases
            .read(request_id, request, |mut c, r| async move {
                c.get_case(r).await
            })
            .await
            .map_err(missing_is_invalid(field, name))
    }

    /// `start` plus `duration` of business time in `calendar`; wall-clock
    /// time when no calendar is set.
    pub async fn add_business_time(
        &self,
        request_id: &str,
        calendar: &str,
        start: Timestamp,
        duration: SignedDuration,
    ) -> Result<Timestamp> {
        if calendar.is_empty() {
            return start
                .checked_add(duration)
                .map_err(|_| Error::invalid("dispute_settings.vetting_target", "too long"));
        }
        let request = AddBusinessTimeRequest {
            calendar: calendar.to_string(),
            start_time: Some(concierge_common::clock::to_proto(start)),
            duration: Some(concierge_common::bounded::Duration::to_proto(duration)),
            time_zone: None,
        };
        let end = self
            .cases
            .read(request_id, request, |mut c, r| async move {
                c.add_business_time(r).await
            })
            .await
            .map_err(calendar_gone(calendar))?
            .end_time;
        end.as_ref()
            .and_then(concierge_common::clock::from_proto)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("AddBusinessTime answered no end")))
    }

    /// Business time in `calendar` between `start` and `end`; wall-clock
    /// time when no calendar is set.
    pub async fn measure_business_time(
        &self,
        request_id: &str,
        calendar: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<SignedDuration> {
        if end <= start {
            return Ok(SignedDuration::ZERO);
        }
        if calendar.is_empty() {
            return Ok(end.duration_since(start));
        }
        let request = MeasureBusinessTimeRequest {
            calendar: calendar.to_string(),
            start_time: Some(concierge_common::clock::to_proto(start)),
            end_time: Some(concierge_common::clock::to_proto(end)),
            time_zone: None,
        };
        let d = self
            .cases
            .read(request_id, request, |mut c, r| async move {
                c.measure_business_time(r).await
            })
            .await
            .map_err(calendar_gone(calendar))?
            .business_duration
            .unwrap_or_default();
        concierge_common::bounded::Duration::try_from(&d)
            .map(concierge_common::bounded::Duration::get)
            .map_err(|e| Error::internal(anyhow::anyhow!("MeasureBusinessTime answered {e}")))
    }
}
