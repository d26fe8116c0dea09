//! ListCaseFindings: a portfolio's cases that need action, what the
//! gateway's portfolio review is made of.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use concierge_common::crud::{Reply, reply};
use concierge_common::error::{Error, Result};
use concierge_common::names;
use concierge_proto::concierge::cases::v1::*;
use tonic::Request;

use crate::store::cases::FindingsAfter;
use crate::{Cases, authz, review, store};

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;

fn token(after: &FindingsAfter) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}:{}", after.0, after.1, after.2))
}

fn parse_token(token: &str) -> Result<FindingsAfter> {
    if token.is_empty() {
        return Ok((i64::MIN, i64::MIN, String::new()));
    }
    let bad = || Error::invalid("page_token", "not a token this method gave");
    if token.len() > 1_000 {
        return Err(bad());
    }
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let mut parts = text.splitn(3, ':');
    let (Some(reason), Some(due), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok((
        reason.parse().map_err(|_| bad())?,
        due.parse().map_err(|_| bad())?,
        name.to_string(),
    ))
}

pub(super) async fn list_case_findings(
    svc: &Cases,
    request: Request<ListCaseFindingsRequest>,
) -> Reply<ListCaseFindingsResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        authz::staff_only(&ctx.principal, "portfolio findings")?;
        names::parse("account_manager", &req.account_manager, &["staff"])?;
        if req.page_size < 0 {
            return Err(Error::invalid("page_size", "must not be negative"));
        }
        let size = match req.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = parse_token(&req.page_token)?;
        let mut pooled = svc.store().db().acquire().await?;
        let mut found = store::cases::with_findings(
            &mut pooled.conn(),
            &req.account_manager,
            &after,
            i64::from(size) + 1,
        )
        .await?;
        let more = found.len() > size as usize;
        found.truncate(size as usize);
        let next_page_token = match (more, found.last()) {
            (true, Some((_, position))) => token(position),
            _ => String::new(),
        };
        let cases = found
            .into_iter()
            .map(|(c, _)| CaseWithFindings {
                findings: review::findings(&c),
                case: Some(c),
            })
            .collect();
        Ok(ListCaseFindingsResponse {
            cases,
            next_page_token,
        })
    };
    reply(result.await)
}
