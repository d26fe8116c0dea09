//! Business calendars and the business-time arithmetic done in them.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::Error;
use concierge_common::{bounded, clock};
use concierge_common::{page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use crate::{Cases, RULES};

use super::{MAX_SPAN, duration, instant};

pub(super) async fn create_calendar(
    svc: &Cases,
    request: Request<CreateCalendarRequest>,
) -> Reply<Calendar> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    reply(
        svc.store()
            .create(
                &RULES,
                &ctx,
                "CreateCalendar",
                &hashed,
                New {
                    parent: "",
                    resource: req.calendar,
                    id: &req.calendar_id,
                    request_id: &req.request_id,
                },
            )
            .await,
    )
}

pub(super) async fn get_calendar(
    svc: &Cases,
    request: Request<GetCalendarRequest>,
) -> Reply<Calendar> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_calendars(
    svc: &Cases,
    request: Request<ListCalendarsRequest>,
) -> Reply<ListCalendarsResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let (calendars, next_page_token) = svc.store().list(&RULES, &ctx, page_query!(req)).await?;
    Ok(Response::new(ListCalendarsResponse {
        calendars,
        next_page_token,
    }))
}

pub(super) async fn update_calendar(
    svc: &Cases,
    request: Request<UpdateCalendarRequest>,
) -> Reply<Calendar> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let updated: Calendar = svc
        .store()
        .update(&RULES, &ctx, req.calendar, req.update_mask)
        .await?;
    // Clocks are read from the calendar as it is now; the timers of open
    // cases follow it in the background (the update recorded the job).
    Ok(Response::new(updated))
}

pub(super) async fn delete_calendar(
    svc: &Cases,
    request: Request<DeleteCalendarRequest>,
) -> Reply<()> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .delete::<Calendar, _>(&RULES, &ctx, &req.name, &req.etag)
            .await,
    )
}

pub(super) async fn add_business_time(
    svc: &Cases,
    request: Request<AddBusinessTimeRequest>,
) -> Reply<AddBusinessTimeResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        let start = instant("start_time", &req.start_time)?;
        let d = bounded::Duration::required("duration", &req.duration)?;
        if d.is_negative() {
            return Err(Error::invalid("duration", "must not be negative"));
        }
        if d > MAX_SPAN {
            return Err(Error::invalid(
                "duration",
                "must be at most 20 years (175320h) of business time",
            ));
        }
        let cal = svc
            .business_calendar(&ctx, &req.calendar, &req.time_zone)
            .await?;
        let end = cal.add(start, d)?;
        Ok(AddBusinessTimeResponse {
            end_time: Some(clock::to_proto(end)),
            wall_clock_duration: Some(duration(end.duration_since(start))),
        })
    };
    reply(result.await)
}

pub(super) async fn measure_business_time(
    svc: &Cases,
    request: Request<MeasureBusinessTimeRequest>,
) -> Reply<MeasureBusinessTimeResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        let start = instant("start_time", &req.start_time)?;
        let end = instant("end_time", &req.end_time)?;
        if end < start {
            return Err(Error::invalid("end_time", "must not be before start_time"));
        }
        if end.duration_since(start) > MAX_SPAN {
            return Err(Error::invalid(
                "end_time",
                "must be at most 20 years (175320h) after start_time",
            ));
        }
        let cal = svc
            .business_calendar(&ctx, &req.calendar, &req.time_zone)
            .await?;
        let m = cal.measure(start, end);
        Ok(MeasureBusinessTimeResponse {
            business_duration: Some(duration(m.business)),
            out_of_hours_duration: Some(duration(m.out_of_hours)),
        })
    };
    reply(result.await)
}
