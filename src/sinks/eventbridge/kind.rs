//! `EVENTBRIDGE` as a sink kind: one sink (one queue) for every EVENTBRIDGE subscription, one client per region
//! and endpoint (made on first use), the bus's existence asked with `DescribeEventBus`.

use futures_util::future::BoxFuture;

use crate::keypath::ErrorSink;
use crate::model::{Subscription, SubscriptionType};
use crate::pipeline::QueueConfig;
use crate::sinks::kind::Settings;
use crate::sinks::kind::{
    BuildError, Connections, Destination, ResolveContext, SinkKind, StartContext, Unresolved,
    DESTINATION_WAIT,
};
use crate::sinks::Target;

use super::{check_subscription, EventBridgeMetrics, EventBridgeSink, EventBridgeTarget};

pub(crate) struct Kind;

/// The sink's name (its queue, its metric label).
const SINK: &str = "eventbridge";

impl SinkKind for Kind {
    fn subscription_type(&self) -> SubscriptionType {
        SubscriptionType::Eventbridge
    }

    fn config_field(&self, s: &Subscription) -> Option<(&'static str, bool)> {
        Some(("eventBridgeConfig", s.event_bridge_config.is_some()))
    }

    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink) {
        config
            .sinks
            .eventbridge
            .validate("sinks.eventbridge", errors);
    }

    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)> {
        vec![(
            "sinks.eventbridge.queue".into(),
            config.sinks.eventbridge.queue,
        )]
    }

    fn check_subscription(
        &self,
        _config: &Settings,
        path: &str,
        s: &Subscription,
        errors: &mut dyn ErrorSink,
    ) {
        match &s.event_bridge_config {
            None => errors.error(
                format!("{path}.eventBridgeConfig"),
                "required for type EVENTBRIDGE".into(),
            ),
            Some(e) => check_subscription(&format!("{path}.eventBridgeConfig"), e, errors),
        }
    }

    fn start<'a>(&'a self, mut ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            let metrics = EventBridgeMetrics::register(ctx.registry)?;
            if !ctx.needed(SubscriptionType::Eventbridge) {
                return Ok(());
            }
            let transport = EventBridgeSink::new(
                &ctx.config.sinks.eventbridge,
                ctx.delivery_timeout(),
                ctx.sink_metrics.retries(SINK),
                metrics.throttled.clone(),
            );
            let cap = ctx.config.sinks.eventbridge.queue;
            ctx.add_driver(SINK, transport, cap, None);
            Ok(())
        })
    }

    fn resolve<'a>(
        &'a self,
        ctx: ResolveContext<'a>,
        s: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>> {
        Box::pin(async move {
            let e = s
                .event_bridge_config
                .as_ref()
                .ok_or(("eventBridgeConfig", "required".to_string()))?;
            let client = shared_client(
                ctx.config,
                ctx.connections,
                &e.aws_region,
                e.endpoint_url.as_deref(),
            )
            .await
            .map_err(|m| ("eventBridgeConfig.endpointUrl", m))?;
            Ok((
                SINK.to_string(),
                Target::EventBridge(EventBridgeTarget {
                    region: e.aws_region.clone(),
                    endpoint: e.endpoint_url.clone(),
                    client,
                    mode: e.mode,
                    bus: e.event_bus_name.clone(),
                    source: e.source.clone(),
                }),
            ))
        })
    }

    fn check_destination<'a>(
        &'a self,
        _ctx: ResolveContext<'a>,
        _sink: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<(), Destination>> {
        Box::pin(async move {
            let Target::EventBridge(t) = target else {
                return Ok(());
            };
            let call = t.client.describe_event_bus().name(&t.bus).send();
            match tokio::time::timeout(DESTINATION_WAIT, call).await {
                Err(_) => Err(Destination::Unreachable(format!(
                    "EventBridge in {} did not answer",
                    t.region
                ))),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    if let Some(refused) = crate::sinks::http::EgressRefused::find(&e) {
                        return Err(Destination::Missing(format!(
                            "eventBridgeConfig.endpointUrl: {refused}"
                        )));
                    }
                    let not_found = e
                        .as_service_error()
                        .is_some_and(|se| se.is_resource_not_found_exception());
                    if not_found {
                        Err(Destination::Missing(format!(
                            "the EventBridge bus `{}` does not exist in {}: create it (or fix eventBridgeConfig.eventBusName)",
                            t.bus, t.region
                        )))
                    } else {
                        Err(Destination::Unreachable(format!(
                            "EventBridge in {}: {}",
                            t.region,
                            aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                        )))
                    }
                }
            }
        })
    }
}

/// The client for `region` and `endpoint`: made once, then shared by every subscription that names them.
async fn shared_client(
    config: Settings<'_>,
    connections: &Connections,
    region: &str,
    endpoint: Option<&str>,
) -> Result<aws_sdk_eventbridge::Client, String> {
    let key = (region.to_string(), endpoint.map(str::to_string));
    let mut clients = connections.eventbridge.lock().await;
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    // An endpoint the config file names is the operator's; any other came from an API caller (allowed only with
    // `api.allow_endpoint_url`) and connects through the egress policy.
    let operators = endpoint.is_none_or(|url| {
        config.subscriptions.iter().any(|s| {
            s.event_bridge_config
                .as_ref()
                .is_some_and(|e| e.endpoint_url.as_deref() == Some(url))
        })
    });
    let c = super::client(
        region,
        endpoint,
        (!operators).then_some(&connections.egress),
    )
    .await?;
    clients.push((key, c.clone()));
    Ok(c)
}
