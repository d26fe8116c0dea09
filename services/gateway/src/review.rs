//! The portfolio review: everything of an account manager's portfolio that
//! needs action, most urgent first, with why and what to do next. Each
//! domain that has findings is a [`FindingSource`] (cases, disputes; CSAT
//! adds its own as a further source), asked on
//! the caller's behalf, so every service still decides what the caller may
//! see. The whole review is computed once per first page and kept as a
//! snapshot, so that later pages read the same review.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use concierge_common::channel::Backend;
use concierge_common::clock::{self, SharedClock};
use concierge_common::error::{Error, Result};
use concierge_common::filter::{self, Field, FieldType, Value};
use concierge_common::principal::{
    PRINCIPAL_HEADER, Principal, PrincipalCodec, REQUEST_ID_HEADER, Role,
};
use concierge_proto::concierge::cases::v1 as cases;
use concierge_proto::concierge::gateway::v1::*;
use concierge_proto::customers;
use futures::future::BoxFuture;

/// The most items one review holds, over every source.
pub const MAX_ITEMS: usize = 20_000;
/// How long a review's later pages are served from its snapshot.
const SNAPSHOT_TTL: Duration = Duration::from_secs(600);
/// Items kept in snapshots at once, over all of them.
const SNAPSHOT_ITEMS: u64 = 400_000;
const DEFAULT_PAGE: i32 = 50;
const MAX_PAGE: i32 = 1000;

/// A backend's failure as one concrete error type: a generated client's
/// futures must be `Send`, which a boxed error of any lifetime defeats.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

/// A backend as a generated client's transport. Its own future and error
/// types are hidden behind this one's, which are `'static` and concrete:
/// otherwise the compiler cannot prove the client's futures `Send`.
#[derive(Clone)]
pub struct Transport(Backend);

impl tower::Service<http::Request<tonic::body::Body>> for Transport {
    type Response = http::Response<tonic::body::Body>;
    type Error = TransportError;
    type Future = BoxFuture<'static, std::result::Result<Self::Response, TransportError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), TransportError>> {
        self.0
            .poll_ready(cx)
            .map_err(|e| TransportError(e.to_string()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = self.0.call(request);
        Box::pin(async move { call.await.map_err(|e| TransportError(e.to_string())) })
    }
}

pub(crate) fn transport(backend: &Backend) -> Transport {
    Transport(backend.clone())
}

const CASES: &str = "concierge.cases.v1.CasesService";
const DISPUTES: &str = "concierge.disputes.v1.DisputesService";
const CUSTOMERS: &str = "concierge.customers.v1.CustomersService";
const CSAT: &str = "concierge.csat.v1.CsatService";

/// One domain's items that need action in a portfolio.
pub trait FindingSource: Send + Sync {
    /// The items of `manager`'s portfolio, asked as `caller`.
    fn items<'a>(
        &'a self,
        caller: &'a Principal,
        manager: &'a str,
        request_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PortfolioReviewItem>>>;
}

/// A call to a backend on the caller's behalf: its principal signed for
/// that service, and the request id.
fn on_behalf<M>(
    codec: &PrincipalCodec,
    caller: &Principal,
    service: &str,
    request_id: &str,
    message: M,
) -> Result<tonic::Request<M>> {
    let mut request = tonic::Request::new(message);
    let header = codec
        .encode(caller, service)
        .parse()
        .map_err(Error::internal)?;
    request.metadata_mut().insert(PRINCIPAL_HEADER, header);
    if let Ok(id) = request_id.parse() {
        request.metadata_mut().insert(REQUEST_ID_HEADER, id);
    }
    Ok(request)
}

fn peer_error(service: &str, status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            Error::Unavailable(format!("{service}: {}", status.message()))
        }
        tonic::Code::PermissionDenied => Error::PermissionDenied(status.message().to_string()),
        tonic::Code::InvalidArgument => Error::invalid("account_manager", status.message()),
        _ => Error::internal(anyhow::anyhow!("{service}: {status}")),
    }
}

/// The cases service's findings: open cases that need action.
pub struct CaseFindings {
    pub cases: Backend,
    pub codec: PrincipalCodec,
}

