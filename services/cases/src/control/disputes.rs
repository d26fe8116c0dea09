//! The open billing disputes of an account, as rows of its control
//! document: asked of the disputes service (never its tables) when the
//! settings say to list them and the service is deployed.

use concierge_common::channel::{Traced, traced};
use concierge_common::error::Result;
use concierge_common::money;
use concierge_common::peer::Peer;
use concierge_common::principal::PrincipalCodec;
use concierge_proto::concierge::cases::v1::{ControlDocumentRow, control_document_row};
use concierge_proto::disputes::disputes_service_client::DisputesServiceClient;
use concierge_proto::disputes::disputes_service_server::SERVICE_NAME as DISPUTES;
use concierge_proto::disputes::{Dispute, ListDisputesRequest, dispute};
use tonic::transport::Channel;

/// The most disputes one control document lists.
const MAX_DISPUTES: usize = 1_000;

/// A client of the disputes service acting as the cases service itself.
#[derive(Clone)]
pub(crate) struct DisputesPeer(Peer<DisputesServiceClient<Traced>>);

impl DisputesPeer {
    pub(crate) fn new(channel: Channel, principals: &PrincipalCodec) -> Self {
        Self(
            Peer::new(
                DisputesServiceClient::new(traced(channel)),
                principals,
                DISPUTES,
                "cases",
            )
            .named("the disputes service"),
        )
    }

    /// `account`'s disputes that are submitted and not yet closed.
    pub(crate) async fn open_disputes(
        &self,
        request_id: &str,
        account: &str,
    ) -> Result<Vec<Dispute>> {
        let quoted = account.replace('\\', "\\\\").replace('"', "\\\"");
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListDisputesRequest {
                filter: format!("account = \"{quoted}\" AND state != DRAFT AND state != CLOSED"),
                order_by: "create_time".into(),
                page_size: 1000,
                page_token,
            };
            let page = self
                .0
                .read(request_id, request, |mut c, r| async move {
                    c.list_disputes(r).await
                })
                .await?;
            all.extend(page.disputes);
            if page.next_page_token.is_empty() || all.len() >= MAX_DISPUTES {
                all.truncate(MAX_DISPUTES);
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }
}

/// A dispute as a row of the billing group: what it is, where it stands and
/// who acts next.
pub(crate) fn row(d: &Dispute, owner_display_name: &str) -> ControlDocumentRow {
    use dispute::State as S;
    let state = S::try_from(d.state).unwrap_or(S::Unspecified);
    let disputed = d
        .total_disputed
        .as_ref()
        .map(money::format)
        .unwrap_or_default();
    let status = match state {
        S::Submitted => "Received",
        S::Vetting => "Being vetted",
        S::InformationRequested => "Waiting on you",
        S::Approved => "Approved",
        S::PartiallyApproved => "Partly approved",
        S::Denied => "Denied",
        S::CreditIssued => "Credit issued",
        S::ClientConfirmed => "Confirmed",
        _ => "",
    };
    let told = d.position.is_some();
    let question = d
        .information_request
        .as_ref()
        .map(|i| i.question.clone())
        .unwrap_or_default();
    let next_action = match state {
        S::Submitted | S::Vetting if d.overdue => {
            "Company: decide the claim (vetting is overdue)".to_string()
        }
        S::Submitted | S::Vetting => "Company: vet the claim".to_string(),
        S::InformationRequested => format!("Client: answer: {question}"),
        S::Approved | S::PartiallyApproved | S::Denied | S::CreditIssued if !told => {
            "Company: tell the client the outcome".to_string()
        }
        S::Approved | S::PartiallyApproved => "Company: issue the credit".to_string(),
        S::Denied | S::CreditIssued => "Client: confirm or reject the outcome".to_string(),
        S::ClientConfirmed => "Company: close the dispute".to_string(),
        _ => String::new(),
    };
    let mut missing_fields = Vec::new();
    if matches!(state, S::Submitted | S::Vetting) && d.owner.is_empty() {
        missing_fields.push("owner".to_string());
    }
    ControlDocumentRow {
        category: control_document_row::Category::Billing as i32,
        resource: d.name.clone(),
        title: format!("Invoice {}: {disputed} disputed", d.invoice_number),
        status: status.to_string(),
        open_time: d.submit_time.or(d.create_time),
        eta_time: if matches!(state, S::Submitted | S::Vetting) {
            d.vetting_due_time
        } else {
            None
        },
        last_public_update: d
            .position
            .as_ref()
            .map(|p| p.message.clone())
            .unwrap_or_default(),
        last_public_update_time: d.position.as_ref().and_then(|p| p.publish_time),
        owner_display_name: owner_display_name.to_string(),
        next_action,
        missing_fields,
        ..Default::default()
    }
}
