//! `NATS` as a sink kind: `[sinks.nats.NAME]` connections (one client and one queue each), `natsConfig` on a
//! subscription (core NATS or JetStream), a JetStream subject's stream asked of the server.

use futures_util::future::BoxFuture;

use crate::keypath::ErrorSink;
use crate::model::{NatsSubscriptionConfig, Subscription, SubscriptionType};
use crate::pipeline::QueueConfig;
use crate::sinks::kind::Settings;
use crate::sinks::kind::{
    BuildError, Destination, ResolveContext, SinkKind, StartContext, Unresolved, DESTINATION_WAIT,
};
use crate::sinks::{Readiness, Target};

use super::{render_subject, NatsSink};

pub(crate) struct Kind;

/// Check a `natsConfig` (a subscription's or a dead letter's) for `trigger`: `path` is the `natsConfig` key.
pub(crate) fn check_config(
    config: &crate::sinks::kind::SinksConfig,
    path: &str,
    n: &NatsSubscriptionConfig,
    trigger: &str,
    errors: &mut dyn ErrorSink,
) {
    if let Err(m) = config.nats_connection_for(n) {
        errors.error(format!("{path}.connection"), m);
    }
    if let Err(m) = render_subject(&n.subject, trigger) {
        errors.error(format!("{path}.subject"), m);
    }
}

impl SinkKind for Kind {
    fn subscription_type(&self) -> SubscriptionType {
        SubscriptionType::Nats
    }

    fn config_field(&self, s: &Subscription) -> Option<(&'static str, bool)> {
        Some(("natsConfig", s.nats_config.is_some()))
    }

    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink) {
        for (name, n) in &config.sinks.nats {
            n.validate(&format!("sinks.nats.{name}"), errors);
        }
    }

    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)> {
        config
            .sinks
            .nats
            .iter()
            .map(|(n, c)| (format!("sinks.nats.{n}.queue"), c.queue))
            .collect()
    }

    fn check_subscription(
        &self,
        config: &Settings,
        path: &str,
        s: &Subscription,
        errors: &mut dyn ErrorSink,
    ) {
        match &s.nats_config {
            None => errors.error(
                format!("{path}.natsConfig"),
                "required for type NATS".into(),
            ),
            Some(n) => {
                let p = format!("{path}.natsConfig");
                check_config(config.sinks, &p, n, &s.trigger_id, errors);
                if n.expected_stream.is_some() && !n.jetstream {
                    errors.error(
                        format!("{p}.expectedStream"),
                        "needs jetstream = true".into(),
                    );
                }
            }
        }
    }

    fn wraps_cloudevents(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, mut ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            // Every configured connection: dead letters and the API's NATS store may use one no subscription names.
            for (name, conn) in &ctx.config.sinks.nats {
                let sink = format!("nats.{name}");
                let ready = Readiness::default();
                let transport = NatsSink::new(
                    &sink,
                    conn,
                    ctx.delivery_timeout(),
                    ready.clone(),
                    ctx.sink_metrics,
                    ctx.sink_metrics.retries(&sink),
                    ctx.stop.clone(),
                )
                .await
                .map_err(|m| BuildError::sink(&sink, m))?;
                ctx.connections
                    .nats
                    .insert(name.clone(), transport.client());
                ctx.add_driver(&sink, transport, conn.queue, Some(ready));
            }
            Ok(())
        })
    }

    fn resolve<'a>(
        &'a self,
        ctx: ResolveContext<'a>,
        s: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>> {
        let resolved = (|| {
            let n = s
                .nats_config
                .as_ref()
                .ok_or(("natsConfig", "required".to_string()))?;
            let connection = ctx
                .config
                .sinks
                .nats_connection_for(n)
                .map_err(|m| ("natsConfig.connection", m))?;
            let subject =
                render_subject(&n.subject, &s.trigger_id).map_err(|m| ("natsConfig.subject", m))?;
            Ok((
                format!("nats.{connection}"),
                Target::Nats {
                    subject,
                    jetstream: n.jetstream,
                    expected_stream: n.expected_stream.clone(),
                },
            ))
        })();
        Box::pin(std::future::ready(resolved))
    }

    fn check_destination<'a>(
        &'a self,
        ctx: ResolveContext<'a>,
        sink: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<(), Destination>> {
        Box::pin(async move {
            // Core NATS has nothing to ask: a subject exists when someone listens.
            let Target::Nats {
                subject,
                jetstream: true,
                ..
            } = target
            else {
                return Ok(());
            };
            let connection = sink.trim_start_matches("nats.").to_string();
            let Some(client) = ctx.connections.nats.get(&connection).cloned() else {
                return Ok(());
            };
            let js = async_nats::jetstream::new(client);
            match tokio::time::timeout(DESTINATION_WAIT, js.stream_by_subject(subject.as_str())).await {
                Err(_) => Err(Destination::Unreachable(format!(
                    "NATS connection `{connection}` did not answer"
                ))),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Destination::Missing(format!(
                    "no JetStream stream holds the subject `{subject}` on connection `{connection}` ({e}): create one (or set jetstream = false)"
                ))),
            }
        })
    }
}
