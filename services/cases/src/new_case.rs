//! A new case's SLA clocks, worked out before it is written, so that
//! CreateCase writes the case, its first state, its clock index rows and its
//! timers in one transaction and reads nothing back.
//!
//! The policies and calendars it matches against are a snapshot kept in
//! memory ([`SlaConfig`]), stamped with the SLA configuration generation
//! that every policy or calendar change moves on in its own transaction.
//! The create writes the case's first state only while the generation is
//! still the snapshot's; otherwise it rolls back, reads the configuration
//! again and tries once more. So a policy changed on any replica is never
//! matched stale, and the snapshot costs no statement while nothing changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use concierge_common::clock;
use concierge_common::crud::Ctx;
use concierge_common::error::{Error, Reason, Result};
use concierge_proto::concierge::cases::v1::{
    Calendar, Case, CasePriority, CaseType, ChaseRule, ChaseRun, ChaseStep, SlaClock, SlaPolicy,
    case,
};

use crate::chase::LiveRules;
use crate::directory::AccountFacts;
use crate::{Cases, RULES, calendar, chase, store};

/// The live SLA policies and the calendars, as of one generation.
pub(crate) struct SlaConfig {
    generation: i64,
    policies: Vec<SlaPolicy>,
    /// By name; a calendar that does not parse is absent, and a policy
    /// counting in it fails the create as an internal error, as reading its
    /// clocks always has.
    calendars: HashMap<String, calendar::BusinessCalendar>,
    /// The enabled chase rules: a new case whose condition holds starts its
    /// runs in its create (every rule change moves the generation on too).
    chase: Arc<LiveRules>,
}

/// The snapshot shared by a service's requests.
#[derive(Default)]
pub(crate) struct SlaConfigCache(Mutex<Option<Arc<SlaConfig>>>);

/// How many times a create starts over because the SLA configuration changed
/// under it before it gives up with ABORTED (a policy being rewritten in a
/// tight loop).
const ATTEMPTS: usize = 3;

/// What a create learned before writing: the configuration generation it
/// matched against and, when a policy applies, what the clocks are read in.
/// The hooks compute the clocks (`on_create`, once the case has its first
/// state and creation time) and write them (`after_write`).
pub(crate) struct NewCase {
    generation: i64,
    sla: Option<Sla>,
    clocks: Mutex<Vec<SlaClock>>,
    /// Set when the generation moved before the first state was written.
    stale: AtomicBool,
    chase: Arc<LiveRules>,
    /// The runs the case starts, worked out with its fields (`on_create`)
    /// and written with it (`after_write`).
    begun: Mutex<Vec<(ChaseRun, ChaseStep, jiff::Timestamp)>>,
}

struct Sla {
    policy: SlaPolicy,
    calendar: calendar::BusinessCalendar,
}

impl NewCase {
    /// Works out the case's clocks as it is about to be written, and its SLA
    /// summary from them (what lists filter on), so the stored case, the
    /// reply and the event carry them from the start.
    pub(crate) fn compute(&self, c: &mut Case, now: i64) {
        let Some(sla) = &self.sla else {
            return;
        };
        // The clocks start when the case is created: it is stored with this
        // creation time (the row's `now`).
        c.create_time = clock::micros_to_proto(now);
        c.update_time = clock::micros_to_proto(now);
        let history = [crate::sla::StateChange {
            at: clock::from_micros(now),
            state: case::State::try_from(c.state).unwrap_or(case::State::New),
        }];
        let read = crate::reading::read_clocks(
            &sla.policy,
            c,
            &sla.calendar,
            &history,
            clock::from_micros(now),
        );
        let clocks: Vec<SlaClock> = read.into_iter().map(|(clock, ..)| clock).collect();
        c.sla = crate::timers::summarise(clocks.iter());
        *self.clocks.lock().unwrap_or_else(|p| p.into_inner()) = clocks;
    }

    /// Writes what a new case brings with it: its first state (only while
    /// the SLA configuration is still the one it was matched against), its
    /// clock index rows and its timers.
    pub(crate) async fn write(
        &self,
        conn: &mut concierge_common::storage::Conn<'_>,
        c: &Case,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        if !store::cases::append_first_state(conn, c, now, actor, self.generation).await? {
            self.stale.store(true, Ordering::Relaxed);
            return Err(Error::Conflict {
                reason: Reason::TransactionConflict,
                description: "the SLA policies or calendars changed while the case was being \
                              created; retry"
                    .into(),
            });
        }
        let clocks = std::mem::take(&mut *self.clocks.lock().unwrap_or_else(|p| p.into_inner()));
        if clocks.is_empty() {
            return Ok(());
        }
        let refs: Vec<&SlaClock> = clocks.iter().collect();
        store::clocks::index_clocks(conn, c, &refs, now).await?;
        crate::timers::arm_new(conn, &c.name, &clocks).await
    }

    /// Starts the runs of the rules that hold on the new case as it is about
    /// to be written, and puts them in its chase summary.
    pub(crate) fn begin_chase(&self, c: &mut Case, now: i64) {
        let turn = chase::settle(&self.chase, c);
        let begun: Vec<_> = turn
            .started
            .iter()
            .filter_map(|name| self.chase.get(name))
            .map(|live| chase::begin(&live.rule, c, now))
            .collect();
        if !begun.is_empty() {
            let runs: Vec<&ChaseRun> = begun.iter().map(|(run, ..)| run).collect();
            chase::summarise(c.chase.get_or_insert_with(Default::default), &runs);
        }
        *self.begun.lock().unwrap_or_else(|p| p.into_inner()) = begun;
    }

