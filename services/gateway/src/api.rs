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

use concierge_common::crud::{Ctx, reply};

use crate::events::Subscriptions;
use crate::review::Review;
use crate::webhook_api::WebhookApi;

/// The fully-qualified name of the gateway's own service.
pub const SERVICE_NAME: &str = "concierge.gateway.v1.GatewayService";

pub struct Api {
    principals: PrincipalCodec,
    review: Review,
    events: Option<Subscriptions>,
    webhooks: Option<WebhookApi>,
}

/// What a gateway without an event bus answers for events and webhooks.
fn no_bus() -> Status {
    concierge_common::Error::FailedPrecondition {
        reason: concierge_common::error::Reason::NotServed,
        subject: "events.nats_url".into(),
        description:
            "this gateway follows no event bus: set events.nats_url (CONCIERGE_EVENTS__NATS_URL)"
                .into(),
    }
    .into()
}

impl Api {
    pub fn new(
        principals: PrincipalCodec,
        review: Review,
        events: Option<Subscriptions>,
        webhooks: Option<WebhookApi>,
    ) -> Self {
        Self {
            principals,
            review,
            events,
            webhooks,
        }
    }

    /// The caller's context and the webhook methods, or why not.
    fn webhooks<T>(&self, request: &Request<T>) -> Result<(Ctx, &WebhookApi), Status> {
        let principal = self.principals.from_request(request, SERVICE_NAME)?;
        let ctx = Ctx {
            principal,
            request_id: concierge_common::principal::request_id(request),
        };
        let api = self.webhooks.as_ref().ok_or_else(no_bus)?;
        Ok((ctx, api))
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
            return Err(no_bus());
        };
        let rx = events.subscribe(&caller, request.get_ref()).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn create_webhook(
        &self,
        request: Request<CreateWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.create(&ctx, request.into_inner()).await)
    }

    async fn get_webhook(
        &self,
        request: Request<GetWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.get(&ctx, &request.get_ref().name).await)
    }

    async fn list_webhooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.list(&ctx, request.into_inner()).await)
    }

    async fn update_webhook(
        &self,
        request: Request<UpdateWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.update(&ctx, request.into_inner()).await)
    }

    async fn delete_webhook(
        &self,
        request: Request<DeleteWebhookRequest>,
    ) -> Result<Response<()>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.delete(&ctx, request.into_inner()).await)
    }

    async fn pause_webhook(
        &self,
        request: Request<PauseWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        let r = request.get_ref();
        reply(
            api.set_state(&ctx, &r.name, &r.etag, &r.request_id, true)
                .await,
        )
    }

    async fn resume_webhook(
        &self,
        request: Request<ResumeWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        let r = request.get_ref();
        reply(
            api.set_state(&ctx, &r.name, &r.etag, &r.request_id, false)
                .await,
        )
    }

    async fn test_webhook(
        &self,
        request: Request<TestWebhookRequest>,
    ) -> Result<Response<WebhookDelivery>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.test(&ctx, request.into_inner()).await)
    }

    async fn get_webhook_delivery(
        &self,
        request: Request<GetWebhookDeliveryRequest>,
    ) -> Result<Response<WebhookDelivery>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.get_delivery(&ctx, &request.get_ref().name).await)
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.list_deliveries(&ctx, request.into_inner()).await)
    }

    async fn retry_webhook_delivery(
        &self,
        request: Request<RetryWebhookDeliveryRequest>,
    ) -> Result<Response<WebhookDelivery>, Status> {
        let (ctx, api) = self.webhooks(&request)?;
        reply(api.retry(&ctx, request.into_inner()).await)
    }
}
