//! The gRPC face of the cases service. Methods not written yet answer
//! UNIMPLEMENTED (the contract is complete; the service grows into it).

use concierge_common::clock;
use concierge_common::crud::New;
use concierge_common::error::{Error, Result};
use concierge_common::paging::PageQuery;
use concierge_proto::concierge::cases::v1::cases_service_server::CasesService;
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response, Status};

use crate::{Cases, Rules, calendar};

type Reply<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(result: Result<T>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

macro_rules! without_request_id {
    ($req:expr) => {{
        let mut copy = $req.clone();
        copy.request_id.clear();
        copy
    }};
}

macro_rules! page {
    ($req:expr) => {
        PageQuery {
            parent: "",
            page_size: $req.page_size,
            page_token: &$req.page_token,
            filter: &$req.filter,
            order_by: &$req.order_by,
            show_deleted: false,
        }
    };
}

fn instant(field: &str, t: &Option<prost_types::Timestamp>) -> Result<jiff::Timestamp> {
    t.as_ref()
        .and_then(clock::from_proto)
        .ok_or_else(|| Error::invalid(field, "required: an instant (UTC)"))
}

fn duration(d: jiff::SignedDuration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

impl Cases {
    /// The calendar named by a business-time request, read in `time_zone`
    /// when one is given (a site's).
    async fn business_calendar(
        &self,
        ctx: &concierge_common::crud::Ctx,
        name: &str,
        time_zone: &Option<concierge_proto::types::TimeZone>,
    ) -> Result<calendar::BusinessCalendar> {
        if name.is_empty() {
            return Err(Error::invalid(
                "calendar",
                "required: \"calendars/{calendar}\"",
            ));
        }
        let stored: Calendar = self.store().get(&Rules, ctx, name).await?;
        let cal = calendar::from_proto(&stored).map_err(Error::internal)?;
        match time_zone
            .as_ref()
            .map(|t| t.id.as_str())
            .filter(|t| !t.is_empty())
        {
            Some(tz) => cal.in_time_zone(tz).map_err(|_| {
                Error::invalid("time_zone.id", format!("{tz:?} is not an IANA time zone"))
            }),
            None => Ok(cal),
        }
    }
}

#[tonic::async_trait]
impl CasesService for Cases {
    async fn create_calendar(&self, request: Request<CreateCalendarRequest>) -> Reply<Calendar> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
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

    async fn get_calendar(&self, request: Request<GetCalendarRequest>) -> Reply<Calendar> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_calendars(
        &self,
        request: Request<ListCalendarsRequest>,
    ) -> Reply<ListCalendarsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (calendars, next_page_token) = self.store().list(&Rules, &ctx, page!(req)).await?;
        Ok(Response::new(ListCalendarsResponse {
            calendars,
            next_page_token,
        }))
    }

    async fn update_calendar(&self, request: Request<UpdateCalendarRequest>) -> Reply<Calendar> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.calendar, req.update_mask)
                .await,
        )
    }

    async fn delete_calendar(&self, request: Request<DeleteCalendarRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<Calendar, _>(&Rules, &ctx, &req.name, &req.etag)
                .await,
        )
    }

    async fn add_business_time(
        &self,
        request: Request<AddBusinessTimeRequest>,
    ) -> Reply<AddBusinessTimeResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let start = instant("start_time", &req.start_time)?;
            let d = req
                .duration
                .ok_or_else(|| Error::invalid("duration", "required"))?;
            let d = jiff::SignedDuration::new(d.seconds, d.nanos);
            if d.is_negative() {
                return Err(Error::invalid("duration", "must not be negative"));
            }
            let cal = self
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

    async fn measure_business_time(
        &self,
        request: Request<MeasureBusinessTimeRequest>,
    ) -> Reply<MeasureBusinessTimeResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let start = instant("start_time", &req.start_time)?;
            let end = instant("end_time", &req.end_time)?;
            if end < start {
                return Err(Error::invalid("end_time", "must not be before start_time"));
            }
            let cal = self
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

    async fn create_hand_off_code(
        &self,
        request: Request<CreateHandOffCodeRequest>,
    ) -> Reply<HandOffCode> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &Rules,
                    &ctx,
                    "CreateHandOffCode",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.hand_off_code,
                        id: &req.hand_off_code_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_hand_off_code(
        &self,
        request: Request<GetHandOffCodeRequest>,
    ) -> Reply<HandOffCode> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&Rules, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_hand_off_codes(
        &self,
        request: Request<ListHandOffCodesRequest>,
    ) -> Reply<ListHandOffCodesResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (hand_off_codes, next_page_token) = self.store().list(&Rules, &ctx, page!(req)).await?;
        Ok(Response::new(ListHandOffCodesResponse {
            hand_off_codes,
            next_page_token,
        }))
    }

    async fn update_hand_off_code(
        &self,
        request: Request<UpdateHandOffCodeRequest>,
    ) -> Reply<HandOffCode> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&Rules, &ctx, req.hand_off_code, req.update_mask)
                .await,
        )
    }

    async fn delete_hand_off_code(&self, request: Request<DeleteHandOffCodeRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<HandOffCode, _>(&Rules, &ctx, &req.name, &req.etag)
                .await,
        )
    }
}
