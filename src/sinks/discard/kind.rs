//! `DISCARD` as a sink kind: one sink, started when a subscription of the config file uses it.

use futures_util::future::BoxFuture;

use crate::keypath::ErrorSink;
use crate::model::{Subscription, SubscriptionType};
use crate::pipeline::queue::check_queue;
use crate::pipeline::QueueConfig;
use crate::sinks::kind::Settings;
use crate::sinks::kind::{BuildError, ResolveContext, SinkKind, StartContext, Unresolved};
use crate::sinks::Target;

use super::DiscardSink;

pub(crate) struct Kind;

/// The sink's name (its queue, its metric label).
const SINK: &str = "discard";

impl SinkKind for Kind {
    fn subscription_type(&self) -> SubscriptionType {
        SubscriptionType::Discard
    }

    fn config_field(&self, _s: &Subscription) -> Option<(&'static str, bool)> {
        None
    }

    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink) {
        check_queue("sinks.discard.queue", &config.sinks.discard.queue, errors);
    }

    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)> {
        vec![("sinks.discard.queue".into(), config.sinks.discard.queue)]
    }

    fn check_subscription(&self, _: &Settings, _: &str, _: &Subscription, _: &mut dyn ErrorSink) {}

    fn can_fail(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, mut ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>> {
        if ctx.needed(SubscriptionType::Discard) {
            let cap = ctx.config.sinks.discard.queue;
            ctx.add_driver(SINK, DiscardSink, cap, None);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn resolve<'a>(
        &'a self,
        _: ResolveContext<'a>,
        _: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>> {
        Box::pin(std::future::ready(Ok((SINK.to_string(), Target::Discard))))
    }
}
