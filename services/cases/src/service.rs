//! The gRPC face of the cases service. Methods not written yet answer
//! UNIMPLEMENTED (the contract is complete; the service grows into it).

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::{Error, Result};
use concierge_common::paging::PageQuery;
use concierge_common::{bounded, clock};
use concierge_common::{page_query, without_request_id};
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::cases_service_server::CasesService;
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use concierge_common::crud::Ctx;
use concierge_common::names;
use concierge_common::principal::Role;

use crate::lifecycle::{self, Transition};

/// A clock read now: the clock, its ledger, its target and the states that
/// pause it.
pub(crate) type ReadClock = (SlaClock, Vec<SlaClockSegment>, SlaTarget, Vec<i32>);

/// What reading clocks looks up besides the case, kept across the cases of
/// one sweep.
#[derive(Default)]
pub(crate) struct Lookups {
    policies: std::collections::HashMap<(String, String), SlaPolicy>,
    calendars: std::collections::HashMap<String, calendar::BusinessCalendar>,
    zones: std::collections::HashMap<String, String>,
}
use crate::{Cases, RULES, Rules, calendar};

fn instant(field: &str, t: &Option<prost_types::Timestamp>) -> Result<jiff::Timestamp> {
    bounded::Instant::required(field, t)
}

fn duration(d: jiff::SignedDuration) -> prost_types::Duration {
    bounded::Duration::to_proto(d)
}

/// The longest span business time is added or measured over, as a
/// duration (business time never exceeds the wall-clock time it spans).
const MAX_SPAN: jiff::SignedDuration =
    jiff::SignedDuration::from_hours(calendar::MAX_SPAN_DAYS * 24);

/// The idempotency key of a custom method's request, from its `request_id`.
fn once<M: prost::Message>(
    ctx: &Ctx,
    request_id: &str,
    method: &'static str,
    request: &M,
) -> Result<Option<concierge_common::idempotency::Key>> {
    concierge_common::idempotency::Key::new(&ctx.principal.subject, request_id, method, request)
}

