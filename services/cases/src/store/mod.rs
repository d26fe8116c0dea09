//! Every SQL statement of the cases service, one file per aggregate. The
//! shared `concierge_common::crud::Store` reads and writes the resource rows
//! themselves (cases, notes, links, calendars, hand-off codes, SLA policies)
//! through the resource columns each kind declares; what else a table holds
//! — a case's state history, its derived SLA summary and dependency flag,
//! the clock index, SLA policy revisions, timers and re-arm jobs — is
//! written and read here and nowhere else. Handlers, hooks, workers and
//! engines call these functions; none of them holds a SQL string.

pub(crate) mod calendars;
pub(crate) mod cases;
pub(crate) mod chase;
pub(crate) mod clocks;
pub(crate) mod control;
pub(crate) mod rearms;
pub(crate) mod sla_policies;
pub(crate) mod timers;

/// The repository itself, through its functions, on both databases: what
/// each aggregate's rows promise the code above it.
#[cfg(test)]
mod tests {
    use concierge_common::crud::{Resource, strip_meta};
    use concierge_common::kit::Service as _;
    use concierge_common::resource::{self, Stored};
    use concierge_common::storage::Db;
    use concierge_common::testing::{Backend, TestDb};
    use concierge_proto::concierge::cases::v1::{
        Case, CaseLink, CaseSlaSummary, SlaPolicy, SlaState, case, case_link,
    };

    use crate::resources::{CASE_LINKS, CASES};
    use crate::{Cases, Rules};

    async fn migrated(backend: Backend, test: &str) -> Option<TestDb> {
        let db = TestDb::new(backend, test).await?;
        Cases::migrations().apply(&db.db).await.unwrap();
        Some(db)
    }

