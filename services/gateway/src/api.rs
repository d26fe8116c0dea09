//! The gateway's own service (GatewayService): who the caller is, and the
//! portfolio review. It is served behind the gateway's own front door, like
//! every backend: the call arrives authenticated, rate-limited and with the
//! verified principal signed for it.

use concierge_common::principal::PrincipalCodec;
use concierge_proto::concierge::gateway::v1::gateway_service_server::{
    GatewayService, GatewayServiceServer,
};
use concierge_proto::concierge::gateway::v1::*;
use tonic::{Request, Response, Status};

use crate::events::Subscriptions;
use crate::review::Review;

/// The fully-qualified name of the gateway's own service.
pub const SERVICE_NAME: &str = "concierge.gateway.v1.GatewayService";

pub struct Api {
    principals: PrincipalCodec,
    review: Review,
    events: Option<Subscriptions>,
}

impl Api {
    pub fn new(principals: PrincipalCodec, review: Review, events: Option<Subscriptions>) -> Self {
        Self {
            principals,
            review,
            events,
        }
    }

    pub fn server(self) -> GatewayServiceServer<Self> {
        GatewayServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl GatewayService for Api {
    async fn get_caller(
        &self,
        request: Request<GetCallerRequest>,
    ) -> Result<Response<concierge_proto::types::Principal>, Status> {
        let caller = self.principals.from_request(&request, SERVICE_NAME)?;
        Ok(Response::new(caller.to_proto()))
    }

    async fn get_portfolio_review(
        &self,
        request: Request<GetPortfolioReviewRequest>,
    ) -> Result<Response<GetPortfolioReviewResponse>, Status> {
        let caller = self.principals.from_request(&request, SERVICE_NAME)?;
        let request_id = concierge_common::principal::request_id(&request);
        let page = self
            .review
            .page(&caller, &request_id, request.get_ref())
            .await?;
        Ok(Response::new(page))
    }

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Result<
        Response<futures::stream::BoxStream<'static, Result<SubscribeEventsResponse, Status>>>,
        Status,
    > {
        let caller = self.principals.from_request(&request, SERVICE_NAME)?;
        let Some(events) = &self.events else {
            return Err(concierge_common::Error::FailedPrecondition {
                reason: concierge_common::error::Reason::NotServed,
                subject: "events.nats_url".into(),
                description: "this gateway follows no event bus: set events.nats_url (CONCIERGE_EVENTS__NATS_URL)".into(),
            }
            .into());
        };
        let rx = events.subscribe(&caller, request.get_ref()).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
