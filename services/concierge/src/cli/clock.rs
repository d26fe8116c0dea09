//! `concierge clock`: the test clock of `concierge dev --test-clock`.

use clap::Subcommand;
use concierge_proto::concierge::testing::v1::{AdvanceTestClockRequest, GetTestClockRequest};

use super::ClientArgs;
use crate::output;

#[derive(Subcommand)]
pub enum Command {
    /// Show the current instant.
    Get,
    /// Move the clock forward, e.g. `48h`, `5d`, `1h 30m`; with --calendar,
    /// that much business time on the calendar (`48h --calendar us-central`).
    Advance {
        #[arg(allow_hyphen_values = true)]
        by: String,
        /// A business calendar's id: count `by` in its working hours.
        #[arg(long)]
        calendar: Option<String>,
    },
}

pub async fn run(command: Command, client: &ClientArgs) -> anyhow::Result<()> {
    let mut c = client.client()?.test_clock();
    let clock = match command {
        Command::Get => {
            c.get_test_clock(GetTestClockRequest {
                name: "testClock".into(),
            })
            .await
        }
        Command::Advance { by, calendar } => {
            let by: jiff::SignedDuration = by.parse().map_err(|e| {
                anyhow::anyhow!("{by:?} is not a duration such as 48h or 1h 30m: {e}")
            })?;
            c.advance_test_clock(AdvanceTestClockRequest {
                name: "testClock".into(),
                by: Some(prost_types::Duration {
                    seconds: by.as_secs(),
                    nanos: by.subsec_nanos(),
                }),
                calendar: calendar
                    .map(|c| format!("calendars/{}", c.trim_start_matches("calendars/")))
                    .unwrap_or_default(),
            })
            .await
        }
    }
    .map_err(|e| {
        // Without --test-clock nothing serves the clock: the gateway
        // answers UNIMPLEMENTED (older ones a bare HTTP 404, which
        // tonic reads as the same code).
        if e.code() == tonic::Code::Unimplemented {
            anyhow::anyhow!(
                "the gateway at {} has no test clock: it runs only in `concierge dev --test-clock` (optionally with a start, e.g. --test-clock 2026-11-25T19:00:00Z); restart dev with it ({})",
                client.gateway,
                concierge_sdk::describe(&e)
            )
        } else {
            output::rpc(e)
        }
    })?
    .into_inner();
    if client.json {
        println!("{}", output::json(&clock)?);
    } else {
        let now = clock
            .now
            .as_ref()
            .and_then(concierge_common::clock::from_proto);
        println!("{}", now.map(|t| t.to_string()).unwrap_or_default());
    }
    Ok(())
}
