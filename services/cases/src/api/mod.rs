//! The cases service's gRPC methods, one file per resource: cases (and their
//! transitions, hand-off codes, milestones and watchers), notes, links,
//! calendars (and business-time arithmetic), hand-off codes, SLA policies
//! and SLA clocks. The one `CasesService` impl below only says which file
//! answers each method. Methods not written yet answer UNIMPLEMENTED (the
//! contract is complete; the service grows into it).

mod calendars;
mod cases;
mod chase_rules;
mod chase_runs;
mod clocks;
mod control_documents;
mod escalations;
mod findings;
mod hand_off_codes;
mod links;
mod notes;
mod sla_policies;
mod triage;

use concierge_common::crud::Reply;
use concierge_common::error::{Error, Result};
use concierge_common::{bounded, clock};
use concierge_proto::concierge::cases::v1::cases_service_server::CasesService;
use concierge_proto::concierge::cases::v1::*;
use tonic::Request;

use concierge_common::crud::Ctx;
use concierge_common::names;

use crate::lifecycle::{self, Transition};

use crate::{Cases, RULES, calendar};

pub(super) fn instant(field: &str, t: &Option<prost_types::Timestamp>) -> Result<jiff::Timestamp> {
    bounded::Instant::required(field, t)
}

pub(super) fn duration(d: jiff::SignedDuration) -> prost_types::Duration {
    bounded::Duration::to_proto(d)
}

/// The longest span business time is added or measured over, as a
/// duration (business time never exceeds the wall-clock time it spans).
pub(super) const MAX_SPAN: jiff::SignedDuration =
    jiff::SignedDuration::from_hours(calendar::MAX_SPAN_DAYS * 24);

/// The idempotency key of a custom method's request, from its `request_id`.
pub(super) fn once<M: prost::Message>(
    ctx: &Ctx,
    request_id: &str,
    method: &'static str,
    request: &M,
) -> Result<Option<concierge_common::idempotency::Key>> {
    concierge_common::idempotency::Key::new(&ctx.principal.subject, request_id, method, request)
}

pub(super) fn required(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Ok(())
}