impl FindingSource for CaseFindings {
    fn items<'a>(
        &'a self,
        caller: &'a Principal,
        manager: &'a str,
        request_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PortfolioReviewItem>>> {
        Box::pin(async move {
            let mut client =
                cases::cases_service_client::CasesServiceClient::new(transport(&self.cases));
            let mut items = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = on_behalf(
                    &self.codec,
                    caller,
                    CASES,
                    request_id,
                    cases::ListCaseFindingsRequest {
                        account_manager: manager.to_string(),
                        page_size: 1000,
                        page_token,
                    },
                )?;
                let page = client
                    .list_case_findings(request)
                    .await
                    .map_err(|s| peer_error("the cases service", s))?
                    .into_inner();
                items.extend(page.cases.into_iter().map(case_item));
                if page.next_page_token.is_empty() || items.len() >= MAX_ITEMS {
                    return Ok(items);
                }
                page_token = page.next_page_token;
            }
        })
    }
}

fn case_item(found: cases::CaseWithFindings) -> PortfolioReviewItem {
    let c = found.case.unwrap_or_default();
    let findings: Vec<ReviewFinding> = found
        .findings
        .iter()
        .map(|f| ReviewFinding {
            // The two enums share their numbers, severity order included.
            reason: f.reason,
            detail: f.detail.clone(),
            resource: f.resource.clone(),
            since_time: f.since_time,
            due_time: f.due_time,
        })
        .collect();
    let suggested_action = findings
        .first()
        .map(|f| suggested_action(&c, f))
        .unwrap_or_default();
    let eta_time = c
        .jeopardy
        .as_ref()
        .and_then(|j| j.revised_eta_time)
        .or(c.committed_time);
    PortfolioReviewItem {
        subject: c.name.clone(),
        account: c.account.clone(),
        account_display_name: String::new(),
        findings,
        urgency_rank: 0,
        suggested_action,
        case: Some(CaseSummary {
            name: c.name.clone(),
            title: c.title.clone(),
            r#type: c.r#type,
            priority: c.priority,
            state: c.state,
            account: c.account.clone(),
            site: c.site.clone(),
            owner: c.owner.clone(),
            performing_team: c.performing_team.clone(),
            hand_off_code: c.hand_off_code.clone(),
            presented_to_carrier: c.presented_to_carrier,
            sla_state: c.sla.as_ref().map_or(0, |s| s.state),
            next_target_time: c.sla.as_ref().and_then(|s| s.next_target_time),
            eta_time,
            jeopardy_reason: c
                .jeopardy
                .as_ref()
                .map(|j| j.reason.clone())
                .unwrap_or_default(),
            create_time: c.create_time,
            update_time: c.update_time,
        }),
        dispute: None,
    }
}

/// What the account manager does next about `c`, for its most severe finding.
fn suggested_action(c: &cases::Case, f: &ReviewFinding) -> String {
    let team = if c.performing_team.is_empty() {
        "the performing team".to_string()
    } else {
        c.performing_team.clone()
    };
    match ReviewReason::try_from(f.reason).unwrap_or_default() {
        ReviewReason::SlaBreached => {
            format!(
                "Get a restore time from {team} and tell the client ({})",
                f.detail
            )
        }
        ReviewReason::JeopardyWithoutReason => {
            format!("Ask {team} for the jeopardy reason and a revised ETA")
        }
        ReviewReason::ChaseStageReached => {
            format!("Follow up the escalation with {team}: {}", f.detail)
        }
        ReviewReason::NotPresentedToCarrier => {
            format!("Have {team} place the order with the carrier")
        }
        ReviewReason::ConstructionUndefined => {
            format!("Get the construction definition from {team}")
        }
        ReviewReason::SlaAtRisk => {
            format!("Check with {team} that the target is met ({})", f.detail)
        }
        ReviewReason::ClientDeliverableOverdue => {
            format!("Remind the client: {}", f.detail)
        }
        ReviewReason::CorrectiveActionOverdue => {
            format!("Chase the overdue corrective action: {}", f.detail)
        }
        // Dispute items carry their own suggestion.
        ReviewReason::DisputeVettingOverdue => String::new(),
        ReviewReason::Unspecified => String::new(),
    }
}

