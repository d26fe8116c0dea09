//! `concierge dev --test-clock`: the whole process reads time from one
//! controllable clock, which admins move forward through the gateway
//! (`concierge clock advance 48h`).

use concierge_common::bounded;
use concierge_common::clock::{self, Clock, TestClock};
use concierge_common::error::Error;
use concierge_common::principal::{PrincipalCodec, Role};
use concierge_proto::concierge::cases::v1::cases_service_client::CasesServiceClient;
use concierge_proto::concierge::testing::v1::test_clock_service_server::{
    TestClockService, TestClockServiceServer,
};
use concierge_proto::concierge::testing::v1::{
    AdvanceTestClockRequest, GetTestClockRequest, TestClock as TestClockMessage,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The gRPC service name, for routing.
pub const SERVICE_NAME: &str = "concierge.testing.v1.TestClockService";
const NAME: &str = "testClock";

pub struct Service {
    clock: TestClock,
    principals: PrincipalCodec,
    /// Where business time is counted, for jumps in business hours.
    cases: CasesServiceClient<Channel>,
}

pub fn server(
    clock: TestClock,
    principals: PrincipalCodec,
    cases: Channel,
) -> TestClockServiceServer<Service> {
    TestClockServiceServer::new(Service {
        clock,
        principals,
        cases: CasesServiceClient::new(cases),
    })
}

impl Service {
    fn admit<T>(&self, request: &Request<T>, name: &str) -> Result<(), Status> {
        let p = self.principals.from_request(request, SERVICE_NAME)?;
        if p.role != Role::Admin {
            return Err(Error::PermissionDenied(
                "only admins may read or move the test clock".into(),
            )
            .into());
        }
        if name != NAME {
            return Err(Error::NotFound {
                resource_type: "TestClock",
                name: name.to_string(),
            }
            .into());
        }
        Ok(())
    }

    fn message(&self) -> TestClockMessage {
        TestClockMessage {
            name: NAME.into(),
            now: Some(clock::to_proto(self.clock.now())),
        }
    }
}

#[tonic::async_trait]
impl TestClockService for Service {
    async fn get_test_clock(
        &self,
        request: Request<GetTestClockRequest>,
    ) -> Result<Response<TestClockMessage>, Status> {
        self.admit(&request, &request.get_ref().name)?;
        Ok(Response::new(self.message()))
    }

    async fn advance_test_clock(
        &self,
        request: Request<AdvanceTestClockRequest>,
    ) -> Result<Response<TestClockMessage>, Status> {
        self.admit(&request, &request.get_ref().name)?;
        let mut by = bounded::Duration::required("by", &request.get_ref().by)?;
        if !by.is_positive() {
            return Err(Error::invalid(
                "by",
                "must be a positive duration: time never runs backwards",
            )
            .into());
        }
        let calendar = request.get_ref().calendar.clone();
        if !calendar.is_empty() {
            // Counted by the cases service, as the caller: the same
            // arithmetic that sets every SLA deadline.
            // The caller's principal, signed again for the cases service:
            // a signed principal is good for the one service it was sent to.
            let caller = self.principals.from_request(&request, SERVICE_NAME)?;
            let (mut metadata, _, _) = request.into_parts();
            let signed = self
                .principals
                .encode(&caller, concierge_cases::SERVICE_NAME)
                .parse()
                .map_err(|e| Status::from(Error::internal(e)))?;
            metadata.insert(concierge_common::principal::PRINCIPAL_HEADER, signed);
            let ask = Request::from_parts(
                metadata,
                Default::default(),
                concierge_proto::concierge::cases::v1::AddBusinessTimeRequest {
                    calendar,
                    start_time: Some(clock::to_proto(self.clock.now())),
                    duration: Some(bounded::Duration::to_proto(by)),
                    time_zone: None,
                },
            );
            let wall = self
                .cases
                .clone()
                .add_business_time(ask)
                .await?
                .into_inner()
                .wall_clock_duration;
            by = bounded::Duration::required("by", &wall)?;
        }
        // Refused before anything moves: the clock never leaves the range of
        // instants the services compute with.
        self.clock.try_advance(by).map_err(|e| {
            Error::invalid(
                "by",
                format!("moves the test clock out of range: the clock {e}"),
            )
        })?;
        Ok(Response::new(self.message()))
    }
}
