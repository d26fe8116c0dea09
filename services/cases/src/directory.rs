//! What the cases service needs to know about an account, asked of the
//! customers service over gRPC (never its tables): who owns it (the
//! portfolio a case belongs to) and its tier (which SLA policy applies).
//!
//! An account's facts and a site's time zone are kept for [`FACTS_TTL`]
//! after they are read, so a busy account's creates do not each cost a call:
//! a new account manager, tier or zone reaches new cases within that time.
//! A refusal (an account that does not exist) is never kept.

use concierge_common::error::{Error, Reason, Result};
use concierge_common::peer::Peer;
use concierge_common::principal::PrincipalCodec;
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::customers_service_server::SERVICE_NAME as CUSTOMERS;
use concierge_proto::customers::{
    Account, Contact, GetAccountRequest, GetContactRequest, GetEscalationChainRequest,
    GetSiteRequest, GetStaffMemberRequest, InventoryItem, ListAccountsRequest, ListContactsRequest,
    ListInventoryItemsRequest, ListSitesRequest, ListStaffMembersRequest, Site, StaffMember, Tier,
};
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

/// How long an account's facts or a site's zone are used without asking
/// again.
pub const FACTS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Accounts (and sites) whose facts are kept at once; the least used go
/// first.
const FACTS_KEPT: u64 = 100_000;

/// A refusal of NOT_FOUND as nothing found; any other as the error it is.
fn found<T>(
    answer: std::result::Result<T, concierge_common::peer::PeerError>,
) -> Result<Option<T>> {
    match answer {
        Ok(t) => Ok(Some(t)),
        Err(refused) if refused.code() == Code::NotFound => Ok(None),
        Err(refused) => Err(refused.into()),
    }
}

/// Every page of a list, up to `limit` items: `page` reads the page of a
/// token and answers its items and the next token.
async fn all_pages<T, Fut>(limit: usize, mut page: impl FnMut(String) -> Fut) -> Result<Vec<T>>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        if next.is_empty() || all.len() >= limit {
            all.truncate(limit);
            return Ok(all);
        }
        token = next;
    }
}

/// The most inventory items one site's triage reads.
pub const MAX_SITE_INVENTORY: usize = 5_000;

/// A client of the customers service acting as the cases service itself.
#[derive(Clone)]
pub struct Directory {
    customers: Peer<CustomersServiceClient<concierge_common::channel::Traced>>,
    accounts: moka::future::Cache<String, AccountFacts>,
    site_zones: moka::future::Cache<String, String>,
}

