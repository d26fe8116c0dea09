//! Chase runs and steps as staff see them on a case (or across cases), and
//! CancelChaseRun: a person stopping a run the chase engine started.

use concierge_common::crud::{Reply, Resource, Store, reply};
use concierge_common::error::{Error, Reason};
use concierge_common::{names, page_query, resource, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use super::{once, required};
use crate::resources::{CASES, CHASE_RUNS};
use crate::{Cases, RULES, Rules, authz, chase, store};

pub(super) async fn get_chase_run(
    svc: &Cases,
    request: Request<GetChaseRunRequest>,
) -> Reply<ChaseRun> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn get_chase_step(
    svc: &Cases,
    request: Request<GetChaseStepRequest>,
) -> Reply<ChaseStep> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_chase_runs(
    svc: &Cases,
    request: Request<ListChaseRunsRequest>,
) -> Reply<ListChaseRunsResponse> {
    let ctx = svc.ctx(&request)?;
    authz::staff_only(&ctx.principal, "chase runs")?;
    let mut req = request.into_inner();
    if req.parent != "cases/-" {
        svc.visible_case(&ctx, &req.parent).await?;
    }
    if req.order_by.is_empty() {
        req.order_by = "start_time desc".into();
    }
    let (chase_runs, next_page_token) = svc
        .store()
        .list(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    Ok(Response::new(ListChaseRunsResponse {
        chase_runs,
        next_page_token,
    }))
}

pub(super) async fn list_chase_steps(
    svc: &Cases,
    request: Request<ListChaseStepsRequest>,
) -> Reply<ListChaseStepsResponse> {
    let ctx = svc.ctx(&request)?;
    authz::staff_only(&ctx.principal, "chase steps")?;
    let mut req = request.into_inner();
    if req.parent != "cases/-" {
        svc.visible_case(&ctx, &req.parent).await?;
    }
    if req.order_by.is_empty() {
        req.order_by = "schedule_time".into();
    }
    let (chase_steps, next_page_token) = svc
        .store()
        .list(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    Ok(Response::new(ListChaseStepsResponse {
        chase_steps,
        next_page_token,
    }))
}

/// Stops an active run: its scheduled step is skipped and its timer
/// disarmed. The rule keeps holding on the case, so no new run starts until
/// its condition clears. The case is locked before the run, as the sweep
/// does, so the two never wait on each other.
pub(super) async fn cancel_chase_run(
    svc: &Cases,
    request: Request<CancelChaseRunRequest>,
) -> Reply<ChaseRun> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        authz::staff_only(&ctx.principal, "chase runs")?;
        names::parse("name", &req.name, ChaseRun::COLLECTIONS)?;
        required("reason", &req.reason)?;
        if req.reason.len() > 4_000 {
            return Err(Error::invalid("reason", "at most 4,000 bytes"));
        }
        let key = once(
            &ctx,
            &req.request_id,
            "CancelChaseRun",
            &without_request_id!(req),
        )?;
        let case_name = req
            .name
            .split_once("/chaseRuns/")
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        let not_found = || Error::NotFound {
            resource_type: "ChaseRun",
            name: req.name.clone(),
        };
        let now = svc.store().now();
        let mut tx = svc.store().db().begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &key
            && let Some(previous) = key.replay::<ChaseRun>(&mut conn).await?
        {
            return Ok(previous);
        }
        let case_row = resource::get_for_update(&mut conn, &CASES, &case_name)
            .await?
            .ok_or_else(not_found)?;
        let run_row = resource::get_for_update(&mut conn, &CHASE_RUNS, &req.name)
            .await?
            .ok_or_else(not_found)?;
        resource::check_etag(&req.name, &req.etag, &run_row)?;
        let mut run: ChaseRun = Store::decode::<ChaseRun, Rules>(&run_row)?;
        if run.state != chase_run::State::Active as i32 {
            let state = chase_run::State::try_from(run.state).unwrap_or_default();
            return Err(Error::FailedPrecondition {
                reason: Reason::IllegalTransition,
                subject: run.name.clone(),
                description: format!(
                    "{} is {}: only an active run can be cancelled",
                    run.name,
                    state.as_str_name()
                ),
            });
        }
        let mut c: Case = Store::decode::<Case, Rules>(&case_row)?;
        let why = format!(
            "{} (cancelled by {})",
            req.reason.trim(),
            ctx.principal.subject
        );
        chase::end(
            &mut conn,
            &c,
            &mut run,
            &run_row,
            chase_run::State::Cancelled,
            &why,
            now,
        )
        .await?;
        run.set_meta(0, 0, resource::etag(run_row.revision + 1));
        chase::resummarise(&mut conn, &mut c).await?;
        store::cases::write_locked(&mut conn, &case_row, &c).await?;
        if let Some(key) = &key {
            key.save(&mut conn, &run, now).await?;
        }
        tx.commit().await?;
        svc.store().nudge();
        Ok(run)
    };
    reply(result.await)
}
