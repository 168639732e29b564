//! `trigger-relay isc …`: the tenant's side of the relay, so that `helm install` plus one command puts events
//! on the bus without opening ISC's admin UI.
//!
//! - `isc sync` ([`sync`]) reconciles the tenant's HTTP subscriptions to the relay's routes: one managed
//!   subscription per routed trigger, calling the relay's public ingress with its newest credential.
//! - `isc test` ([`test`]) asks the tenant for a test invocation of each routed trigger and follows it through
//!   the relay's own invocation statuses until it is delivered.
//!
//! Both talk to two Triggers APIs with one client ([`client`]): the tenant's (OAuth client credentials) and the
//! relay's own (a static API token), which speaks the same wire format. Exit codes: [`EXIT_OK`],
//! [`EXIT_FAILED`] and [`EXIT_UNREACHABLE`].

pub mod client;
/// `[isc]`, which lives with the rest of the config file (`config::isc`).
pub mod config {
    pub use crate::config::{Credential, IscConfig};
}
pub mod sync;
pub mod test;

pub use config::IscConfig;

use std::time::Duration;

use client::{Auth, ClientError, TriggersClient};

use crate::config::Config;

/// Done: the tenant is in step (or, with `--dry-run`, the plan was printed); every test delivered.
pub const EXIT_OK: u8 = 0;
/// Needs a fix, running again will fail the same way: the config is not usable, credentials were refused
/// (401/403), the tenant refused a change (4xx), or a test was not delivered in time.
pub const EXIT_FAILED: u8 = 1;
/// Try again: the tenant or the relay's API was unreachable, timed out, answered 5xx or kept rate limiting.
/// What was done is done; a later run (idempotent) picks up the rest.
pub const EXIT_UNREACHABLE: u8 = 3;

/// `trigger-relay isc` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IscCommand {
    /// Reconcile the tenant to the relay: one HTTP subscription (marked as managed by this relay) per
    /// FIRE_AND_FORGET trigger the relay routes, calling `<public_url>/events/<triggerId>` with the relay's
    /// newest ingress credential; managed subscriptions of triggers no longer routed are deleted; subscriptions
    /// the relay does not manage are never touched. Idempotent. Exit 0 in step, 1 needs a fix (config, refused
    /// credentials or change), 3 try again (unreachable, 5xx, rate limited).
    #[command(
        after_help = "The [isc] table of the config file says which tenant, which OAuth client (via ${VAR}), the relay's public URL and which credential to hand the tenant. See README, \"Connect your tenant\"."
    )]
    Sync {
        /// Print the plan (create / update / delete / keep, per trigger) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Ask the tenant to send a test invocation of each routed trigger through the managed subscription, and
    /// wait until each arrives at the relay and is delivered to its destinations; print a table per trigger.
    /// Exit 0 every test delivered, 1 one was not (within --timeout) or needs a fix, 3 try again (unreachable, 5xx).
    Test {
        /// Test only this trigger (repeatable). Default: every trigger the relay routes.
        #[arg(long = "trigger", value_name = "TRIGGER_ID")]
        triggers: Vec<String>,
        /// How long to wait for the tests to be delivered (a duration: `30s`, `2m`).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum IscError {
    #[error("the config has no [isc] table: add one naming the tenant (see README, \"Connect your tenant\")")]
    NoIscTable,
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl IscError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::NoIscTable | Self::Config(_) => EXIT_FAILED,
            Self::Client(c) if c.is_retriable() => EXIT_UNREACHABLE,
            Self::Client(_) => EXIT_FAILED,
        }
    }
}

/// Run one `isc` command; its exit code (what went wrong is printed).
pub async fn run(config: Config, command: IscCommand) -> u8 {
    let result = match command {
        IscCommand::Sync { dry_run } => run_sync(&config, dry_run).await,
        IscCommand::Test { triggers, timeout } => test::run(&config, &triggers, timeout).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let IscError::Client(c) = &e {
                if c.is_auth() {
                    eprintln!("  the credentials were refused: check [isc] client_id/client_secret (tenant) or relay_api_token (relay)");
                } else if c.is_retriable() {
                    eprintln!("  nothing was changed; try again once it answers");
                }
            }
            e.exit_code()
        }
    }
}

/// The `[isc]` table, or why the command cannot run.
fn isc(config: &Config) -> Result<&IscConfig, IscError> {
    config.isc.as_ref().ok_or(IscError::NoIscTable)
}

/// A client of the tenant's Triggers API.
fn tenant(isc: &IscConfig) -> Result<TriggersClient, IscError> {
    Ok(TriggersClient::new(
        &isc.tenant_url,
        Auth::OAuth {
            client_id: isc.client_id.clone(),
            secret: isc.client_secret.clone(),
        },
        isc.rate_limit_requests,
    )?)
}

