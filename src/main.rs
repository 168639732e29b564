//! The `trigger-relay` binary: parse arguments, load the config, start the library, wait for a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trigger_relay::config::{Config, DEV_CONFIG};
use trigger_relay::Relay;

/// mimalloc instead of the system allocator: building an event's JSON tree for its filters is mostly small
/// allocations and frees, and glibc's malloc was a fifth of the relay's CPU on the filtered fan-out bench
/// (BENCHMARKS.md, "Seventh look"). Benches that measure the library set the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "trigger-relay",
    version,
    about = "Relays SailPoint ISC event triggers to your bus"
)]
struct Cli {
    /// Config file (TOML). Without it, the embedded development config (STDOUT sink, no broker) is used.
    #[arg(long, short, env = "TRIGGER_RELAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Validate the config and print every error with its key path; exit 1 when there is one.
    CheckConfig {
        /// Also print the effective config (after `${VAR}` interpolation, with every default) as TOML, every
        /// secret shown as `***`.
        #[arg(long)]
        print: bool,
        /// Also connect: start the sinks on loopback listeners (the API left out), and check that every
        /// subscription's destination exists (Kafka topic, JetStream stream, EventBridge bus) and every broker
        /// answers, within 30 s; exit 1 naming what is wrong.
        #[arg(long)]
        connect: bool,
    },
    /// Manage the ISC tenant that sends events to this relay (`[isc]` in the config).
    Isc {
        #[command(subcommand)]
        command: trigger_relay::isc::IscCommand,
    },
    /// Send dead-lettered events again to their subscriptions.
    Replay(trigger_relay::replay::ReplayArgs),
}

fn load(path: &Option<PathBuf>) -> anyhow::Result<(String, String)> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            Ok((p.display().to_string(), text))
        }
        None => Ok(("(embedded config/dev.toml)".into(), DEV_CONFIG.to_string())),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, text) = match load(&cli.config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_toml(&text) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{name}: {} error(s):", errors.0.len());
            for e in &errors.0 {
                eprintln!("  - {e}");
            }
            return ExitCode::from(1);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { connect: true, .. } => {
            match runtime().and_then(|rt| rt.block_on(connect_check(config))) {
                Ok(None) => {
                    println!("{name}: ok, and every destination answers");
                    ExitCode::SUCCESS
                }
                Ok(Some(why)) => {
                    eprintln!("{name}: the config is valid, but: {why}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("{name}: cannot check the destinations: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { print, .. } => {
            if print {
                // The config on standard output (pipe it to a file); the verdict on standard error.
                print!("{}", config.to_redacted_toml());
                eprintln!(
                    "{name}: ok ({} subscription(s), {} Kafka cluster(s))",
                    config.subscriptions.len(),
                    config.sinks.kafka.len()
                );
                return ExitCode::SUCCESS;
            }
            println!(
                "{name}: ok ({} subscription(s), {} Kafka cluster(s))",
                config.subscriptions.len(),
                config.sinks.kafka.len()
            );
            ExitCode::SUCCESS
        }
        Command::Isc { command } => match runtime() {
            Ok(rt) => ExitCode::from(rt.block_on(trigger_relay::isc::run(config, command))),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Replay(args) => match runtime() {
            Ok(rt) => ExitCode::from(rt.block_on(trigger_relay::replay::run(config, args))),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Run => match runtime().and_then(|rt| rt.block_on(run(name, config))) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// The tokio runtime: the multi-threaded scheduler, or the current-thread one when the process may use only one
/// CPU (`available_parallelism` reads the affinity mask and the cgroup quota). With one worker the multi-threaded
/// scheduler only adds its cross-thread bookkeeping to every wake-up (measured in BENCHMARKS.md).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1)
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none();
    let mut b = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    b.enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// `check-config --connect`: the relay's own start-up and readiness, on loopback, without the API (its store is
/// the running relay's). `Some(why)` when it is not ready within 30 s.
async fn connect_check(mut config: Config) -> anyhow::Result<Option<String>> {
    config.ingress.listen = "127.0.0.1:0".parse()?;
    config.admin.listen = "127.0.0.1:0".parse()?;
    config.ingress.tls = None;
    config.admin.tls = None;
    config.api.enabled = false;
    // A check creates nothing: a missing topic is reported even where the relay itself would create it.
    for k in config.sinks.kafka.values_mut() {
        k.create_topics = None;
    }
    let relay = Relay::start(config).await.context("cannot start")?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let verdict = loop {
        // The first destination pass runs at start; give it a moment before the first verdict.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        match relay.not_ready() {
            None => break None,
            Some(why) if relay.destination_missing() || tokio::time::Instant::now() >= deadline => {
                break Some(why)
            }
            Some(_) => {}
        }
    };
    relay.shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), relay.wait()).await;
    Ok(verdict)
}

async fn run(name: String, config: Config) -> anyhow::Result<()> {
    trigger_relay::telemetry::init_logging(&config.log);
    if name.starts_with('(') {
        tracing::info!(
            "no --config given: using the embedded development config (STDOUT sink, no auth)"
        );
    }
    let relay = Relay::start(config).await.context("cannot start")?;
    eprintln!(
        "trigger-relay: ingress on http://{}/events/{{triggerId}}, admin on http://{}/metrics",
        relay.ingress_addr(),
        relay.admin_addr()
    );
    wait_for_signal().await?;
    relay.shutdown();
    let report = relay.wait().await;
    if report.undelivered > 0 {
        tracing::error!(
            undelivered = report.undelivered,
            "stopped with undelivered events"
        );
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r.context("cannot listen for SIGINT")?; tracing::info!("SIGINT received") }
    }
    Ok(())
}