    /// Writes the runs [`NewCase::begin_chase`] started.
    pub(crate) async fn write_chase(
        &self,
        conn: &mut concierge_common::storage::Conn<'_>,
        c: &Case,
        now: i64,
    ) -> Result<()> {
        let begun = std::mem::take(&mut *self.begun.lock().unwrap_or_else(|p| p.into_inner()));
        for (run, step, due) in &begun {
            chase::insert_begun(conn, c, run, step, *due, now).await?;
        }
        Ok(())
    }
}

impl Cases {
    /// The SLA configuration snapshot, read from the database when there is
    /// none (at start, or after a create found it stale).
    async fn sla_config(&self) -> Result<Arc<SlaConfig>> {
        if let Some(config) = self
            .sla_config_cache()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(config);
        }
        // The generation is read first: a change that lands while the lists
        // are read leaves the snapshot older than what it holds, which the
        // next create finds and reads again; never the other way round.
        let generation = {
            let mut pooled = self.store().db().acquire().await?;
            store::sla_policies::config_generation(&mut pooled.conn()).await?
        };
        let system = Ctx::system("cases", "");
        let policies: Vec<SlaPolicy> = self.store().list_all(&RULES, &system, "").await?;
        let calendars: Vec<Calendar> = self.store().list_all(&RULES, &system, "").await?;
        let rules: Vec<ChaseRule> = self
            .store()
            .list_all(&RULES, &system, "enabled = true")
            .await?;
        let calendars = calendars
            .iter()
            .filter_map(|c| Some((c.name.clone(), calendar::from_proto(c).ok()?)))
            .collect();
        let config = Arc::new(SlaConfig {
            generation,
            policies,
            calendars,
            chase: Arc::new(LiveRules::new(rules)),
        });
        *self
            .sla_config_cache()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(config.clone());
        Ok(config)
    }

    /// Drops the snapshot of `generation`, unless another request already
    /// replaced it.
    fn forget_sla_config(&self, generation: i64) {
        let mut cached = self
            .sla_config_cache()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|c| c.generation == generation) {
            *cached = None;
        }
    }

    /// What a create of `c` (for an account with `facts`) learns before
    /// writing: the policy it gets and the calendar its clocks count in,
    /// from the snapshot.
    pub(crate) async fn plan_new_case(
        &self,
        facts: Option<&AccountFacts>,
        c: Option<&Case>,
    ) -> Result<Arc<NewCase>> {
        let config = self.sla_config().await?;
        let sla = match (facts, c) {
            (Some(facts), Some(c)) => self.plan_sla(&config, facts, c).await?,
            _ => None,
        };
        Ok(Arc::new(NewCase {
            generation: config.generation,
            sla,
            clocks: Mutex::default(),
            stale: AtomicBool::new(false),
            chase: config.chase.clone(),
            begun: Mutex::default(),
        }))
    }

    /// Whether a create that wrote with `plan` should start over, its
    /// `attempt`-th try having found the SLA configuration changed (the
    /// snapshot is then dropped, so the next plan reads it again).
    pub(crate) fn start_over(&self, plan: &NewCase, attempt: usize) -> bool {
        if !plan.stale.load(Ordering::Relaxed) {
            return false;
        }
        self.forget_sla_config(plan.generation);
        attempt < ATTEMPTS
    }

    /// The policy a new case gets (the policy's current revision) and the
    /// calendar its clocks count in, in the zone the policy says.
    async fn plan_sla(
        &self,
        config: &SlaConfig,
        facts: &AccountFacts,
        c: &Case,
    ) -> Result<Option<Sla>> {
        let priority = CasePriority::try_from(c.priority)
            .ok()
            .filter(|p| *p != CasePriority::Unspecified)
            .unwrap_or(CasePriority::Medium);
        let case_facts = crate::policy::CaseFacts {
            case_type: CaseType::try_from(c.r#type).unwrap_or(CaseType::Unspecified),
            priority,
            tier: facts.tier.clone(),
        };
        let Some(policy) = crate::policy::choose(&config.policies, &case_facts) else {
            return Ok(None);
        };
        let calendar = config.calendars.get(&policy.calendar).ok_or_else(|| {
            Error::internal(std::io::Error::other(format!(
                "{} counts in {}, which cannot be read",
                policy.name, policy.calendar
            )))
        })?;
        // The account's zone came with its facts.
        let mut zones = HashMap::from([(c.account.clone(), facts.time_zone.clone())]);
        let calendar = self
            .calendar_in_zone(policy, c, calendar.clone(), &mut zones)
            .await?;
        Ok(Some(Sla {
            policy: policy.clone(),
            calendar,
        }))
    }
}

impl NewCase {
    /// The policy (name, revision) the plan matched, for the case's fields.
    pub(crate) fn pinned(&self) -> Option<(String, String)> {
        self.sla
            .as_ref()
            .map(|s| (s.policy.name.clone(), s.policy.revision_id.clone()))
    }
}