impl Cases {
    /// Moves a case through `transition`, with `edit` filling in what that
    /// transition records; the state history and the transition's event
    /// follow.
    ///
    /// A retry with the same `request_id` (and the same request) gets the
    /// first reply, not a refusal to move into the state it already is in.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn transition(
        &self,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        (request_id, request): (&str, &impl prost::Message),
        transition: Transition,
        edit: impl FnOnce(&mut Case, i64) -> Result<()> + Send,
    ) -> Result<Case> {
        let key = once(ctx, request_id, transition.method(), request)?;
        let changed = self
            .store()
            .change_once::<Case, _>(
                &RULES,
                ctx,
                key,
                name,
                etag,
                transition.event(),
                false,
                |c, row| {
                    let current =
                        case::State::try_from(c.state).unwrap_or(case::State::Unspecified);
                    let next = lifecycle::next(name, current, transition)?;
                    if next != current {
                        c.state = next as i32;
                        c.state_time = clock::micros_to_proto(row.update_time);
                        c.state_reason.clear();
                    }
                    edit(c, row.update_time)
                },
            )
            .await?;
        self.refresh_timers_after_change(&changed.name).await;
        Ok(changed)
    }

    /// The case a note or list of notes belongs to, as the caller may see it.
    pub(super) async fn visible_case(&self, ctx: &Ctx, name: &str) -> Result<Case> {
        names::parse("parent", name, &["cases"])?;
        self.store().get(&RULES, ctx, name).await
    }

    /// The calendar named by a business-time request, read in `time_zone`
    /// when one is given (a site's).
    pub(super) async fn business_calendar(
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
        let stored: Calendar = self.store().get(&RULES, ctx, name).await?;
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
    async fn create_case(&self, request: Request<CreateCaseRequest>) -> Reply<Case> {
        cases::create_case(self, request).await
    }

    async fn get_case(&self, request: Request<GetCaseRequest>) -> Reply<Case> {
        cases::get_case(self, request).await
    }

    async fn list_cases(&self, request: Request<ListCasesRequest>) -> Reply<ListCasesResponse> {
        cases::list_cases(self, request).await
    }

    async fn update_case(&self, request: Request<UpdateCaseRequest>) -> Reply<Case> {
        cases::update_case(self, request).await
    }

    async fn open_case(&self, request: Request<OpenCaseRequest>) -> Reply<Case> {
        cases::open_case(self, request).await
    }

    async fn start_case_work(&self, request: Request<StartCaseWorkRequest>) -> Reply<Case> {
        cases::start_case_work(self, request).await
    }

    async fn pend_case_on_client(&self, request: Request<PendCaseOnClientRequest>) -> Reply<Case> {
        cases::pend_case_on_client(self, request).await
    }

    async fn pend_case_on_carrier(
        &self,
        request: Request<PendCaseOnCarrierRequest>,
    ) -> Reply<Case> {
        cases::pend_case_on_carrier(self, request).await
    }

    async fn resume_case(&self, request: Request<ResumeCaseRequest>) -> Reply<Case> {
        cases::resume_case(self, request).await
    }

    async fn mark_case_jeopardy(&self, request: Request<MarkCaseJeopardyRequest>) -> Reply<Case> {
        cases::mark_case_jeopardy(self, request).await
    }

    async fn resolve_case(&self, request: Request<ResolveCaseRequest>) -> Reply<Case> {
        cases::resolve_case(self, request).await
    }

    async fn close_case(&self, request: Request<CloseCaseRequest>) -> Reply<Case> {
        cases::close_case(self, request).await
    }

    async fn reopen_case(&self, request: Request<ReopenCaseRequest>) -> Reply<Case> {
        cases::reopen_case(self, request).await
    }

    async fn cancel_case(&self, request: Request<CancelCaseRequest>) -> Reply<Case> {
        cases::cancel_case(self, request).await
    }

    async fn merge_case(&self, request: Request<MergeCaseRequest>) -> Reply<MergeCaseResponse> {
        cases::merge_case(self, request).await
    }

    async fn create_sla_policy(
        &self,
        request: Request<CreateSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        sla_policies::create_sla_policy(self, request).await
    }

    async fn get_sla_policy(&self, request: Request<GetSlaPolicyRequest>) -> Reply<SlaPolicy> {
        sla_policies::get_sla_policy(self, request).await
    }

    async fn list_sla_policies(
        &self,
        request: Request<ListSlaPoliciesRequest>,
    ) -> Reply<ListSlaPoliciesResponse> {
        sla_policies::list_sla_policies(self, request).await
    }

    async fn update_sla_policy(
        &self,
        request: Request<UpdateSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        sla_policies::update_sla_policy(self, request).await
    }

    /// A rollback is an update whose values are an earlier revision's: it
    /// makes a new current revision (cases on the later one keep it), and is
    /// refused on a stale etag like any update.
    async fn rollback_sla_policy(
        &self,
        request: Request<RollbackSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        sla_policies::rollback_sla_policy(self, request).await
    }

    async fn delete_sla_policy(
        &self,
        request: Request<DeleteSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        sla_policies::delete_sla_policy(self, request).await
    }

    async fn undelete_sla_policy(
        &self,
        request: Request<UndeleteSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        sla_policies::undelete_sla_policy(self, request).await
    }

    async fn list_sla_policy_revisions(
        &self,
        request: Request<ListSlaPolicyRevisionsRequest>,
    ) -> Reply<ListSlaPolicyRevisionsResponse> {
        sla_policies::list_sla_policy_revisions(self, request).await
    }

    /// One case's clocks, unfiltered, are read straight from its ledger.
    /// A filter, a page token or "cases/-" goes through the clock index
    /// (state and target as of each clock's last change or timer), and the
    /// clocks of the page are then read live.
    async fn list_sla_clocks(
        &self,
        request: Request<ListSlaClocksRequest>,
    ) -> Reply<ListSlaClocksResponse> {
        clocks::list_sla_clocks(self, request).await
    }

    async fn get_sla_clock(&self, request: Request<GetSlaClockRequest>) -> Reply<SlaClock> {
        clocks::get_sla_clock(self, request).await
    }

    async fn explain_sla_clock(
        &self,
        request: Request<ExplainSlaClockRequest>,
    ) -> Reply<ExplainSlaClockResponse> {
        clocks::explain_sla_clock(self, request).await
    }

    async fn set_case_hand_off_code(
        &self,
        request: Request<SetCaseHandOffCodeRequest>,
    ) -> Reply<Case> {
        cases::set_case_hand_off_code(self, request).await
    }

    async fn record_case_milestone(
        &self,
        request: Request<RecordCaseMilestoneRequest>,
    ) -> Reply<Case> {
        cases::record_case_milestone(self, request).await
    }

    async fn add_case_watcher(&self, request: Request<AddCaseWatcherRequest>) -> Reply<Case> {
        cases::add_case_watcher(self, request).await
    }

    async fn remove_case_watcher(&self, request: Request<RemoveCaseWatcherRequest>) -> Reply<Case> {
        cases::remove_case_watcher(self, request).await
    }

    async fn create_case_link(&self, request: Request<CreateCaseLinkRequest>) -> Reply<CaseLink> {
        links::create_case_link(self, request).await
    }

    async fn get_case_link(&self, request: Request<GetCaseLinkRequest>) -> Reply<CaseLink> {
        links::get_case_link(self, request).await
    }

    async fn list_case_links(
        &self,
        request: Request<ListCaseLinksRequest>,
    ) -> Reply<ListCaseLinksResponse> {
        links::list_case_links(self, request).await
    }

    async fn delete_case_link(&self, request: Request<DeleteCaseLinkRequest>) -> Reply<()> {
        links::delete_case_link(self, request).await
    }

    async fn create_note(&self, request: Request<CreateNoteRequest>) -> Reply<Note> {
        notes::create_note(self, request).await
    }

    async fn get_note(&self, request: Request<GetNoteRequest>) -> Reply<Note> {
        notes::get_note(self, request).await
    }

    async fn list_notes(&self, request: Request<ListNotesRequest>) -> Reply<ListNotesResponse> {
        notes::list_notes(self, request).await
    }

    async fn create_calendar(&self, request: Request<CreateCalendarRequest>) -> Reply<Calendar> {
        calendars::create_calendar(self, request).await
    }

    async fn get_calendar(&self, request: Request<GetCalendarRequest>) -> Reply<Calendar> {
        calendars::get_calendar(self, request).await
    }

    async fn list_calendars(
        &self,
        request: Request<ListCalendarsRequest>,
    ) -> Reply<ListCalendarsResponse> {
        calendars::list_calendars(self, request).await
    }

    async fn update_calendar(&self, request: Request<UpdateCalendarRequest>) -> Reply<Calendar> {
        calendars::update_calendar(self, request).await
    }

    async fn delete_calendar(&self, request: Request<DeleteCalendarRequest>) -> Reply<()> {
        calendars::delete_calendar(self, request).await
    }

    async fn create_chase_rule(
        &self,
        request: Request<CreateChaseRuleRequest>,
    ) -> Reply<ChaseRule> {
        chase_rules::create_chase_rule(self, request).await
    }

    async fn get_chase_rule(&self, request: Request<GetChaseRuleRequest>) -> Reply<ChaseRule> {
        chase_rules::get_chase_rule(self, request).await
    }

    async fn list_chase_rules(
        &self,
        request: Request<ListChaseRulesRequest>,
    ) -> Reply<ListChaseRulesResponse> {
        chase_rules::list_chase_rules(self, request).await
    }

    async fn update_chase_rule(
        &self,
        request: Request<UpdateChaseRuleRequest>,
    ) -> Reply<ChaseRule> {
        chase_rules::update_chase_rule(self, request).await
    }

    async fn delete_chase_rule(&self, request: Request<DeleteChaseRuleRequest>) -> Reply<()> {
        chase_rules::delete_chase_rule(self, request).await
    }

    async fn get_chase_run(&self, request: Request<GetChaseRunRequest>) -> Reply<ChaseRun> {
        chase_runs::get_chase_run(self, request).await
    }

    async fn list_chase_runs(
        &self,
        request: Request<ListChaseRunsRequest>,
    ) -> Reply<ListChaseRunsResponse> {
        chase_runs::list_chase_runs(self, request).await
    }

    async fn cancel_chase_run(&self, request: Request<CancelChaseRunRequest>) -> Reply<ChaseRun> {
        chase_runs::cancel_chase_run(self, request).await
    }

    async fn get_chase_step(&self, request: Request<GetChaseStepRequest>) -> Reply<ChaseStep> {
        chase_runs::get_chase_step(self, request).await
    }

    async fn list_chase_steps(
        &self,
        request: Request<ListChaseStepsRequest>,
    ) -> Reply<ListChaseStepsResponse> {
        chase_runs::list_chase_steps(self, request).await
    }

    async fn list_case_findings(
        &self,
        request: Request<ListCaseFindingsRequest>,
    ) -> Reply<ListCaseFindingsResponse> {
        findings::list_case_findings(self, request).await
    }

    async fn generate_control_document(
        &self,
        request: Request<GenerateControlDocumentRequest>,
    ) -> Reply<ControlDocument> {
        control_documents::generate_control_document(self, request).await
    }

    async fn get_control_document(
        &self,
        request: Request<GetControlDocumentRequest>,
    ) -> Reply<ControlDocument> {
        control_documents::get_control_document(self, request).await
    }

    async fn list_control_documents(
        &self,
        request: Request<ListControlDocumentsRequest>,
    ) -> Reply<ListControlDocumentsResponse> {
        control_documents::list_control_documents(self, request).await
    }

    async fn send_control_document(
        &self,
        request: Request<SendControlDocumentRequest>,
    ) -> Reply<ControlDocument> {
        control_documents::send_control_document(self, request).await
    }

    async fn get_control_document_settings(
        &self,
        request: Request<GetControlDocumentSettingsRequest>,
    ) -> Reply<ControlDocumentSettings> {
        control_documents::get_control_document_settings(self, request).await
    }

    async fn update_control_document_settings(
        &self,
        request: Request<UpdateControlDocumentSettingsRequest>,
    ) -> Reply<ControlDocumentSettings> {
        control_documents::update_control_document_settings(self, request).await
    }

    async fn triage_repair_case(
        &self,
        request: Request<TriageRepairCaseRequest>,
    ) -> Reply<RepairTriage> {
        triage::triage_repair_case(self, request).await
    }

    async fn create_escalation(
        &self,
        request: Request<CreateEscalationRequest>,
    ) -> Reply<Escalation> {
        escalations::create_escalation(self, request).await
    }

    async fn get_escalation(&self, request: Request<GetEscalationRequest>) -> Reply<Escalation> {
        escalations::get_escalation(self, request).await
    }

    async fn list_escalations(
        &self,
        request: Request<ListEscalationsRequest>,
    ) -> Reply<ListEscalationsResponse> {
        escalations::list_escalations(self, request).await
    }

    async fn acknowledge_escalation(
        &self,
        request: Request<AcknowledgeEscalationRequest>,
    ) -> Reply<Escalation> {
        escalations::acknowledge_escalation(self, request).await
    }

    async fn resolve_escalation(
        &self,
        request: Request<ResolveEscalationRequest>,
    ) -> Reply<Escalation> {
        escalations::resolve_escalation(self, request).await
    }

    async fn cancel_escalation(
        &self,
        request: Request<CancelEscalationRequest>,
    ) -> Reply<Escalation> {
        escalations::cancel_escalation(self, request).await
    }

    async fn add_business_time(
        &self,
        request: Request<AddBusinessTimeRequest>,
    ) -> Reply<AddBusinessTimeResponse> {
        calendars::add_business_time(self, request).await
    }

    async fn measure_business_time(
        &self,
        request: Request<MeasureBusinessTimeRequest>,
    ) -> Reply<MeasureBusinessTimeResponse> {
        calendars::measure_business_time(self, request).await
    }

    async fn create_hand_off_code(
        &self,
        request: Request<CreateHandOffCodeRequest>,
    ) -> Reply<HandOffCode> {
        hand_off_codes::create_hand_off_code(self, request).await
    }

    async fn get_hand_off_code(
        &self,
        request: Request<GetHandOffCodeRequest>,
    ) -> Reply<HandOffCode> {
        hand_off_codes::get_hand_off_code(self, request).await
    }

    async fn list_hand_off_codes(
        &self,
        request: Request<ListHandOffCodesRequest>,
    ) -> Reply<ListHandOffCodesResponse> {
        hand_off_codes::list_hand_off_codes(self, request).await
    }

    async fn update_hand_off_code(
        &self,
        request: Request<UpdateHandOffCodeRequest>,
    ) -> Reply<HandOffCode> {
        hand_off_codes::update_hand_off_code(self, request).await
    }

    async fn delete_hand_off_code(&self, request: Request<DeleteHandOffCodeRequest>) -> Reply<()> {
        hand_off_codes::delete_hand_off_code(self, request).await
    }
}
