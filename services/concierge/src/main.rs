//! `concierge`: one binary for running Concierge and for talking to it.

mod cli;
mod database;
mod output;
mod runtime;
mod test_clock;

use clap::Parser as _;

#[tokio::main]
async fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