/// A client of the relay's own Triggers API.
fn relay_api(config: &Config, isc: &IscConfig) -> Result<TriggersClient, IscError> {
    let url = match &isc.relay_api_url {
        Some(u) => u.clone(),
        None => {
            let scheme = if config.admin.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://127.0.0.1:{}", config.admin.listen.port())
        }
    };
    let token = isc
        .relay_api_token
        .clone()
        .or_else(|| config.api.tokens.first().map(|t| t.token.clone()))
        .ok_or_else(|| {
            IscError::Config(
                "the relay's API needs a bearer token: set [isc] relay_api_token, or add an [[api.tokens]] entry with the sp:trigger-service-subscriptions:read and sp:trigger-service-invocation-status:read scopes".into(),
            )
        })?;
    // The relay's API allows 100 per 10 s too.
    Ok(TriggersClient::relay(&url, token, isc.rate_limit_requests)?)
}

/// The relay's subscriptions: through its API when the API is on (config-file and API-created ones), else the
/// config file's.
async fn relay_routes(config: &Config, isc: &IscConfig) -> Result<Vec<sync::RelaySub>, IscError> {
    if !config.api.enabled {
        return Ok(config
            .subscriptions
            .iter()
            .map(|s| sync::RelaySub {
                trigger_id: s.trigger_id.clone(),
                enabled: s.enabled,
                filter: s.filter.clone(),
            })
            .collect());
    }
    let mut api = relay_api(config, isc)?;
    let listed = api.subscriptions().await?;
    Ok(listed
        .iter()
        .filter_map(sync::RelaySub::from_json)
        .collect())
}

async fn run_sync(config: &Config, dry_run: bool) -> Result<u8, IscError> {
    let isc = isc(config)?;
    let auth = sync::TenantAuth::from_config(config, isc).ok_or_else(|| {
        IscError::Config(
            "the relay has no ingress credential of the kind [isc] credential names".into(),
        )
    })?;
    eprintln!("reading the relay's routes…");
    let routes = relay_routes(config, isc).await?;
    let want = sync::desired(&routes, isc, &auth);
    eprintln!(
        "  {} subscription(s), {} routed trigger(s)",
        routes.len(),
        want.len()
    );
    eprintln!("reading the tenant's subscriptions at {}…", isc.tenant_url);
    let mut tenant = tenant(isc)?;
    tenant.hide(auth.secret());
    let listed = tenant.subscriptions().await?;
    let plan = sync::plan(&want, &listed, &isc.instance);
    if dry_run {
        print!("{}", plan.table());
        println!("dry run: nothing was changed");
        return Ok(EXIT_OK);
    }
    if plan.changes() == 0 {
        print!("{}", plan.table());
        println!("the tenant is in step: nothing to change");
        return Ok(EXIT_OK);
    }
    let mut rows = Vec::new();
    let mut failed = 0;
    // Every failure one a later run may get past (5xx, unreachable): exit 3, so a Job retries.
    let mut retriable = true;
    for a in &plan.actions {
        let result = match a {
            sync::Action::Create(d) => tenant
                .create(&d.body(true))
                .await
                .map(|v| format!("created {}", v["id"].as_str().unwrap_or("?"))),
            sync::Action::Update { id, desired, .. } => tenant
                .replace(id, &desired.body(false))
                .await
                .map(|_| format!("updated {id}")),
            sync::Action::Delete { id, .. } => {
                tenant.delete(id).await.map(|_| format!("deleted {id}"))
            }
            sync::Action::Keep { id, .. } => Ok(format!("kept {id}")),
        };
        let done = match result {
            Ok(s) => s,
            Err(e) => {
                failed += 1;
                retriable &= e.is_retriable();
                // The client hides the credential in the tenant's error texts (which may quote the request).
                format!("FAILED: {e}")
            }
        };
        rows.push([a.trigger_id().to_string(), a.verb().to_string(), done]);
    }
    print!("{}", table(&["TRIGGER", "ACTION", "RESULT"], &rows));
    println!(
        "{} change(s) made, {} failed; {} unmanaged subscription(s) left alone{}",
        plan.changes() - failed,
        failed,
        plan.unmanaged,
        if tenant.throttled > 0 {
            format!("; waited out {} rate-limit answer(s)", tenant.throttled)
        } else {
            String::new()
        }
    );
    Ok(match (failed, retriable) {
        (0, _) => EXIT_OK,
        (_, true) => EXIT_UNREACHABLE,
        (_, false) => EXIT_FAILED,
    })
}

/// Rows as a left-aligned text table with a header line.
pub(crate) fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}