fn cache<V: Clone + Send + Sync + 'static>() -> moka::future::Cache<String, V> {
    moka::future::Cache::builder()
        .max_capacity(FACTS_KEPT)
        .time_to_live(FACTS_TTL)
        .build()
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
            accounts: cache(),
            site_zones: cache(),
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
        if let Some(facts) = self.accounts.get(account).await {
            return Ok(facts);
        }
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
        let facts = AccountFacts {
            name: a.name,
            account_manager: a.account_manager,
            tier: Tier::try_from(a.tier)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_default(),
            time_zone: a.time_zone,
        };
        self.accounts
            .insert(account.to_string(), facts.clone())
            .await;
        Ok(facts)
    }

    /// Forgets what is known of `account`, so that the next case asks again
    /// (its manager changed).
    pub async fn forget(&self, account: &str) {
        self.accounts.invalidate(account).await;
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

    /// The managers above `staff_member`, nearest first (empty at the
    /// top); a staff member the directory does not know has none either.
    /// Not kept: an escalation goes to the chain as it is now.
    pub async fn escalation_chain(&self, staff_member: &str) -> Result<Vec<StaffMember>> {
        let request = GetEscalationChainRequest {
            name: staff_member.to_string(),
        };
        let chain = found(
            self.customers
                .read("", request, |mut c, r| async move {
                    c.get_escalation_chain(r).await
                })
                .await,
        )?;
        Ok(chain.map(|c| c.managers).unwrap_or_default())
    }

    /// Who an escalation's e-mail goes to: the staff member it targets, or
    /// the active members of the team it targets (at most 100). A staff
    /// member the directory does not know reaches nobody.
    pub async fn escalation_recipients(
        &self,
        team: &str,
        staff_member: &str,
    ) -> Result<Vec<StaffMember>> {
        if !staff_member.is_empty() {
            let request = GetStaffMemberRequest {
                name: staff_member.to_string(),
            };
            let member = found(
                self.customers
                    .read("", request, |mut c, r| async move {
                        c.get_staff_member(r).await
                    })
                    .await,
            )?;
            return Ok(member.into_iter().collect());
        }
        let quoted = team.replace('\\', "\\\\").replace('"', "\\\"");
        let request = ListStaffMembersRequest {
            page_size: 100,
            filter: format!("team = \"{quoted}\" AND active = true"),
            ..Default::default()
        };
        let members = self
            .customers
            .read("", request, |mut c, r| async move {
                c.list_staff_members(r).await
            })
            .await?;
        Ok(members.staff_members)
    }

    /// What an account's control document prints about it: the account, its
    /// client delegates (who receive it) and its sites by name.
    pub async fn control_document_facts(
        &self,
        request_id: &str,
        account: &str,
    ) -> Result<(Account, Vec<Contact>, Vec<Site>)> {
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
                Code::NotFound => Error::invalid("parent", format!("{account} does not exist")),
                _ => refused.into(),
            })?;
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
        let sites = all_pages(MAX_SITE_INVENTORY, |page_token| {
            let request = ListSitesRequest {
                parent: account.to_string(),
                page_size: 1000,
                page_token,
                ..Default::default()
            };
            async move {
                let page = self
                    .customers
                    .read(request_id, request, |mut c, r| async move {
                        c.list_sites(r).await
                    })
                    .await?;
                Ok((page.sites, page.next_page_token))
            }
        })
        .await?;
        Ok((a, delegates, sites))
    }

    /// The accounts whose MRC is at least `threshold` (in its currency),
    /// at most `limit` of them, for the weekly control documents.
    pub async fn accounts_at_or_over(
        &self,
        threshold: &concierge_proto::types::Money,
        limit: usize,
    ) -> Result<Vec<Account>> {
        let filter = format!(
            "mrc.currency_code = \"{}\" AND mrc.minor_units >= {} AND state = ACTIVE",
            threshold.currency_code, threshold.minor_units
        );
        all_pages(limit, |page_token| {
            let request = ListAccountsRequest {
                page_size: 1000,
                page_token,
                filter: filter.clone(),
                ..Default::default()
            };
            async move {
                let page = self
                    .customers
                    .read(
                        "",
                        request,
                        |mut c, r| async move { c.list_accounts(r).await },
                    )
                    .await?;
                Ok((page.accounts, page.next_page_token))
            }
        })
        .await
    }

    /// Display names of staff members, by name; one the directory does not
    /// know keeps its name.
    pub async fn staff_names(
        &self,
        names: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut out = std::collections::HashMap::new();
        for name in names {
            let request = GetStaffMemberRequest { name: name.clone() };
            let member = found(
                self.customers
                    .read("", request, |mut c, r| async move {
                        c.get_staff_member(r).await
                    })
                    .await,
            )?;
            if let Some(m) = member {
                out.insert(name.clone(), m.display_name);
            }
        }
        Ok(out)
    }

    /// A contact, for the language of the mail it receives; None when gone.
    pub async fn contact(&self, name: &str) -> Result<Option<Contact>> {
        let request = GetContactRequest {
            name: name.to_string(),
        };
        found(
            self.customers
                .read(
                    "",
                    request,
                    |mut c, r| async move { c.get_contact(r).await },
                )
                .await,
        )
    }

    /// A site and its whole inventory (at most [`MAX_SITE_INVENTORY`]
    /// items), for a repair's triage; FAILED_PRECONDITION when the site is
    /// gone.
    pub async fn site_with_inventory(
        &self,
        request_id: &str,
        site: &str,
    ) -> Result<(Site, Vec<InventoryItem>)> {
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
                    description: format!("{site} no longer exists"),
                },
                _ => refused.into(),
            })?;
        let items = all_pages(MAX_SITE_INVENTORY, |page_token| {
            let request = ListInventoryItemsRequest {
                parent: site.to_string(),
                page_size: 1000,
                page_token,
                ..Default::default()
            };
            async move {
                let page = self
                    .customers
                    .read(request_id, request, |mut c, r| async move {
                        c.list_inventory_items(r).await
                    })
                    .await?;
                Ok((page.inventory_items, page.next_page_token))
            }
        })
        .await?;
        Ok((s, items))
    }

    /// The time zone of a site, in which its repairs count business time;
    /// FAILED_PRECONDITION when the site is gone.
    pub async fn site_time_zone(&self, request_id: &str, site: &str) -> Result<String> {
        if let Some(zone) = self.site_zones.get(site).await {
            return Ok(zone);
        }
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
        self.site_zones
            .insert(site.to_string(), s.time_zone.clone())
            .await;
        Ok(s.time_zone)
    }
}