/// The disputes service's findings: disputes whose vetting is overdue.
pub struct DisputeFindings {
    pub disputes: Backend,
    pub codec: PrincipalCodec,
}

impl FindingSource for DisputeFindings {
    fn items<'a>(
        &'a self,
        caller: &'a Principal,
        manager: &'a str,
        request_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PortfolioReviewItem>>> {
        use concierge_proto::disputes;
        Box::pin(async move {
            let mut client = disputes::disputes_service_client::DisputesServiceClient::new(
                transport(&self.disputes),
            );
            let quoted = quote(manager);
            let mut items = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = on_behalf(
                    &self.codec,
                    caller,
                    DISPUTES,
                    request_id,
                    disputes::ListDisputesRequest {
                        filter: format!("account_manager = \"{quoted}\" AND overdue = true"),
                        order_by: "vetting_due_time".into(),
                        page_size: 1000,
                        page_token,
                    },
                )?;
                let page = client
                    .list_disputes(request)
                    .await
                    .map_err(|s| peer_error("the disputes service", s))?
                    .into_inner();
                items.extend(page.disputes.into_iter().map(dispute_item));
                if page.next_page_token.is_empty() || items.len() >= MAX_ITEMS {
                    return Ok(items);
                }
                page_token = page.next_page_token;
            }
        })
    }
}

