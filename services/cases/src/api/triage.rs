//! TriageRepairCase: a repair's site, inventory, impact, monitoring and
//! re-route options in one call, optionally recorded on the case.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::{Error, Reason};
use concierge_common::{clock, names, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::Request;

use crate::{Cases, RULES, authz, store, triage};

/// The other open cases a triage looks through at one site, at most.
const OTHER_CASES: i64 = 500;

pub(super) async fn triage_repair_case(
    svc: &Cases,
    request: Request<TriageRepairCaseRequest>,
) -> Reply<RepairTriage> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        authz::staff_only(&ctx.principal, "repair triages")?;
        names::parse("name", &req.name, &["cases"])?;
        let c = svc.visible_case(&ctx, &req.name).await?;
        if c.r#type != CaseType::Repair as i32 {
            return Err(Error::FailedPrecondition {
                reason: Reason::NotARepair,
                subject: c.name.clone(),
                description: format!("{} is not a repair: triage is for repairs", c.name),
            });
        }
        if c.site.is_empty() {
            return Err(Error::FailedPrecondition {
                reason: Reason::NoSite,
                subject: c.name.clone(),
                description: format!(
                    "{} names no site: set its site to triage the inventory there",
                    c.name
                ),
            });
        }
        let (site, inventory) = svc
            .directory()
            .site_with_inventory(&ctx.request_id, &c.site)
            .await?;
        let others = {
            let mut pooled = svc.store().db().acquire().await?;
            store::cases::open_at_site(&mut pooled.conn(), &c.site, OTHER_CASES).await?
        };
        let mut t = triage::triage(&c, &site, &inventory, &others);
        t.generate_time = clock::micros_to_proto(svc.store().now());
        if req.record_note {
            let note = Note {
                visibility: note::Visibility::Internal as i32,
                body: triage::as_note(&t),
                ..Default::default()
            };
            let posted: Note = svc
                .store()
                .create_learned(
                    &RULES,
                    &ctx,
                    "TriageRepairCase",
                    &without_request_id!(req),
                    New {
                        parent: &c.name,
                        resource: Some(note),
                        id: "",
                        request_id: &req.request_id,
                    },
                    false,
                    |n: &mut Note| n.origin = note::Origin::System as i32,
                )
                .await?;
            t.note = posted.name;
        }
        Ok(t)
    };
    reply(result.await)
}
