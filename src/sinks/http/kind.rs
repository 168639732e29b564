//! `HTTP` as a sink kind (ISC's webhooks): one sink (one queue, one keep-alive pool) for every HTTP
//! subscription, each connection through the egress policy.

use futures_util::future::BoxFuture;

use crate::keypath::ErrorSink;
use crate::model::{Subscription, SubscriptionType};
use crate::pipeline::QueueConfig;
use crate::sinks::kind::Settings;
use crate::sinks::kind::{BuildError, ResolveContext, SinkKind, StartContext, Unresolved};
use crate::sinks::Target;

use super::{check_subscription, target, HttpSink};

pub(crate) struct Kind;

/// The sink's name (its queue, its metric label).
const SINK: &str = "http";

impl SinkKind for Kind {
    fn subscription_type(&self) -> SubscriptionType {
        SubscriptionType::Http
    }

    fn config_field(&self, s: &Subscription) -> Option<(&'static str, bool)> {
        Some(("httpConfig", s.http_config.is_some()))
    }

    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink) {
        config.sinks.http.validate("sinks.http", errors);
    }

    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)> {
        vec![("sinks.http.queue".into(), config.sinks.http.queue)]
    }

    fn check_subscription(
        &self,
        _config: &Settings,
        path: &str,
        s: &Subscription,
        errors: &mut dyn ErrorSink,
    ) {
        match &s.http_config {
            None => errors.error(
                format!("{path}.httpConfig"),
                "required for type HTTP".into(),
            ),
            Some(h) => check_subscription(&format!("{path}.httpConfig"), h, errors),
        }
    }

    fn wraps_cloudevents(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, mut ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            if !ctx.needed(SubscriptionType::Http) {
                return Ok(());
            }
            let transport = HttpSink::new(
                &ctx.config.sinks.http,
                ctx.delivery_timeout(),
                ctx.sink_metrics.retries(SINK),
                ctx.connections.egress.clone(),
                ctx.instance,
            )
            .map_err(|m| BuildError::sink(SINK, m))?;
            let cap = ctx.config.sinks.http.queue;
            ctx.add_driver(SINK, transport, cap, None);
            Ok(())
        })
    }

    fn resolve<'a>(
        &'a self,
        _ctx: ResolveContext<'a>,
        s: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>> {
        let resolved = match s.http_config.as_ref() {
            None => Err(("httpConfig", "required".to_string())),
            Some(h) => target(h)
                .map(|(uri, auth)| (SINK.to_string(), Target::Http { uri, auth }))
                .map_err(|m| ("httpConfig", m)),
        };
        Box::pin(std::future::ready(resolved))
    }
}
