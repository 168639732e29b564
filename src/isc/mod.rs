//! `trigger-relay isc …`: the ISC tenant's side of the relay. (Being written.)

/// `trigger-relay isc` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IscCommand {
    /// Reconcile the tenant's HTTP subscriptions to the relay's routes.
    Sync,
}

/// Run the command; the exit code.
pub async fn run(_config: crate::Config, _command: IscCommand) -> u8 {
    1
}
