//! `trigger-relay replay`: send dead-lettered events again to their subscriptions. (Being written.)

/// `trigger-relay replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Run the command; the exit code.
pub async fn run(_config: crate::Config, _args: ReplayArgs) -> u8 {
    eprintln!("replay: not built yet");
    1
}