fn required(field: &str, value: &str) -> Result<()> {
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
    async fn transition(
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

    /// A case with its clocks read now, each with its ledger.
    pub(crate) async fn case_clocks(&self, ctx: &Ctx, case_name: &str) -> Result<Vec<ReadClock>> {
        names::parse("parent", case_name, &["cases"])?;
        let c: Case = self.store().get(&RULES, ctx, case_name).await?;
        let history = self.case_histories(&[case_name]).await?;
        let history = history
            .get(case_name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.clocks_of(&c, history, &mut Lookups::default()).await
    }

    /// The clocks of `c` read now; `lookups` keeps the policies, calendars
    /// and time zones read on the way, for a sweep that reads many cases.
    pub(crate) async fn clocks_of(
        &self,
        c: &Case,
        history: &[crate::sla::StateChange<case::State>],
        lookups: &mut Lookups,
    ) -> Result<Vec<ReadClock>> {
        if c.sla_policy.is_empty() {
            return Ok(Vec::new());
        }
        let system = Ctx::system("cases", "");
        let key = (c.sla_policy.clone(), c.sla_policy_revision.clone());
        if !lookups.policies.contains_key(&key) {
            let policy = self
                .sla_policy_revision(&system, &c.sla_policy, &c.sla_policy_revision)
                .await?;
            lookups.policies.insert(key.clone(), policy);
        }
        let policy = &lookups.policies[&key];
        if !lookups.calendars.contains_key(&policy.calendar) {
            let stored: Calendar = self.store().get(&RULES, &system, &policy.calendar).await?;
            let cal = calendar::from_proto(&stored).map_err(Error::internal)?;
            lookups.calendars.insert(policy.calendar.clone(), cal);
        }
        let mut cal = lookups.calendars[&policy.calendar].clone();
        use concierge_proto::concierge::cases::v1::sla_policy::TimeZoneSource;
        // Site and account names never collide, so one cache holds both. A
        // case with no site, or a site with no zone, is read in the
        // account's zone, as the policy's contract says.
        let source =
            TimeZoneSource::try_from(policy.time_zone_source).unwrap_or(TimeZoneSource::Calendar);
        let places: Vec<&String> = match source {
            TimeZoneSource::Site if !c.site.is_empty() => vec![&c.site, &c.account],
            TimeZoneSource::Site | TimeZoneSource::Account => vec![&c.account],
            _ => vec![],
        };
        for place in places {
            if !lookups.zones.contains_key(place) {
                let zone = if *place == c.site {
                    self.directory().site_time_zone("", place).await?
                } else {
                    self.directory()
                        .account("", "case.account", place)
                        .await?
                        .time_zone
                };
                lookups.zones.insert(place.clone(), zone);
            }
            let zone = &lookups.zones[place];
            if !zone.is_empty() {
                cal = cal.in_time_zone(zone)?;
                break;
            }
        }
        let policy = &lookups.policies[&key];
        let now = clock::from_micros(self.store().now());
        let zone_name = cal.time_zone().iana_name().unwrap_or_default().to_string();
        let pauses: Vec<i32> = crate::policy::pause_states(policy)
            .into_iter()
            .map(|s| s as i32)
            .collect();
        Ok(crate::clocks::definitions(policy, c)
            .into_iter()
            .map(|def| {
                let r = crate::clocks::read(&def, policy, c, &cal, history, now);
                let clock = crate::clocks::to_proto(&def, &r, policy, c, &zone_name, now);
                let segments = crate::clocks::segments(&r, &policy.calendar);
                (clock, segments, def.target.clone(), pauses.clone())
            })
            .collect())
    }

    /// The states each of `cases` entered, in order, in one query.
    pub(crate) async fn case_histories(
        &self,
        cases: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<crate::sla::StateChange<case::State>>>> {
        let mut pooled = self.store().db().acquire().await?;
        crate::store::cases::histories(&mut pooled.conn(), cases).await
    }

    /// The SLA policy (and its current revision) a new case gets.
    async fn matching_policy(
        &self,
        ctx: &Ctx,
        facts: &crate::directory::AccountFacts,
        c: &Case,
    ) -> Result<Option<(String, String)>> {
        // Policies are read as the service itself: a client opening a case
        // may not read them, but its case still gets one.
        let system = Ctx::system("cases", &ctx.request_id);
        let policies: Vec<SlaPolicy> = self.store().list_all(&RULES, &system, "").await?;
        let priority = CasePriority::try_from(c.priority)
            .ok()
            .filter(|p| *p != CasePriority::Unspecified)
            .unwrap_or(CasePriority::Medium);
        let facts = crate::policy::CaseFacts {
            case_type: CaseType::try_from(c.r#type).unwrap_or(CaseType::Unspecified),
            priority,
            tier: facts.tier.clone(),
        };
        Ok(crate::policy::choose(&policies, &facts)
            .map(|p| (p.name.clone(), p.revision_id.clone())))
    }

    /// The case a note or list of notes belongs to, as the caller may see it.
    async fn visible_case(&self, ctx: &Ctx, name: &str) -> Result<Case> {
        names::parse("parent", name, &["cases"])?;
        self.store().get(&RULES, ctx, name).await
    }

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
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        let result = async {
            let account = req
                .case
                .as_ref()
                .map(|c| c.account.clone())
                .unwrap_or_default();
            if ctx.principal.role == Role::Client
                && ctx.principal.account.as_deref() != Some(account.as_str())
            {
                return Err(Error::NotFound {
                    resource_type: "Account",
                    name: account,
                });
            }
            // The account's owner and tier come from the customers service;
            // a malformed name is left for the field checks to report.
            let facts = match names::parse("case.account", &account, &["accounts"]) {
                Ok(_) => Some(
                    self.directory()
                        .account(&ctx.request_id, "case.account", &account)
                        .await?,
                ),
                Err(_) => None,
            };
            let policy = match (&facts, &req.case) {
                (Some(f), Some(c)) => self.matching_policy(&ctx, f, c).await?,
                _ => None,
            };
            let rules = Rules {
                facts,
                sla_policy: policy,
                ..RULES
            };
            let created: Case = self
                .store()
                .create(
                    &rules,
                    &ctx,
                    "CreateCase",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.case,
                        id: &req.case_id,
                        request_id: &req.request_id,
                    },
                )
                .await?;
            self.refresh_timers_after_change(&created.name).await;
            Ok(created)
        };
        reply(result.await)
    }

    async fn get_case(&self, request: Request<GetCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_cases(&self, request: Request<ListCasesRequest>) -> Reply<ListCasesResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.is_empty() {
            req.order_by = "create_time desc".into();
        }
        let (cases, next_page_token, total_size) = self
            .store()
            .list_counted(&RULES, &ctx, page_query!(req))
            .await?;
        Ok(Response::new(ListCasesResponse {
            cases,
            next_page_token,
            total_size,
        }))
    }

    async fn update_case(&self, request: Request<UpdateCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let updated: Case = self
            .store()
            .update(&RULES, &ctx, req.case, req.update_mask)
            .await?;
        // A new site may mean another time zone for the clocks.
        self.refresh_timers_after_change(&updated.name).await;
        Ok(Response::new(updated))
    }

    async fn open_case(&self, request: Request<OpenCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        if !req.owner.is_empty() {
            names::parse("owner", &req.owner, &["staff"])?;
        }
        let caller = ctx.principal.staff_member.clone().unwrap_or_default();
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Open,
                |c, now| {
                    if !req.owner.is_empty() {
                        c.owner = req.owner.clone();
                    } else if c.owner.is_empty() {
                        c.owner = caller;
                    }
                    if c.first_response_time.is_none() {
                        c.first_response_time = clock::micros_to_proto(now);
                    }
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn start_case_work(&self, request: Request<StartCaseWorkRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::StartWork,
                |c, now| {
                    if c.first_response_time.is_none() {
                        c.first_response_time = clock::micros_to_proto(now);
                    }
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn pend_case_on_client(&self, request: Request<PendCaseOnClientRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        required("reason", &req.reason)?;
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::PendOnClient,
                |c, _| {
                    c.state_reason = req.reason.clone();
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn pend_case_on_carrier(
        &self,
        request: Request<PendCaseOnCarrierRequest>,
    ) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        required("reason", &req.reason)?;
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::PendOnCarrier,
                |c, _| {
                    c.state_reason = req.reason.clone();
                    if !req.carrier_reference.is_empty() {
                        c.carrier_reference = req.carrier_reference.clone();
                    }
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn resume_case(&self, request: Request<ResumeCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Resume,
                |c, _| {
                    c.state_reason = req.reason.clone();
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn mark_case_jeopardy(&self, request: Request<MarkCaseJeopardyRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        bounded::Instant::optional("revised_eta_time", &req.revised_eta_time)?;
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::MarkJeopardy,
                |c, now| {
                    let mut j = c.jeopardy.take().unwrap_or_default();
                    if j.enter_time.is_none() {
                        j.enter_time = clock::micros_to_proto(now);
                    }
                    if !req.reason.trim().is_empty() {
                        j.reason = req.reason.clone();
                        j.reason_time = clock::micros_to_proto(now);
                        // The public update that carries it, posted with the
                        // change (the case's after-write hook).
                        let id = names::new_id("note_id", "")?;
                        j.public_note = format!("{}/notes/{id}", c.name);
                    }
                    if req.revised_eta_time.is_some() {
                        j.revised_eta_time = req.revised_eta_time;
                    }
                    // Jeopardy without a reason or a revised ETA is allowed (the
                    // performing team flags it) but marked, for the chase rule.
                    j.flagged_missing_reason = j.reason.is_empty() || j.revised_eta_time.is_none();
                    c.state_reason = j.reason.clone();
                    c.jeopardy = Some(j);
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn resolve_case(&self, request: Request<ResolveCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        bounded::Instant::optional("restore_time", &req.restore_time)?;
        let resolution = req.resolution.clone().unwrap_or_default();
        let mut v = concierge_common::error::Violations::new();
        for (field, value) in [
            ("resolution.root_cause", &resolution.root_cause),
            ("resolution.resolution_code", &resolution.resolution_code),
            ("resolution.summary", &resolution.summary),
        ] {
            if value.trim().is_empty() {
                v.add(field, "required to resolve a case");
            }
        }
        v.into_result()?;
        let resolver = ctx
            .principal
            .staff_member
            .clone()
            .unwrap_or_else(|| ctx.principal.subject.clone());
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Resolve,
                |c, now| {
                    c.resolution = Some(Resolution {
                        resolver,
                        ..resolution
                    });
                    c.resolve_time = clock::micros_to_proto(now);
                    c.state_reason = c
                        .resolution
                        .as_ref()
                        .map(|r| r.resolution_code.clone())
                        .unwrap_or_default();
                    if let Some(restored) = req.restore_time {
                        c.outage.get_or_insert_with(Default::default).restore_time = Some(restored);
                    }
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn close_case(&self, request: Request<CloseCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Close,
                |c, now| {
                    c.state_reason = req.reason.clone();
                    c.close_time = clock::micros_to_proto(now);
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn reopen_case(&self, request: Request<ReopenCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        required("reason", &req.reason)?;
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Reopen,
                |c, _| {
                    c.state_reason = req.reason.clone();
                    c.reopen_count += 1;
                    c.close_time = None;
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn cancel_case(&self, request: Request<CancelCaseRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        required("reason", &req.reason)?;
        reply(
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Cancel,
                |c, now| {
                    c.state_reason = req.reason.clone();
                    c.close_time = clock::micros_to_proto(now);
                    Ok(())
                },
            )
            .await,
        )
    }

    async fn merge_case(&self, request: Request<MergeCaseRequest>) -> Reply<MergeCaseResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            names::parse("target", &req.target, &["cases"])?;
            if req.target == req.name {
                return Err(Error::invalid(
                    "target",
                    "a case cannot be merged into itself",
                ));
            }
            let target: Case = self.store().get(&RULES, &ctx, &req.target).await?;
            if !lifecycle::is_open(
                case::State::try_from(target.state).unwrap_or(case::State::Unspecified),
            ) {
                return Err(Error::FailedPrecondition {
                    reason: concierge_common::error::Reason::MergeTargetNotOpen,
                    subject: req.target.clone(),
                    description: format!("{} is not open; merge into an open case", req.target),
                });
            }
            self.transition(
                &ctx,
                &req.name,
                &req.etag,
                (&req.request_id, &without_request_id!(req)),
                Transition::Merge,
                |c, now| {
                    if c.account != target.account {
                        return Err(Error::FailedPrecondition {
                            reason: concierge_common::error::Reason::MergeAcrossAccounts,
                            subject: req.target.clone(),
                            description: format!(
                                "{} belongs to {}, not {}",
                                req.target, target.account, c.account
                            ),
                        });
                    }
                    c.merged_into = req.target.clone();
                    c.state_reason = if req.reason.is_empty() {
                        format!("merged into {}", req.target)
                    } else {
                        req.reason.clone()
                    };
                    c.close_time = clock::micros_to_proto(now);
                    Ok(())
                },
            )
            .await
            .map(|source| MergeCaseResponse {
                source: Some(source),
                target: Some(target.clone()),
            })
        };
        reply(result.await)
    }

    async fn create_sla_policy(
        &self,
        request: Request<CreateSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create_or_validate(
                    &RULES,
                    &ctx,
                    "CreateSlaPolicy",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.sla_policy,
                        id: &req.sla_policy_id,
                        request_id: &req.request_id,
                    },
                    req.validate_only,
                )
                .await,
        )
    }

    async fn get_sla_policy(&self, request: Request<GetSlaPolicyRequest>) -> Reply<SlaPolicy> {
        let ctx = self.ctx(&request)?;
        let name = request.into_inner().name;
        match name.split_once('@') {
            Some((policy, revision)) => {
                names::parse("name", policy, &["slaPolicies"])?;
                reply(self.sla_policy_revision(&ctx, policy, revision).await)
            }
            None => reply(self.store().get(&RULES, &ctx, &name).await),
        }
    }

    async fn list_sla_policies(
        &self,
        request: Request<ListSlaPoliciesRequest>,
    ) -> Reply<ListSlaPoliciesResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.is_empty() {
            req.order_by = "precedence".into();
        }
        let page = PageQuery {
            parent: "",
            page_size: req.page_size,
            page_token: &req.page_token,
            filter: &req.filter,
            order_by: &req.order_by,
            show_deleted: req.show_deleted,
        };
        let (sla_policies, next_page_token) = self.store().list(&RULES, &ctx, page).await?;
        Ok(Response::new(ListSlaPoliciesResponse {
            sla_policies,
            next_page_token,
        }))
    }

    async fn update_sla_policy(
        &self,
        request: Request<UpdateSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update_or_validate(
                    &RULES,
                    &ctx,
                    req.sla_policy,
                    req.update_mask,
                    req.validate_only,
                    None,
                )
                .await,
        )
    }

    /// A rollback is an update whose values are an earlier revision's: it
    /// makes a new current revision (cases on the later one keep it), and is
    /// refused on a stale etag like any update.
    async fn rollback_sla_policy(
        &self,
        request: Request<RollbackSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            names::parse("name", &req.name, &["slaPolicies"])?;
            if req.revision_id.is_empty() {
                return Err(Error::invalid("revision_id", "required"));
            }
            let earlier = self
                .sla_policy_revision(&ctx, &req.name, &req.revision_id)
                .await
                .map_err(|e| match e {
                    Error::NotFound { .. } => Error::invalid(
                        "revision_id",
                        format!("{} has no revision {:?}", req.name, req.revision_id),
                    ),
                    other => other,
                })?;
            let patch = SlaPolicy {
                name: req.name.clone(),
                etag: req.etag.clone(),
                ..earlier
            };
            let once = concierge_common::idempotency::Key::new(
                &ctx.principal.subject,
                &req.request_id,
                "RollbackSlaPolicy",
                &without_request_id!(req),
            )?;
            self.store()
                .update_or_validate(
                    &RULES,
                    &ctx,
                    Some(patch),
                    Some(prost_types::FieldMask {
                        paths: vec!["*".into()],
                    }),
                    false,
                    once,
                )
                .await
        };
        reply(result.await)
    }

    async fn delete_sla_policy(
        &self,
        request: Request<DeleteSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .soft_delete::<SlaPolicy, _>(&RULES, &ctx, &req.name, &req.etag, |p, at| {
                    p.delete_time = at
                })
                .await,
        )
    }

    async fn undelete_sla_policy(
        &self,
        request: Request<UndeleteSlaPolicyRequest>,
    ) -> Reply<SlaPolicy> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .undelete::<SlaPolicy, _>(&RULES, &ctx, &req.name, &req.etag, |p| {
                    p.delete_time = None
                })
                .await,
        )
    }

    async fn list_sla_policy_revisions(
        &self,
        request: Request<ListSlaPolicyRevisionsRequest>,
    ) -> Reply<ListSlaPolicyRevisionsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let sla_policies = self.sla_policy_revisions(&ctx, &req.name).await?;
        Ok(Response::new(ListSlaPolicyRevisionsResponse {
            sla_policies,
            next_page_token: String::new(),
        }))
    }

    /// One case's clocks, unfiltered, are read straight from its ledger.
    /// A filter, a page token or "cases/-" goes through the clock index
    /// (state and target as of each clock's last change or timer), and the
    /// clocks of the page are then read live.
    async fn list_sla_clocks(
        &self,
        request: Request<ListSlaClocksRequest>,
    ) -> Reply<ListSlaClocksResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        let across = req.parent == "cases/-";
        if !across && req.filter.is_empty() && req.page_token.is_empty() {
            let mut sla_clocks: Vec<SlaClock> = self
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
            self.visible_case(&ctx, &req.parent).await?;
        }
        if req.order_by.is_empty() {
            req.order_by = "target_time".into();
        }
        let (indexed, next_page_token): (Vec<SlaClock>, String) = self
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
        for read in self.read_clocks(&cases).await?.into_values() {
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

    async fn get_sla_clock(&self, request: Request<GetSlaClockRequest>) -> Reply<SlaClock> {
        let ctx = self.ctx(&request)?;
        let name = request.into_inner().name;
        let ids = names::parse("name", &name, &["cases", "slaClocks"])?;
        let clocks = self.case_clocks(&ctx, &format!("cases/{}", ids[0])).await?;
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

    async fn explain_sla_clock(
        &self,
        request: Request<ExplainSlaClockRequest>,
    ) -> Reply<ExplainSlaClockResponse> {
        let ctx = self.ctx(&request)?;
        let name = request.into_inner().name;
        let ids = names::parse("name", &name, &["cases", "slaClocks"])?;
        let clocks = self.case_clocks(&ctx, &format!("cases/{}", ids[0])).await?;
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

    async fn set_case_hand_off_code(
        &self,
        request: Request<SetCaseHandOffCodeRequest>,
    ) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let code_name = format!("handOffCodes/{}", req.hand_off_code);
            let code: HandOffCode = match self.store().get(&RULES, &ctx, &code_name).await {
                Err(Error::NotFound { .. }) => {
                    return Err(Error::invalid(
                        "hand_off_code",
                        format!("{:?} is not a configured hand-off code", req.hand_off_code),
                    ));
                }
                other => other?,
            };
            let changed: Case = self
                .store()
                .change_once::<Case, _>(
                    &RULES,
                    &ctx,
                    once(
                        &ctx,
                        &req.request_id,
                        "SetCaseHandOffCode",
                        &without_request_id!(req),
                    )?,
                    &req.name,
                    &req.etag,
                    catalogue::cases::CASE_UPDATED,
                    false,
                    |c, _| {
                        if !code.case_types.is_empty() && !code.case_types.contains(&c.r#type) {
                            return Err(Error::FailedPrecondition {
                                reason: concierge_common::error::Reason::HandOffCodeNotForType,
                                subject: code.name.clone(),
                                description: format!(
                                    "{} does not apply to this case's type",
                                    code.name
                                ),
                            });
                        }
                        if !lifecycle::is_open(
                            case::State::try_from(c.state).unwrap_or(case::State::Unspecified),
                        ) {
                            return Err(Error::FailedPrecondition {
                                reason: concierge_common::error::Reason::CaseNotOpen,
                                subject: c.name.clone(),
                                description: format!("{} is no longer open", c.name),
                            });
                        }
                        c.hand_off_code = req.hand_off_code.clone();
                        c.presented_to_carrier = code.presented_to_carrier;
                        if !req.carrier_reference.is_empty() {
                            c.carrier_reference = req.carrier_reference.clone();
                        }
                        Ok(())
                    },
                )
                .await?;
            Ok(changed)
        };
        reply(result.await)
    }

    async fn record_case_milestone(
        &self,
        request: Request<RecordCaseMilestoneRequest>,
    ) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            if req.key.is_empty()
                || !req
                    .key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(Error::invalid(
                    "key",
                    "required: the milestone's key, e.g. \"installed\"",
                ));
            }
            let now = self.store().now();
            let at = match &req.achieve_time {
                Some(t) => {
                    let t = clock::from_proto(t)
                        .ok_or_else(|| Error::invalid("achieve_time", "not a valid instant"))?;
                    if clock::to_micros(t) > now {
                        return Err(Error::invalid(
                            "achieve_time",
                            "a milestone is not reached in the future",
                        ));
                    }
                    t
                }
                None => clock::from_micros(now),
            };
            let recorder = ctx
                .principal
                .staff_member
                .clone()
                .unwrap_or_else(|| ctx.principal.subject.clone());
            let changed: Case = self
                .store()
                .change_once::<Case, _>(
                    &RULES,
                    &ctx,
                    once(
                        &ctx,
                        &req.request_id,
                        "RecordCaseMilestone",
                        &without_request_id!(req),
                    )?,
                    &req.name,
                    &req.etag,
                    catalogue::cases::CASE_UPDATED,
                    false,
                    |c, _| {
                        c.milestones.retain(|m| m.key != req.key);
                        c.milestones.push(CaseMilestone {
                            key: req.key.clone(),
                            display_name: req.display_name.clone(),
                            achieve_time: Some(clock::to_proto(at)),
                            recorder,
                            note: req.note.clone(),
                        });
                        Ok(())
                    },
                )
                .await?;
            // Its clock stops: the timers go.
            self.refresh_timers_after_change(&changed.name).await;
            Ok(changed)
        };
        reply(result.await)
    }

    async fn add_case_watcher(&self, request: Request<AddCaseWatcherRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let staff = names::parse("watcher", &req.watcher, &["staff"]).is_ok();
        let contact = names::parse("watcher", &req.watcher, &["accounts", "contacts"]).is_ok();
        if !staff && !contact {
            return Err(Error::invalid(
                "watcher",
                "\"staff/{staff_member}\" or a contact of the case's account",
            )
            .into());
        }
        reply(
            self.store()
                .change_once::<Case, _>(
                    &RULES,
                    &ctx,
                    once(
                        &ctx,
                        &req.request_id,
                        "AddCaseWatcher",
                        &without_request_id!(req),
                    )?,
                    &req.name,
                    "",
                    catalogue::cases::CASE_UPDATED,
                    false,
                    |c, _| {
                        if contact && !req.watcher.starts_with(&format!("{}/", c.account)) {
                            return Err(Error::invalid(
                                "watcher",
                                format!("{} is not a contact of {}", req.watcher, c.account),
                            ));
                        }
                        if !c.watchers.contains(&req.watcher) {
                            c.watchers.push(req.watcher.clone());
                        }
                        Ok(())
                    },
                )
                .await,
        )
    }

    async fn remove_case_watcher(&self, request: Request<RemoveCaseWatcherRequest>) -> Reply<Case> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .change_once::<Case, _>(
                    &RULES,
                    &ctx,
                    once(
                        &ctx,
                        &req.request_id,
                        "RemoveCaseWatcher",
                        &without_request_id!(req),
                    )?,
                    &req.name,
                    "",
                    catalogue::cases::CASE_UPDATED,
                    false,
                    |c, _| {
                        c.watchers.retain(|w| w != &req.watcher);
                        Ok(())
                    },
                )
                .await,
        )
    }

    async fn create_case_link(&self, request: Request<CreateCaseLinkRequest>) -> Reply<CaseLink> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
                .create(
                    &RULES,
                    &ctx,
                    "CreateCaseLink",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.case_link,
                        id: &req.case_link_id,
                        request_id: &req.request_id,
                    },
                )
                .await,
        )
    }

    async fn get_case_link(&self, request: Request<GetCaseLinkRequest>) -> Reply<CaseLink> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_case_links(
        &self,
        request: Request<ListCaseLinksRequest>,
    ) -> Reply<ListCaseLinksResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        if req.order_by.is_empty() {
            req.order_by = "create_time".into();
        }
        let (case_links, next_page_token) = self
            .store()
            .list(&RULES, &ctx, page_query!(req, &req.parent))
            .await?;
        Ok(Response::new(ListCaseLinksResponse {
            case_links,
            next_page_token,
        }))
    }

    async fn delete_case_link(&self, request: Request<DeleteCaseLinkRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<CaseLink, _>(&RULES, &ctx, &req.name, &req.etag)
                .await,
        )
    }

    async fn create_note(&self, request: Request<CreateNoteRequest>) -> Reply<Note> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        let result = async {
            let case = self.visible_case(&ctx, &req.parent).await?;
            let mut notified_contacts = Vec::new();
            if req.notify_client {
                let public = req
                    .note
                    .as_ref()
                    .is_some_and(|n| n.visibility == note::Visibility::Public as i32);
                if !public {
                    return Err(Error::invalid(
                        "notify_client",
                        "only a public update is sent to the client",
                    ));
                }
                notified_contacts = self
                    .directory()
                    .update_recipients(&ctx.request_id, &case.account, &case.contact)
                    .await?;
            }
            let rules = Rules {
                case_account: Some(case.account),
                notified_contacts,
                ..RULES
            };
            self.store()
                .create(
                    &rules,
                    &ctx,
                    "CreateNote",
                    &hashed,
                    New {
                        parent: &req.parent,
                        resource: req.note,
                        id: &req.note_id,
                        request_id: &req.request_id,
                    },
                )
                .await
        };
        reply(result.await)
    }

    async fn get_note(&self, request: Request<GetNoteRequest>) -> Reply<Note> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_notes(&self, request: Request<ListNotesRequest>) -> Reply<ListNotesResponse> {
        let ctx = self.ctx(&request)?;
        let mut req = request.into_inner();
        // `cases/-` reads across cases: the store keeps a client to its own
        // account's public updates, as it does within one case.
        if req.parent != "cases/-" {
            self.visible_case(&ctx, &req.parent).await?;
        }
        if req.order_by.is_empty() {
            req.order_by = "create_time".into();
        }
        let (notes, next_page_token) = self
            .store()
            .list(&RULES, &ctx, page_query!(req, &req.parent))
            .await?;
        Ok(Response::new(ListNotesResponse {
            notes,
            next_page_token,
        }))
    }

    async fn create_calendar(&self, request: Request<CreateCalendarRequest>) -> Reply<Calendar> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let hashed = without_request_id!(req);
        reply(
            self.store()
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

    async fn get_calendar(&self, request: Request<GetCalendarRequest>) -> Reply<Calendar> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_calendars(
        &self,
        request: Request<ListCalendarsRequest>,
    ) -> Reply<ListCalendarsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (calendars, next_page_token) =
            self.store().list(&RULES, &ctx, page_query!(req)).await?;
        Ok(Response::new(ListCalendarsResponse {
            calendars,
            next_page_token,
        }))
    }

    async fn update_calendar(&self, request: Request<UpdateCalendarRequest>) -> Reply<Calendar> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let updated: Calendar = self
            .store()
            .update(&RULES, &ctx, req.calendar, req.update_mask)
            .await?;
        // Clocks are read from the calendar as it is now; the timers of open
        // cases follow it in the background (the update recorded the job).
        Ok(Response::new(updated))
    }

    async fn delete_calendar(&self, request: Request<DeleteCalendarRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<Calendar, _>(&RULES, &ctx, &req.name, &req.etag)
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
            if end.duration_since(start) > MAX_SPAN {
                return Err(Error::invalid(
                    "end_time",
                    "must be at most 20 years (175320h) after start_time",
                ));
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
                    &RULES,
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
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_hand_off_codes(
        &self,
        request: Request<ListHandOffCodesRequest>,
    ) -> Reply<ListHandOffCodesResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (hand_off_codes, next_page_token) =
            self.store().list(&RULES, &ctx, page_query!(req)).await?;
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
                .update(&RULES, &ctx, req.hand_off_code, req.update_mask)
                .await,
        )
    }

    async fn delete_hand_off_code(&self, request: Request<DeleteHandOffCodeRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .delete::<HandOffCode, _>(&RULES, &ctx, &req.name, &req.etag)
                .await,
        )
    }
}
