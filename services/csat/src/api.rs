//! The gRPC face of the CSAT service. Templates and triggers are the kit's
//! standard methods; surveys are scheduled, sent, answered and withdrawn in
//! `surveys`; monthly reports are made, archived and e-mailed in `report`.

use concierge_common::crud::{Ctx, New, Reply, reply};
use concierge_common::error::Result;
use concierge_common::idempotency::Key;
use concierge_common::{page_query, without_request_id};
use concierge_proto::csat::csat_service_server::CsatService;
use concierge_proto::csat::*;
use tonic::Request;

use crate::plans::Transition;
use crate::{Csat, RULES};

fn once<M: prost::Message>(
    ctx: &Ctx,
    request_id: &str,
    method: &'static str,
    request: &M,
) -> Result<Option<Key>> {
    Key::new(&ctx.principal.subject, request_id, method, request)
}

#[tonic::async_trait]
impl CsatService for Csat {
    async fn create_survey_template(
        &self,
        request: Request<CreateSurveyTemplateRequest>,
    ) -> Reply<SurveyTemplate> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &RULES,
                    &ctx,
                    "CreateSurveyTemplate",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.survey_template,
                        id: &req.survey_template_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_survey_template(
        &self,
        request: Request<GetSurveyTemplateRequest>,
    ) -> Reply<SurveyTemplate> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_survey_templates(
        &self,
        request: Request<ListSurveyTemplatesRequest>,
    ) -> Reply<ListSurveyTemplatesResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .list::<SurveyTemplate, _>(&RULES, &ctx, page_query!(req))
                .await
                .map(
                    |(survey_templates, next_page_token)| ListSurveyTemplatesResponse {
                        survey_templates,
                        next_page_token,
                    },
                ),
        )
    }

    async fn update_survey_template(
        &self,
        request: Request<UpdateSurveyTemplateRequest>,
    ) -> Reply<SurveyTemplate> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&RULES, &ctx, req.survey_template, req.update_mask)
                .await,
        )
    }

    async fn delete_survey_template(
        &self,
        request: Request<DeleteSurveyTemplateRequest>,
    ) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "DeleteSurveyTemplate",
                &without_request_id!(req),
            )?;
            self.store()
                .delete_once::<SurveyTemplate, _>(&RULES, &ctx, key, &req.name, &req.etag)
                .await
        };
        reply(result.await)
    }

    async fn create_survey_trigger(
        &self,
        request: Request<CreateSurveyTriggerRequest>,
    ) -> Reply<SurveyTrigger> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &RULES,
                    &ctx,
                    "CreateSurveyTrigger",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.survey_trigger,
                        id: &req.survey_trigger_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_survey_trigger(
        &self,
        request: Request<GetSurveyTriggerRequest>,
    ) -> Reply<SurveyTrigger> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_survey_triggers(
        &self,
        request: Request<ListSurveyTriggersRequest>,
    ) -> Reply<ListSurveyTriggersResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .list::<SurveyTrigger, _>(&RULES, &ctx, page_query!(req))
                .await
                .map(
                    |(survey_triggers, next_page_token)| ListSurveyTriggersResponse {
                        survey_triggers,
                        next_page_token,
                    },
                ),
        )
    }

    async fn update_survey_trigger(
        &self,
        request: Request<UpdateSurveyTriggerRequest>,
    ) -> Reply<SurveyTrigger> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&RULES, &ctx, req.survey_trigger, req.update_mask)
                .await,
        )
    }

    async fn delete_survey_trigger(
        &self,
        request: Request<DeleteSurveyTriggerRequest>,
    ) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "DeleteSurveyTrigger",
                &without_request_id!(req),
            )?;
            self.store()
                .delete_once::<SurveyTrigger, _>(&RULES, &ctx, key, &req.name, &req.etag)
                .await
        };
        reply(result.await)
    }

    async fn create_survey(&self, request: Request<CreateSurveyRequest>) -> Reply<Survey> {
        let ctx = self.ctx(&request)?;
        reply(self.create_by_hand(&ctx, request.into_inner()).await)
    }

    async fn get_survey(&self, request: Request<GetSurveyRequest>) -> Reply<Survey> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_surveys(
        &self,
        request: Request<ListSurveysRequest>,
    ) -> Reply<ListSurveysResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.trim().is_empty() {
            req.order_by = "create_time desc".into();
        }
        reply(
            self.store()
                .list_counted::<Survey, _>(&RULES, &ctx, page_query!(req))
                .await
                .map(
                    |(surveys, next_page_token, total_size)| ListSurveysResponse {
                        surveys,
                        next_page_token,
                        total_size,
                    },
                ),
        )
    }

    async fn cancel_survey(&self, request: Request<CancelSurveyRequest>) -> Reply<Survey> {
        let ctx = self.ctx(&request)?;
        reply(self.cancel(&ctx, request.into_inner()).await)
    }

    async fn query_scores(
        &self,
        request: Request<QueryScoresRequest>,
    ) -> Reply<QueryScoresResponse> {
        let ctx = self.ctx(&request)?;
        reply(self.query_scores(&ctx, request.into_inner()).await)
    }

    async fn get_client_satisfaction(
        &self,
        request: Request<GetClientSatisfactionRequest>,
    ) -> Reply<ClientSatisfaction> {
        let ctx = self.ctx(&request)?;
        let names = [request.into_inner().name];
        reply(
            self.satisfactions(&ctx, &names)
                .await
                .map(|mut all| all.remove(0)),
        )
    }

    async fn batch_get_client_satisfactions(
        &self,
        request: Request<BatchGetClientSatisfactionsRequest>,
    ) -> Reply<BatchGetClientSatisfactionsResponse> {
        let ctx = self.ctx(&request)?;
        reply(
            self.satisfactions(&ctx, &request.into_inner().names)
                .await
                .map(|client_satisfactions| BatchGetClientSatisfactionsResponse {
                    client_satisfactions,
                }),
        )
    }

    async fn create_corrective_action_plan(
        &self,
        request: Request<CreateCorrectiveActionPlanRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        reply(self.create_plan(&ctx, request.into_inner()).await)
    }

    async fn get_corrective_action_plan(
        &self,
        request: Request<GetCorrectiveActionPlanRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_corrective_action_plans(
        &self,
        request: Request<ListCorrectiveActionPlansRequest>,
    ) -> Reply<ListCorrectiveActionPlansResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.trim().is_empty() {
            req.order_by = "next_due_time".into();
        }
        reply(
            self.store()
                .list_counted::<CorrectiveActionPlan, _>(&RULES, &ctx, page_query!(req))
                .await
                .map(|(corrective_action_plans, next_page_token, total_size)| {
                    ListCorrectiveActionPlansResponse {
                        corrective_action_plans,
                        next_page_token,
                        total_size,
                    }
                }),
        )
    }

    async fn update_corrective_action_plan(
        &self,
        request: Request<UpdateCorrectiveActionPlanRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update(&RULES, &ctx, req.corrective_action_plan, req.update_mask)
                .await,
        )
    }

    async fn set_corrective_action_state(
        &self,
        request: Request<SetCorrectiveActionStateRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        reply(self.set_action_state(&ctx, request.into_inner()).await)
    }

    async fn complete_corrective_action_plan(
        &self,
        request: Request<CompleteCorrectiveActionPlanRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "CompleteCorrectiveActionPlan",
                &without_request_id!(req),
            )?;
            self.transition_plan(
                &ctx,
                Transition::Complete,
                &req.name,
                &req.outcome,
                &req.etag,
                key,
            )
            .await
        };
        reply(result.await)
    }

    async fn cancel_corrective_action_plan(
        &self,
        request: Request<CancelCorrectiveActionPlanRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "CancelCorrectiveActionPlan",
                &without_request_id!(req),
            )?;
            self.transition_plan(
                &ctx,
                Transition::Cancel,
                &req.name,
                &req.reason,
                &req.etag,
                key,
            )
            .await
        };
        reply(result.await)
    }

    async fn reopen_corrective_action_plan(
        &self,
        request: Request<ReopenCorrectiveActionPlanRequest>,
    ) -> Reply<CorrectiveActionPlan> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "ReopenCorrectiveActionPlan",
                &without_request_id!(req),
            )?;
            self.transition_plan(
                &ctx,
                Transition::Reopen,
                &req.name,
                &req.reason,
                &req.etag,
                key,
            )
            .await
        };
        reply(result.await)
    }

    /// No login: the token is the only credential, so no principal is read.
    async fn get_survey_invitation(
        &self,
        request: Request<GetSurveyInvitationRequest>,
    ) -> Reply<SurveyInvitation> {
        reply(self.invitation(&request.get_ref().response_token).await)
    }

    /// No login: the token is the only credential, so no principal is read.
    async fn submit_survey_response(
        &self,
        request: Request<SubmitSurveyResponseRequest>,
    ) -> Reply<SubmitSurveyResponseResponse> {
        reply(self.answer(request.into_inner()).await)
    }

    async fn query_kpis(&self, request: Request<QueryKpisRequest>) -> Reply<QueryKpisResponse> {
        let ctx = self.ctx(&request)?;
        reply(self.query_kpis(&ctx, request.into_inner()).await)
    }

    async fn get_kpi_settings(
        &self,
        request: Request<GetKpiSettingsRequest>,
    ) -> Reply<KpiSettings> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get_singleton(
                    &RULES,
                    &ctx,
                    &request.get_ref().name,
                    crate::kpis::default_settings,
                )
                .await,
        )
    }

    async fn update_kpi_settings(
        &self,
        request: Request<UpdateKpiSettingsRequest>,
    ) -> Reply<KpiSettings> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update_singleton(
                    &RULES,
                    &ctx,
                    req.kpi_settings,
                    req.update_mask,
                    crate::kpis::default_settings,
                )
                .await,
        )
    }

    async fn create_availability_interval(
        &self,
        request: Request<CreateAvailabilityIntervalRequest>,
    ) -> Reply<AvailabilityInterval> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "CreateAvailabilityInterval",
                &without_request_id!(req),
            )?;
            let mut made = self.ingest_intervals(&ctx, key, vec![req], false).await?;
            Ok(made.remove(0))
        };
        reply(result.await)
    }

    async fn batch_create_availability_intervals(
        &self,
        request: Request<BatchCreateAvailabilityIntervalsRequest>,
    ) -> Reply<BatchCreateAvailabilityIntervalsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "BatchCreateAvailabilityIntervals",
                &without_request_id!(req),
            )?;
            let availability_intervals =
                self.ingest_intervals(&ctx, key, req.requests, true).await?;
            Ok(BatchCreateAvailabilityIntervalsResponse {
                availability_intervals,
            })
        };
        reply(result.await)
    }

    async fn list_availability_intervals(
        &self,
        request: Request<ListAvailabilityIntervalsRequest>,
    ) -> Reply<ListAvailabilityIntervalsResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.trim().is_empty() {
            req.order_by = "start_time".into();
        }
        reply(
            self.store()
                .list::<AvailabilityInterval, _>(&RULES, &ctx, page_query!(req))
                .await
                .map(|(availability_intervals, next_page_token)| {
                    ListAvailabilityIntervalsResponse {
                        availability_intervals,
                        next_page_token,
                    }
                }),
        )
    }

    async fn delete_availability_interval(
        &self,
        request: Request<DeleteAvailabilityIntervalRequest>,
    ) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "DeleteAvailabilityInterval",
                &without_request_id!(req),
            )?;
            self.delete_interval(&ctx, key, &req.name, &req.etag).await
        };
        reply(result.await)
    }

    async fn generate_monthly_report(
        &self,
        request: Request<GenerateMonthlyReportRequest>,
    ) -> Reply<MonthlyReport> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "GenerateMonthlyReport",
                &without_request_id!(req),
            )?;
            self.generate_report(&ctx, key, req, monthly_report::Trigger::OnDemand, None)
                .await
        };
        reply(result.await)
    }

    async fn get_monthly_report(
        &self,
        request: Request<GetMonthlyReportRequest>,
    ) -> Reply<MonthlyReport> {
        let ctx = self.ctx(&request)?;
        let req = request.get_ref();
        let report: Result<MonthlyReport> = self.store().get(&RULES, &ctx, &req.name).await;
        reply(report.map(|r| report_view(r, req.view, MonthlyReportView::Full)))
    }

    async fn list_monthly_reports(
        &self,
        request: Request<ListMonthlyReportsRequest>,
    ) -> Reply<ListMonthlyReportsResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.trim().is_empty() {
            req.order_by = "create_time desc".into();
        }
        let view = req.view;
        reply(
            self.store()
                .list::<MonthlyReport, _>(&RULES, &ctx, page_query!(req))
                .await
                .map(|(reports, next_page_token)| ListMonthlyReportsResponse {
                    monthly_reports: reports
                        .into_iter()
                        .map(|r| report_view(r, view, MonthlyReportView::Basic))
                        .collect(),
                    next_page_token,
                }),
        )
    }

    async fn send_monthly_report(
        &self,
        request: Request<SendMonthlyReportRequest>,
    ) -> Reply<MonthlyReport> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = once(
                &ctx,
                &req.request_id,
                "SendMonthlyReport",
                &without_request_id!(req),
            )?;
            self.send_report(&ctx, key, &req.name, &req.recipients)
                .await
        };
        reply(result.await)
    }
}

/// The report as much as `view` asks, `default` when it does not say.
fn report_view(r: MonthlyReport, view: i32, default: MonthlyReportView) -> MonthlyReport {
    let wanted = match MonthlyReportView::try_from(view) {
        Ok(MonthlyReportView::Unspecified) | Err(_) => default,
        Ok(v) => v,
    };
    if wanted == MonthlyReportView::Full {
        r
    } else {
        crate::report::basic(r)
    }
}
