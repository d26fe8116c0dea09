//! What the cases service needs to know about an account, asked of the
//! customers service over gRPC (never its tables): who owns it (the
//! portfolio a case belongs to) and its tier (which SLA policy applies).

use concierge_common::error::{Error, Result};
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec};
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::{GetAccountRequest, GetSiteRequest, ListContactsRequest, Tier};

/// How the customers service is named in what its answers become.
const PEER: &str = "the customers service";

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
    client: CustomersServiceClient<concierge_common::channel::Traced>,
    principals: PrincipalCodec,
}

impl Directory {
    pub fn new(customers: tonic::transport::Channel, principals: &PrincipalCodec) -> Self {
        Self {
            client: CustomersServiceClient::new(concierge_common::channel::traced(customers)),
            principals: principals.clone(),
        }
    }

    /// A request carrying the cases service's own signed principal.
    fn signed<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        // Signed per call: a signed principal is good for minutes, and only
        // for the customers service.
        let principal = self.principals.encode(
            &Principal::system("cases"),
            concierge_proto::customers::customers_service_server::SERVICE_NAME,
        );
        request.metadata_mut().insert(
            PRINCIPAL_HEADER,
            principal.parse().map_err(Error::internal)?,
        );
        Ok(request)
    }

    /// The facts of `account`; INVALID_ARGUMENT on `field` when it does not
    /// exist, UNAVAILABLE when the customers service cannot be reached, and
    /// any other refusal as [`Error::from_peer`] keeps it.
    pub async fn account(&self, field: &str, account: &str) -> Result<AccountFacts> {
        let request = self.signed(GetAccountRequest {
            name: account.to_string(),
        })?;
        match self.client.clone().get_account(request).await {
            Ok(a) => {
                let a = a.into_inner();
                Ok(AccountFacts {
                    name: a.name,
                    account_manager: a.account_manager,
                    tier: Tier::try_from(a.tier)
                        .map(|t| t.as_str_name().to_string())
                        .unwrap_or_default(),
                    time_zone: a.time_zone,
                })
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(Error::invalid(field, format!("{account} does not exist")))
            }
            Err(s) => Err(Error::from_peer(PEER, &s)),
        }
    }

    /// Who a public update on a case of `account` goes to: the account's
    /// client delegate, and the case's own contact when it has one.
    pub async fn update_recipients(
        &self,
        account: &str,
        case_contact: &str,
    ) -> Result<Vec<String>> {
        let request = self.signed(ListContactsRequest {
            parent: account.to_string(),
            filter: "client_delegate = true".into(),
            page_size: 10,
            ..Default::default()
        })?;
        let delegates = self
            .client
            .clone()
            .list_contacts(request)
            .await
            .map_err(|s| Error::from_peer(PEER, &s))?
            .into_inner()
            .contacts;
        let mut recipients: Vec<String> = delegates.into_iter().map(|c| c.name).collect();
        if !case_contact.is_empty() && !recipients.iter().any(|r| r == case_contact) {
            recipients.push(case_contact.to_string());
        }
        Ok(recipients)
    }

    /// The time zone of a site, in which its repairs count business time.
    pub async fn site_time_zone(&self, site: &str) -> Result<String> {
        let request = self.signed(GetSiteRequest {
            name: site.to_string(),
        })?;
        match self.client.clone().get_site(request).await {
            Ok(s) => Ok(s.into_inner().time_zone),
            Err(s) if s.code() == tonic::Code::NotFound => Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::SiteGone,
                subject: site.to_string(),
                description: format!("{site} no longer exists; its time zone cannot be read"),
            }),
            Err(s) => Err(Error::from_peer(PEER, &s)),
        }
    }
}
