//! What the cases service needs to know about an account, asked of the
//! customers service over gRPC (never its tables): who owns it (the
//! portfolio a case belongs to) and its tier (which SLA policy applies).

use concierge_common::error::{Error, Reason, Result};
use concierge_common::peer::Peer;
use concierge_common::principal::PrincipalCodec;
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::customers_service_server::SERVICE_NAME as CUSTOMERS;
use concierge_proto::customers::{GetAccountRequest, GetSiteRequest, ListContactsRequest, Tier};
use tonic::Code;
use tonic::transport::Channel;

/// An account as a case sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFacts {
    pub name: String,
    /// "staff/{staff_member}", or empty.
    pub account_manager: String,
    /// As the customers service spells it, e.g. "TIER_ENTERPRISE".
    pub tier: String,
    pub time_zone: String,
}

/// A client of the customers service acting as the cases service itself.
#[derive(Clone)]
pub struct Directory {
    customers: Peer<CustomersServiceClient<concierge_common::channel::Traced>>,
}

impl Directory {
    pub fn new(customers: Channel, principals: &PrincipalCodec) -> Self {
        Self {
            customers: Peer::new(
                CustomersServiceClient::new(concierge_common::channel::traced(customers)),
                principals,
                CUSTOMERS,
                "cases",
            )
            .named("the customers service"),
        }
    }

    /// The facts of `account`, read for the request `request_id`;
    /// INVALID_ARGUMENT on `field` when it does not exist, UNAVAILABLE when
    /// the customers service cannot be reached, and any other refusal as
    /// [`Error`]'s `From<PeerError>` keeps it.
    pub async fn account(
        &self,
        request_id: &str,
        field: &str,
        account: &str,
    ) -> Result<AccountFacts> {
        let request = GetAccountRequest {
            name: account.to_string(),
        };
        let a = self
            .customers
            .read(request_id, request, |mut c, r| async move {
                c.get_account(r).await
            })
            .await
            .map_err(|refused| match refused.code() {
                Code::NotFound => Error::invalid(field, format!("{account} does not exist")),
                _ => refused.into(),
            })?;
        Ok(AccountFacts {
            name: a.name,
            account_manager: a.account_manager,
            tier: Tier::try_from(a.tier)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_default(),
            time_zone: a.time_zone,
        })
    }

    /// Who a public update on a case of `account` goes to: the account's
    /// client delegate, and the case's own contact when it has one.
    pub async fn update_recipients(
        &self,
        request_id: &str,
        account: &str,
        case_contact: &str,
    ) -> Result<Vec<String>> {
        let request = ListContactsRequest {
            parent: account.to_string(),
            filter: "client_delegate = true".into(),
            page_size: 10,
            ..Default::default()
        };
        let delegates = self
            .customers
            .read(request_id, request, |mut c, r| async move {
                c.list_contacts(r).await
            })
            .await?
            .contacts;
        let mut recipients: Vec<String> = delegates.into_iter().map(|c| c.name).collect();
        if !case_contact.is_empty() && !recipients.iter().any(|r| r == case_contact) {
            recipients.push(case_contact.to_string());
        }
        Ok(recipients)
    }

    /// The time zone of a site, in which its repairs count business time;
    /// FAILED_PRECONDITION when the site is gone.
    pub async fn site_time_zone(&self, request_id: &str, site: &str) -> Result<String> {
        let request = GetSiteRequest {
            name: site.to_string(),
        };
        let s = self
            .customers
            .read(request_id, request, |mut c, r| async move {
                c.get_site(r).await
            })
            .await
            .map_err(|refused| match refused.code() {
                Code::NotFound => Error::FailedPrecondition {
                    reason: Reason::SiteGone,
                    subject: site.to_string(),
                    description: format!("{site} no longer exists; its time zone cannot be read"),
                },
                _ => refused.into(),
            })?;
        Ok(s.time_zone)
    }
}