    async fn insert_case(db: &Db, name: &str, state: case::State) {
        let c = Case {
            name: name.into(),
            state: state as i32,
            account: "accounts/acme".into(),
            ..Default::default()
        };
        let mut tx = db.begin().await.unwrap();
        let stored = Stored {
            name: name.into(),
            parent: String::new(),
            account: c.account.clone(),
            create_time: 1,
            update_time: 1,
            delete_time: 0,
            revision: 1,
            body: strip_meta::<Case, Rules>(&c),
        };
        resource::insert(&mut tx.conn(), &CASES, &stored, &c.columns())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    async fn read_case(db: &Db, name: &str) -> (Case, i64) {
        let mut pooled = db.acquire().await.unwrap();
        let stored = resource::get(&mut pooled.conn(), &CASES, name)
            .await
            .unwrap()
            .unwrap();
        (
            prost::Message::decode(stored.body.as_slice()).unwrap(),
            stored.revision,
        )
    }

    async fn a_case_keeps_its_history_in_order_and_its_summary_without_a_new_revision(
        backend: Backend,
    ) {
        let Some(db) = migrated(backend, "store_cases").await else {
            return;
        };
        let db = &db.db;
        insert_case(db, "cases/a", case::State::New).await;
        insert_case(db, "cases/b", case::State::Resolved).await;
        insert_case(db, "cases/c", case::State::InProgress).await;
        let mut tx = db.begin().await.unwrap();
        for (state, at) in [(case::State::New, 10), (case::State::InProgress, 20)] {
            let c = Case {
                name: "cases/a".into(),
                state: state as i32,
                ..Default::default()
            };
            super::cases::append_state(&mut tx.conn(), &c, at, "apiKeys/x")
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let mut pooled = db.acquire().await.unwrap();
        let histories = super::cases::histories(&mut pooled.conn(), &["cases/a", "cases/b"])
            .await
            .unwrap();
        let a: Vec<(case::State, i64)> = histories["cases/a"]
            .iter()
            .map(|h| (h.state, h.at.as_microsecond()))
            .collect();
        assert_eq!(
            a,
            vec![(case::State::New, 10), (case::State::InProgress, 20)]
        );
        assert!(!histories.contains_key("cases/b"), "no history, no entry");

        // Open cases after a mark, in name order: the resolved one is not.
        assert_eq!(
            super::cases::open_after(&mut pooled.conn(), "", 10)
                .await
                .unwrap(),
            vec!["cases/a".to_string(), "cases/c".to_string()]
        );
        assert_eq!(
            super::cases::open_after(&mut pooled.conn(), "cases/a", 10)
                .await
                .unwrap(),
            vec!["cases/c".to_string()]
        );
        drop(pooled);

        // The summary is written as of the revision read, and no later.
        let (c, revision) = read_case(db, "cases/a").await;
        let summary = Some(CaseSlaSummary {
            state: SlaState::AtRisk as i32,
            ..Default::default()
        });
        let mut tx = db.begin().await.unwrap();
        super::cases::write_summary(&mut tx.conn(), c.clone(), revision, summary.clone())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (after, after_revision) = read_case(db, "cases/a").await;
        assert_eq!(after.sla, summary);
        assert_eq!(
            after_revision, revision,
            "a derived field makes no new revision"
        );
        let mut tx = db.begin().await.unwrap();
        super::cases::write_summary(&mut tx.conn(), c, revision - 1, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            read_case(db, "cases/a").await.0.sla,
            summary,
            "a stale read writes nothing"
        );
    }

    async fn dependencies_are_read_both_ways(backend: Backend) {
        let Some(db) = migrated(backend, "store_dependencies").await else {
            return;
        };
        let db = &db.db;
        insert_case(db, "cases/order", case::State::New).await;
        insert_case(db, "cases/repair", case::State::InProgress).await;
        let link = CaseLink {
            name: "cases/order/links/l1".into(),
            r#type: case_link::Type::DependsOn as i32,
            target: "cases/repair".into(),
            ..Default::default()
        };
        let mut tx = db.begin().await.unwrap();
        let stored = Stored {
            name: link.name.clone(),
            parent: "cases/order".into(),
            account: String::new(),
            create_time: 1,
            update_time: 1,
            delete_time: 0,
            revision: 1,
            body: prost::Message::encode_to_vec(&link),
        };
        resource::insert(
            &mut tx.conn(),
            &CASE_LINKS,
            &stored,
            &<CaseLink as Resource<Rules>>::columns(&link),
        )
        .await
        .unwrap();
        let states = super::cases::dependency_states(&mut tx.conn(), "cases/order")
            .await
            .unwrap();
        assert_eq!(states, vec![case::State::InProgress]);
        assert_eq!(
            super::cases::dependents(&mut tx.conn(), "cases/repair")
                .await
                .unwrap(),
            vec!["cases/order".to_string()]
        );
        assert!(
            super::cases::dependents(&mut tx.conn(), "cases/order")
                .await
                .unwrap()
                .is_empty()
        );
        tx.commit().await.unwrap();
    }

    async fn policy_revisions_and_rearm_jobs_keep_their_promises(backend: Backend) {
        let Some(db) = migrated(backend, "store_revisions").await else {
            return;
        };
        let db = &db.db;
        let mut tx = db.begin().await.unwrap();
        for (revision, name) in [("1", "Repairs"), ("2", "Repairs, faster")] {
            let p = SlaPolicy {
                name: "slaPolicies/repairs".into(),
                display_name: name.into(),
                revision_id: revision.into(),
                ..Default::default()
            };
            super::sla_policies::insert_revision(&mut tx.conn(), &p, 5)
                .await
                .unwrap();
        }
        // Fired once: a second mark of the same event reports nothing.
        let first = super::timers::mark_fired(
            &mut tx.conn(),
            [("c1", "breach"), ("c2", "at_risk")].into_iter(),
            7,
        )
        .await
        .unwrap();
        assert_eq!(first.len(), 2);
        let again = super::timers::mark_fired(
            &mut tx.conn(),
            [("c1", "breach"), ("c1", "at_risk")].into_iter(),
            8,
        )
        .await
        .unwrap();
        assert_eq!(
            again.into_iter().collect::<Vec<_>>(),
            vec![("c1".to_string(), "at_risk".to_string())]
        );
        let fired = super::timers::fired(&mut tx.conn(), &["c1", "c3"])
            .await
            .unwrap();
        assert_eq!(fired.len(), 2, "both of c1's, none of c3's");
        tx.commit().await.unwrap();

        let mut pooled = db.acquire().await.unwrap();
        let all = super::sla_policies::revisions(&mut pooled.conn(), "slaPolicies/repairs")
            .await
            .unwrap();
        let names: Vec<&str> = all.iter().map(|p| p.display_name.as_str()).collect();
        assert_eq!(names, vec!["Repairs", "Repairs, faster"], "oldest first");
        assert_eq!(
            super::sla_policies::revision(&mut pooled.conn(), "slaPolicies/repairs", 1)
                .await
                .unwrap()
                .map(|p| p.display_name),
            Some("Repairs".to_string())
        );
        assert!(
            super::sla_policies::revision(&mut pooled.conn(), "slaPolicies/repairs", 3)
                .await
                .unwrap()
                .is_none()
        );
        drop(pooled);

        // A re-arm job moves on by batches; a newer change restarts it, and
        // the older walk can no longer move its mark.
        let mut tx = db.begin().await.unwrap();
        super::rearms::record(&mut tx.conn(), "calendars/us", "\"2\"", 1)
            .await
            .unwrap();
        let job = super::rearms::oldest(&mut tx.conn())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((job.after_case.as_str(), job.generation), ("", 1));
        super::rearms::progress(&mut tx.conn(), &job, Some("cases/m"))
            .await
            .unwrap();
        super::rearms::record(&mut tx.conn(), "calendars/us", "\"3\"", 2)
            .await
            .unwrap();
        super::rearms::progress(&mut tx.conn(), &job, Some("cases/z"))
            .await
            .unwrap();
        let restarted = super::rearms::oldest(&mut tx.conn())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (restarted.after_case.as_str(), restarted.generation),
            ("", 2)
        );
        super::rearms::progress(&mut tx.conn(), &job, None)
            .await
            .unwrap();
        assert!(
            super::rearms::oldest(&mut tx.conn())
                .await
                .unwrap()
                .is_some(),
            "the stale walk cannot end the restarted job"
        );
        super::rearms::progress(&mut tx.conn(), &restarted, None)
            .await
            .unwrap();
        assert!(
            super::rearms::oldest(&mut tx.conn())
                .await
                .unwrap()
                .is_none()
        );
        tx.commit().await.unwrap();
    }

    concierge_common::both_backends!(
        multi_thread;
        a_case_keeps_its_history_in_order_and_its_summary_without_a_new_revision,
        dependencies_are_read_both_ways,
        policy_revisions_and_rearm_jobs_keep_their_promises
    );
}