fn dispute_item(d: concierge_proto::disputes::Dispute) -> PortfolioReviewItem {
    let due = d
        .vetting_due_time
        .as_ref()
        .and_then(clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let disputed = d
        .total_disputed
        .as_ref()
        .map(concierge_common::money::format)
        .unwrap_or_default();
    PortfolioReviewItem {
        subject: d.name.clone(),
        account: d.account.clone(),
        findings: vec![ReviewFinding {
            reason: ReviewReason::DisputeVettingOverdue as i32,
            detail: format!(
                "vetting of the claim on invoice {} ({disputed}) was due {due}",
                d.invoice_number
            ),
            resource: d.name.clone(),
            since_time: d.vetting_due_time,
            due_time: d.vetting_due_time,
        }],
        suggested_action: format!(
            "Decide {}: propose a credit (concierge disputes propose) or deny it, then publish the position",
            d.name
        ),
        dispute: Some(DisputeSummary {
            name: d.name.clone(),
            invoice_number: d.invoice_number.clone(),
            state: d.state,
            total_disputed: d.total_disputed.clone(),
            approved_credit: d.approved_credit.clone(),
            vetting_due_time: d.vetting_due_time,
            overdue: d.overdue,
            owner: d.owner.clone(),
            update_time: d.update_time,
        }),
        ..Default::default()
    }
}

/// A computed review, its later pages read from it.
struct Snapshot {
    manager: String,
    filter: String,
    items: Vec<PortfolioReviewItem>,
    counts: Vec<ReviewReasonCount>,
    generate_time: Option<prost_types::Timestamp>,
}

/// The review over its sources.
pub struct Review {
    sources: Vec<Arc<dyn FindingSource>>,
    customers: Option<Backend>,
    codec: PrincipalCodec,
    clock: SharedClock,
    snapshots: moka::sync::Cache<String, Arc<Snapshot>>,
}

const FILTER_FIELDS: &[Field] = &[
    Field {
        name: "account",
        column: "account",
        ty: FieldType::Text,
    },
    Field {
        name: "reason",
        column: "reason",
        ty: FieldType::Enum {
            parse: |s| ReviewReason::from_str_name(s).map(|v| v as i32),
            prefix: "REVIEW_REASON_",
        },
    },
    Field {
        name: "case.type",
        column: "case_type",
        ty: FieldType::Enum {
            parse: |s| cases::CaseType::from_str_name(s).map(|v| v as i32),
            prefix: "CASE_TYPE_",
        },
    },
    Field {
        name: "case.priority",
        column: "case_priority",
        ty: FieldType::Enum {
            parse: |s| cases::CasePriority::from_str_name(s).map(|v| v as i32),
            prefix: "CASE_PRIORITY_",
        },
    },
    Field {
        name: "case.state",
        column: "case_state",
        ty: FieldType::Enum {
            parse: |s| cases::case::State::from_str_name(s).map(|v| v as i32),
            prefix: "STATE_",
        },
    },
];

/// Whether `item` matches `expr`: `reason` matches any of its findings.
fn matches(expr: &filter::Expr, item: &PortfolioReviewItem) -> bool {
    let case = item.case.clone().unwrap_or_default();
    item.findings.iter().any(|f| {
        expr.matches(&|column| match column {
            "account" => Some(Value::Text(item.account.clone())),
            "reason" => Some(Value::Int(i64::from(f.reason))),
            "case_type" => Some(Value::Int(i64::from(case.r#type))),
            "case_priority" => Some(Value::Int(i64::from(case.priority))),
            "case_state" => Some(Value::Int(i64::from(case.state))),
            _ => None,
        })
    })
}

/// When an item's deadline is, for ordering: its most severe finding's due
/// time, else since when it holds; none sorts last.
fn deadline(item: &PortfolioReviewItem) -> (i64, i32) {
    item.findings
        .first()
        .and_then(|f| f.due_time.or(f.since_time))
        .map_or((i64::MAX, 0), |t| (t.seconds, t.nanos))
}

impl Review {
    pub fn new(
        sources: Vec<Arc<dyn FindingSource>>,
        customers: Option<Backend>,
        codec: PrincipalCodec,
        clock: SharedClock,
    ) -> Self {
        Self {
            sources,
            customers,
            codec,
            clock,
            snapshots: moka::sync::Cache::builder()
                .weigher(|_, s: &Arc<Snapshot>| {
                    u32::try_from(s.items.len()).unwrap_or(u32::MAX).max(1)
                })
                .max_capacity(SNAPSHOT_ITEMS)
                .time_to_live(SNAPSHOT_TTL)
                .build(),
        }
    }

    /// The page `req` asks for, as `caller`.
    pub async fn page(
        &self,
        caller: &Principal,
        request_id: &str,
        req: &GetPortfolioReviewRequest,
    ) -> Result<GetPortfolioReviewResponse> {
        let manager = self.whose(caller, &req.account_manager)?;
        if req.page_size < 0 {
            return Err(Error::invalid("page_size", "must not be negative"));
        }
        let size = match req.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        } as usize;
        let expr = filter::parse(&req.filter, FILTER_FIELDS)?;
        let (snapshot, offset) = match req.page_token.as_str() {
            "" => (
                self.compute(caller, &manager, request_id, &req.filter)
                    .await?,
                0,
            ),
            token => self.resume(token, &manager, &req.filter)?,
        };
        let matching: Vec<&PortfolioReviewItem> = snapshot
            .items
            .iter()
            .filter(|i| expr.as_ref().is_none_or(|e| matches(e, i)))
            .collect();
        let end = offset.saturating_add(size).min(matching.len());
        let items: Vec<PortfolioReviewItem> = matching
            .get(offset..end)
            .unwrap_or_default()
            .iter()
            .map(|i| (*i).clone())
            .collect();
        let next_page_token = if end < matching.len() {
            let id = uuid::Uuid::new_v4().to_string();
            self.snapshots.insert(id.clone(), snapshot.clone());
            URL_SAFE_NO_PAD.encode(format!("{id}:{end}"))
        } else {
            String::new()
        };
        Ok(GetPortfolioReviewResponse {
            account_manager: manager,
            items,
            next_page_token,
            total_size: i32::try_from(matching.len()).unwrap_or(i32::MAX),
            reason_counts: snapshot.counts.clone(),
            generate_time: snapshot.generate_time,
        })
    }

    /// Whose portfolio: the caller's own, or (for managers and admins) the
    /// one asked for.
    fn whose(&self, caller: &Principal, asked: &str) -> Result<String> {
        if !caller.role.is_staff() {
            return Err(Error::PermissionDenied(
                "a portfolio review is for the company's account managers".into(),
            ));
        }
        let own = caller.staff_member.clone().unwrap_or_default();
        let manager = if asked.is_empty() {
            own.clone()
        } else {
            asked.to_string()
        };
        if manager.is_empty() {
            return Err(Error::invalid(
                "account_manager",
                "required: the caller is not a staff member, so name one (\"staff/{staff_member}\")",
            ));
        }
        concierge_common::names::parse("account_manager", &manager, &["staff"])?;
        if manager != own && !matches!(caller.role, Role::Manager | Role::Admin) {
            return Err(Error::PermissionDenied(format!(
                "only managers review another's portfolio; yours is {}",
                if own.is_empty() { "not set" } else { &own }
            )));
        }
        Ok(manager)
    }

    fn resume(&self, token: &str, manager: &str, filter: &str) -> Result<(Arc<Snapshot>, usize)> {
        let bad = |why: &str| Error::invalid("page_token", why);
        let text = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("not a token this method gave"))?;
        let (id, offset) = text
            .split_once(':')
            .ok_or_else(|| bad("not a token this method gave"))?;
        let offset: usize = offset
            .parse()
            .map_err(|_| bad("not a token this method gave"))?;
        let snapshot = self
            .snapshots
            .get(id)
            .ok_or_else(|| bad("expired: ask for the first page again"))?;
        if snapshot.manager != manager || snapshot.filter != filter {
            return Err(bad("was given for other parameters"));
        }
        Ok((snapshot, offset))
    }

    /// The whole review, from every source at once, ranked and counted.
    async fn compute(
        &self,
        caller: &Principal,
        manager: &str,
        request_id: &str,
        filter: &str,
    ) -> Result<Arc<Snapshot>> {
        let asked = self
            .sources
            .iter()
            .map(|s| s.items(caller, manager, request_id));
        let (found, names) = tokio::join!(
            futures::future::join_all(asked),
            self.account_names(caller, manager, request_id)
        );
        let names = names.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "account names unavailable for the portfolio review");
            BTreeMap::new()
        });
        let mut items = Vec::new();
        for f in found {
            items.extend(f?);
        }
        items.truncate(MAX_ITEMS);
        items.sort_by(|a, b| {
            let severity =
                |i: &PortfolioReviewItem| i.findings.first().map_or(i32::MAX, |f| f.reason);
            severity(a)
                .cmp(&severity(b))
                .then_with(|| deadline(a).cmp(&deadline(b)))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        let mut counts: BTreeMap<i32, i32> = BTreeMap::new();
        for (rank, item) in items.iter_mut().enumerate() {
            item.urgency_rank = i32::try_from(rank + 1).unwrap_or(i32::MAX);
            if let Some(name) = names.get(&item.account) {
                item.account_display_name = name.clone();
            }
            let mut reasons: Vec<i32> = item.findings.iter().map(|f| f.reason).collect();
            reasons.dedup();
            for r in reasons {
                *counts.entry(r).or_default() += 1;
            }
        }
        Ok(Arc::new(Snapshot {
            manager: manager.to_string(),
            filter: filter.to_string(),
            items,
            counts: counts
                .into_iter()
                .map(|(reason, count)| ReviewReasonCount { reason, count })
                .collect(),
            generate_time: Some(clock::to_proto(self.clock.now())),
        }))
    }

    /// The display names of the portfolio's accounts.
    async fn account_names(
        &self,
        caller: &Principal,
        manager: &str,
        request_id: &str,
    ) -> Result<BTreeMap<String, String>> {
        let Some(backend) = &self.customers else {
            return Ok(BTreeMap::new());
        };
        let mut client =
            customers::customers_service_client::CustomersServiceClient::new(transport(backend));
        let mut names = BTreeMap::new();
        let mut page_token = String::new();
        let quoted = quote(manager);
        loop {
            let request = on_behalf(
                &self.codec,
                caller,
                CUSTOMERS,
                request_id,
                customers::ListAccountsRequest {
                    page_size: 1000,
                    page_token,
                    filter: format!("account_manager = \"{quoted}\""),
                    ..Default::default()
                },
            )?;
            let page = client
                .list_accounts(request)
                .await
                .map_err(|s| peer_error("the customers service", s))?
                .into_inner();
            names.extend(page.accounts.into_iter().map(|a| (a.name, a.display_name)));
            if page.next_page_token.is_empty() || names.len() >= MAX_ITEMS {
                return Ok(names);
            }
            page_token = page.next_page_token;
        }
    }
}

/// `s` inside an AIP-160 string literal.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The CSAT service's findings: corrective action plans with an action past
/// its due time.
pub struct PlanFindings {
    pub csat: Backend,
    pub codec: PrincipalCodec,
}

impl FindingSource for PlanFindings {
    fn items<'a>(
        &'a self,
        caller: &'a Principal,
        manager: &'a str,
        request_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PortfolioReviewItem>>> {
        use concierge_proto::csat;
        Box::pin(async move {
            let mut client =
                csat::csat_service_client::CsatServiceClient::new(transport(&self.csat));
            let quoted = quote(manager);
            let mut items = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = on_behalf(
                    &self.codec,
                    caller,
                    CSAT,
                    request_id,
                    csat::ListCorrectiveActionPlansRequest {
                        filter: format!(
                            "account_manager = \"{quoted}\" AND overdue = true AND state = OPEN"
                        ),
                        order_by: "next_due_time".into(),
                        page_size: 1000,
                        page_token,
                    },
                )?;
                let page = client
                    .list_corrective_action_plans(request)
                    .await
                    .map_err(|s| peer_error("the CSAT service", s))?
                    .into_inner();
                items.extend(page.corrective_action_plans.into_iter().map(plan_item));
                if page.next_page_token.is_empty() || items.len() >= MAX_ITEMS {
                    return Ok(items);
                }
                page_token = page.next_page_token;
            }
        })
    }
}

