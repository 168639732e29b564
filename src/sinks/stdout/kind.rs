//! `STDOUT` as a sink kind: one sink, started when a subscription of the config file uses it.

use futures_util::future::BoxFuture;

use crate::keypath::ErrorSink;
use crate::model::{Subscription, SubscriptionType};
use crate::pipeline::queue::check_queue;
use crate::pipeline::QueueConfig;
use crate::sinks::kind::Settings;
use crate::sinks::kind::{BuildError, ResolveContext, SinkKind, StartContext, Unresolved};
use crate::sinks::{Readiness, Target};

use super::StdoutSink;

pub(crate) struct Kind;

/// The sink's name (its queue, its metric label).
const SINK: &str = "stdout";

impl SinkKind for Kind {
    fn subscription_type(&self) -> SubscriptionType {
        SubscriptionType::Stdout
    }

    fn config_field(&self, _s: &Subscription) -> Option<(&'static str, bool)> {
        None
    }

    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink) {
        check_queue("sinks.stdout.queue", &config.sinks.stdout.queue, errors);
    }

    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)> {
        vec![("sinks.stdout.queue".into(), config.sinks.stdout.queue)]
    }

    fn check_subscription(&self, _: &Settings, _: &str, _: &Subscription, _: &mut dyn ErrorSink) {}

    fn can_fail(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>> {
        if ctx.needed(SubscriptionType::Stdout) {
            let ready = Readiness::default();
            let worker = StdoutSink::new(&ready, ctx.sink_metrics.batch(SINK));
            ctx.sink_metrics.connected.with_label_values(&[SINK]).set(1);
            ctx.sinks.add(
                SINK,
                (ctx.config.sinks.stdout.queue, ctx.event_overhead),
                Box::new(worker),
                ready,
                ctx.sink_metrics,
            );
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn resolve<'a>(
        &'a self,
        _: ResolveContext<'a>,
        _: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>> {
        Box::pin(std::future::ready(Ok((SINK.to_string(), Target::Stdout))))
    }

    /// Each line embeds the event as JSON.
    fn reads_payload(&self, _target: &Target) -> bool {
        true
    }
}
