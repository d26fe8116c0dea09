//! What the CSAT service asks of the others over gRPC, never their tables:
//! the customers service for a surveyed contact (address, language) and an
//! account's name; the cases service for a case surveyed by hand and for
//! a case's SLA clocks (the KPIs' business time).

use concierge_common::channel::{Traced, traced};
use concierge_common::error::Result;
use concierge_common::peer::{Peer, missing_is_invalid};
use concierge_common::principal::PrincipalCodec;
use concierge_proto::concierge::cases::v1::cases_service_client::CasesServiceClient;
use concierge_proto::concierge::cases::v1::cases_service_server::SERVICE_NAME as CASES;
use concierge_proto::concierge::cases::v1::{Case, GetCaseRequest, ListSlaClocksRequest, SlaClock};
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::customers_service_server::SERVICE_NAME as CUSTOMERS;
use concierge_proto::customers::{
    Account, Contact, GetAccountRequest, GetContactRequest, GetStaffMemberRequest, StaffMember,
};
use tonic::transport::Channel;

/// The CSAT service's clients of its peers, acting as itself.
#[derive(Clone)]
pub struct Peers {
    customers: Peer<CustomersServiceClient<Traced>>,
    cases: Peer<CasesServiceClient<Traced>>,
}

impl Peers {
    pub fn new(customers: Channel, cases: Channel, principals: &PrincipalCodec) -> Self {
        Self {
            customers: Peer::new(
                CustomersServiceClient::new(traced(customers)),
                principals,
                CUSTOMERS,
                "csat",
            )
            .named("the customers service"),
            cases: Peer::new(
                CasesServiceClient::new(traced(cases)),
                principals,
                CASES,
                "csat",
            )
            .named("the cases service"),
        }
    }

    /// A contact of an account; INVALID_ARGUMENT on `field` when gone.
    pub async fn contact(&self, request_id: &str, field: &str, name: &str) -> Result<Contact> {
        let request = GetContactRequest {
            name: name.to_string(),
        };
        self.customers
            .read(request_id, request, |mut c, r| async move {
                c.get_contact(r).await
            })
            .await
            .map_err(missing_is_invalid(field, name))
    }

    /// An account; INVALID_ARGUMENT on `field` when gone.
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

    /// A staff member; INVALID_ARGUMENT on `field` when gone.
    pub async fn staff_member(
        &self,
        request_id: &str,
        field: &str,
        name: &str,
    ) -> Result<StaffMember> {
        let request = GetStaffMemberRequest {
            name: name.to_string(),
        };
        self.customers
            .read(request_id, request, |mut c, r| async move {
                c.get_staff_member(r).await
            })
            .await
            .map_err(missing_is_invalid(field, name))
    }

    /// A case; INVALID_ARGUMENT on `field` when it does not exist.
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

    /// A case's client SLA clocks (at most 100: a policy has a handful of
    /// targets); none when the case is gone.
    pub async fn client_clocks(&self, request_id: &str, case: &str) -> Result<Vec<SlaClock>> {
        let request = ListSlaClocksRequest {
            parent: case.to_string(),
            page_size: 100,
            filter: "kind = CLIENT".into(),
            ..Default::default()
        };
        match self
            .cases
            .read(request_id, request, |mut c, r| async move {
                c.list_sla_clocks(r).await
            })
            .await
        {
            Ok(page) => Ok(page.sla_clocks),
            Err(refused) if refused.code() == tonic::Code::NotFound => Ok(Vec::new()),
            Err(refused) => Err(refused.into()),
        }
    }
}
