//! SLA clocks: per case or across cases, and the ledger that explains one.

use concierge_common::crud::{Reply, reply};
use concierge_common::error::Error;
use concierge_common::page_query;
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use concierge_common::names;

use crate::{Cases, RULES};

/// One case's clocks, unfiltered, are read straight from its ledger.
/// A filter, a page token or "cases/-" goes through the clock index
/// (state and target as of each clock's last change or timer), and the
/// clocks of the page are then read live.
pub(super) async fn list_sla_clocks(
    svc: &Cases,
    request: Request<ListSlaClocksRequest>,
) -> Reply<ListSlaClocksResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    let across = req.parent == "cases/-";
    if !across && req.filter.is_empty() && req.page_token.is_empty() {
        let mut sla_clocks: Vec<SlaClock> = svc
            .case_clocks(&ctx, &req.parent)
            .await?
            .into_iter()
            .map(|(c, ..)| c)
            .collect();
        if !req.order_by.is_empty() && req.order_by != "target_time" {
            return Err(Error::invalid(
                "order_by",
                "one case's clocks come in target_time order; filter or list \"cases/-\" to order otherwise",
            )
            .into());
        }
        sla_clocks.sort_by_key(|c| {
            c.target_time
                .as_ref()
                .map(|t| (t.seconds, t.nanos))
                .unwrap_or((i64::MAX, 0))
        });
        return Ok(Response::new(ListSlaClocksResponse {
            sla_clocks,
            next_page_token: String::new(),
        }));
    }
    if !across {
        // A client asking about another account's case gets NOT_FOUND.
        svc.visible_case(&ctx, &req.parent).await?;
    }
    if req.order_by.is_empty() {
        req.order_by = "target_time".into();
    }
    let (indexed, next_page_token): (Vec<SlaClock>, String) = svc
        .store()
        .list(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    let mut cases: Vec<&str> = indexed
        .iter()
        .filter_map(|c| c.name.split("/slaClocks/").next())
        .collect();
    cases.sort_unstable();
    cases.dedup();
    let mut live: std::collections::HashMap<String, SlaClock> = Default::default();
    for read in svc.read_clocks(&cases).await?.into_values() {
        live.extend(read?.clocks.into_iter().map(|c| (c.name.clone(), c)));
    }
    let sla_clocks = indexed
        .into_iter()
        .map(|c| live.remove(&c.name).unwrap_or(c))
        .collect();
    Ok(Response::new(ListSlaClocksResponse {
        sla_clocks,
        next_page_token,
    }))
}

pub(super) async fn get_sla_clock(
    svc: &Cases,
    request: Request<GetSlaClockRequest>,
) -> Reply<SlaClock> {
    let ctx = svc.ctx(&request)?;
    let name = request.into_inner().name;
    let ids = names::parse("name", &name, &["cases", "slaClocks"])?;
    let clocks = svc.case_clocks(&ctx, &format!("cases/{}", ids[0])).await?;
    reply(
        clocks
            .into_iter()
            .find(|(c, ..)| c.name == name)
            .map(|(c, ..)| c)
            .ok_or(Error::NotFound {
                resource_type: "SlaClock",
                name,
            }),
    )
}

pub(super) async fn explain_sla_clock(
    svc: &Cases,
    request: Request<ExplainSlaClockRequest>,
) -> Reply<ExplainSlaClockResponse> {
    let ctx = svc.ctx(&request)?;
    let name = request.into_inner().name;
    let ids = names::parse("name", &name, &["cases", "slaClocks"])?;
    let clocks = svc.case_clocks(&ctx, &format!("cases/{}", ids[0])).await?;
    reply(
        clocks
            .into_iter()
            .find(|(c, ..)| c.name == name)
            .map(
                |(sla_clock, segments, target, pause_states)| ExplainSlaClockResponse {
                    sla_clock: Some(sla_clock),
                    segments,
                    target: Some(target),
                    pause_states,
                },
            )
            .ok_or(Error::NotFound {
                resource_type: "SlaClock",
                name,
            }),
    )
}