fn plan_item(p: concierge_proto::csat::CorrectiveActionPlan) -> PortfolioReviewItem {
    let late: Vec<&concierge_proto::csat::CorrectiveAction> =
        p.actions.iter().filter(|a| a.overdue).collect();
    let findings = late
        .iter()
        .map(|a| {
            let due = a
                .due_time
                .as_ref()
                .and_then(clock::from_proto)
                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            ReviewFinding {
                reason: ReviewReason::CorrectiveActionOverdue as i32,
                detail: format!(
                    "action {} of \"{}\" ({}) was due {due}",
                    a.id, p.title, a.description
                ),
                resource: p.name.clone(),
                since_time: a.due_time,
                due_time: a.due_time,
            }
        })
        .collect();
    PortfolioReviewItem {
        subject: p.name.clone(),
        account: p.account.clone(),
        findings,
        suggested_action: format!(
            "Chase the overdue corrective action of {} (concierge csat plans get {}), or move its due time",
            p.title, p.name
        ),
        case: None,
        dispute: None,
        account_display_name: String::new(),
        urgency_rank: 0,
    }
}

/// The sources of the services the gateway routes to: a review gains a
/// source when its service is among the backends.
pub fn sources(
    backends: &BTreeMap<&'static str, Backend>,
    codec: &PrincipalCodec,
) -> Vec<Arc<dyn FindingSource>> {
    let mut sources: Vec<Arc<dyn FindingSource>> = Vec::new();
    if let Some(cases) = backends.get(CASES) {
        sources.push(Arc::new(CaseFindings {
            cases: cases.clone(),
            codec: codec.clone(),
        }));
    }
    if let Some(disputes) = backends.get(DISPUTES) {
        sources.push(Arc::new(DisputeFindings {
            disputes: disputes.clone(),
            codec: codec.clone(),
        }));
    }
    if let Some(csat) = backends.get(CSAT) {
        sources.push(Arc::new(PlanFindings {
            csat: csat.clone(),
            codec: codec.clone(),
        }));
    }
    sources
}

/// The customers backend, for account names.
pub fn customers(backends: &BTreeMap<&'static str, Backend>) -> Option<Backend> {
    backends.get(CUSTOMERS).cloned()
}
