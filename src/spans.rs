//! Optional OTLP export of the relay's own spans (`[tracing] otlp_endpoint`), so an operator sees one trace from
//! the request that entered the relay to the record on the bus.
//!
//! Spans, per accepted event: `ingress` (server: the request, parent = the caller's `traceparent`, or the root
//! of a trace whose id is the tracking id), `enqueue` (its child: reservation and hand-over to every matched
//! queue) and one `publish <sink>` per subscription (producer, child of `ingress`: from hand-over to the broker's
//! acknowledgement or the failure, with an `ack` or `failed` event at its end). While export is on, the
//! `traceparent` a message carries names its `publish` span as parent, so a consumer's span hangs below it.
//!
//! Spans are built when what they measure is over, with their start and end times given (no span object lives
//! on a delivery, only its id). With export off (the default) nothing here runs: the routes carry no [`Spans`],
//! and the hot path keeps one `Option` check per event and per delivery.
//!
//! The OpenTelemetry SDK's batch processor runs on a tokio runtime of its own, on its own thread (its
//! thread-based processor would need a blocking HTTP client; on the relay's runtime, the SDK's blocking shutdown
//! could deadlock a current-thread runtime). Its queue is bounded (`max_queued_spans`): spans beyond it are
//! dropped by the SDK, never waited for.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracer, SdkTracerProvider};
use serde::{Deserialize, Serialize};

use crate::pipeline::{Delivery, Event, Outcome};

/// `[tracing]`: OTLP/HTTP export of spans (off unless `otlp_endpoint` is set).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's traces URL, e.g. `http://otel-collector:4318/v1/traces` (used as given).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `http/json`.
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
    /// `service.name` of the relay's spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How often a batch is sent.
    #[serde(default = "default_export_interval_ms")]
    pub export_interval_ms: u64,
    /// How long one export may take.
    #[serde(default = "default_export_timeout_ms")]
    pub export_timeout_ms: u64,
    /// Spans waiting for export at most; beyond it new spans are dropped.
    #[serde(default = "default_max_queued_spans")]
    pub max_queued_spans: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
            service_name: default_service_name(),
            export_interval_ms: default_export_interval_ms(),
            export_timeout_ms: default_export_timeout_ms(),
            max_queued_spans: default_max_queued_spans(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

fn default_service_name() -> String {
    "trigger-relay".into()
}
fn default_export_interval_ms() -> u64 {
    5000
}
fn default_export_timeout_ms() -> u64 {
    10_000
}
fn default_max_queued_spans() -> usize {
    4096
}

impl TracingConfig {
    /// What cannot work, as `(key under [tracing], message)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(e) = &self.otlp_endpoint {
            match e.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                }
                _ => out.push((
                    "otlp_endpoint",
                    format!(
                        "`{e}` is not an http(s) URL such as http://otel-collector:4318/v1/traces"
                    ),
                )),
            }
        }
        if self.service_name.trim().is_empty() {
            out.push(("service_name", "must not be empty".into()));
        }
        if self.export_interval_ms == 0 || self.export_interval_ms > 60_000 {
            out.push(("export_interval_ms", "must be between 1 and 60000".into()));
        }
        if self.export_timeout_ms == 0 || self.export_timeout_ms > 60_000 {
            out.push(("export_timeout_ms", "must be between 1 and 60000".into()));
        }
        if self.max_queued_spans == 0 || self.max_queued_spans > 1_000_000 {
            out.push(("max_queued_spans", "must be between 1 and 1000000".into()));
        }
        out
    }
}

/// The relay's span exporter (present only while export is on).
pub struct Spans {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Spans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spans")
    }
}

/// A context whose span is `parent` in `e`'s trace: the parent of a span built after the fact.
fn parent_context(e: &Event, parent: u64) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(e.trace.trace_id),
        SpanId::from(parent),
        TraceFlags::new(e.trace.flags),
        true,
        TraceState::default(),
    ))
}

impl Spans {
    /// The exporter `c` asks for, or `None` when export is off. Must run inside the tokio runtime.
    pub fn start(c: &TracingConfig) -> Result<Option<Arc<Self>>, String> {
        let Some(endpoint) = &c.otlp_endpoint else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(c.export_timeout_ms);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("tracing: no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = opentelemetry_http::hyper::HyperClient::new(https, timeout, None);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(endpoint.clone())
            .with_protocol(match c.otlp_protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
                OtlpProtocol::HttpJson => Protocol::HttpJson,
            })
            .with_timeout(timeout)
            .build()
            .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(c.max_queued_spans)
            .with_scheduled_delay(Duration::from_millis(c.export_interval_ms))
            .with_max_export_timeout(timeout)
            .build();
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                // Its own thread and runtime: the SDK's shutdown (also run when the provider is dropped) blocks
                // its caller until the batch task answers, which on the relay's runtime could never run when
                // that runtime is current-thread (one CPU).
                opentelemetry_sdk::runtime::TokioCurrentThread,
            )
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(c.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("trigger-relay");
        Ok(Some(Arc::new(Self { provider, tracer })))
    }

    /// Export what is queued and stop; waits at most `within`.
    pub async fn shutdown(&self, within: Duration) {
        let provider = self.provider.clone();
        // The SDK's shutdown blocks its caller until the batch task (on this runtime) has exported.
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(within, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "span export did not finish"),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("span export did not finish within the grace period")
            }
        }
    }
}

impl crate::pipeline::SpanExporter for Spans {
    /// The `ingress` span of an accepted event and its `enqueue` child.
    fn ingress(
        &self,
        e: &Event,
        path: &str,
        status: u16,
        started: SystemTime,
        enqueued: (SystemTime, SystemTime),
    ) {
        let Some(ingress_id) = e.span_id else {
            return;
        };
        let trace = TraceId::from(e.trace.trace_id);
        let parent = if e.trace.remote {
            parent_context(e, e.trace.parent_id)
        } else {
            Context::new()
        };
        let end = SystemTime::now();
        let mut span = self.tracer.build_with_context(
            SpanBuilder::from_name("ingress")
                .with_kind(SpanKind::Server)
                .with_trace_id(trace)
                .with_span_id(SpanId::from(ingress_id))
                .with_start_time(started)
                .with_attributes([
                    KeyValue::new("http.request.method", "POST"),
                    KeyValue::new("url.path", path.to_string()),
                    KeyValue::new("http.response.status_code", i64::from(status)),
                    KeyValue::new("trigger_relay.trigger_id", e.trigger_id.to_string()),
                    KeyValue::new("trigger_relay.tracking_id", e.tracking_id.to_string()),
                    KeyValue::new(
                        "trigger_relay.invocation_id",
                        e.invocation_id.as_deref().unwrap_or("").to_string(),
                    ),
                ]),
            &parent,
        );
        let as_parent = Context::new().with_remote_span_context(span.span_context().clone());
        let mut enqueue = self.tracer.build_with_context(
            SpanBuilder::from_name("enqueue")
                .with_kind(SpanKind::Internal)
                .with_start_time(enqueued.0),
            &as_parent,
        );
        enqueue.end_with_timestamp(enqueued.1);
        span.end_with_timestamp(end);
    }

    /// The `publish` span of a finished delivery.
    fn publish(&self, d: &Delivery, outcome: &Outcome) {
        let (Some(parent_id), Some(own)) = (d.event().span_id, d.span) else {
            return;
        };
        let parent = parent_context(d.event(), parent_id);
        let end = SystemTime::now();
        let mut span = self.tracer.build_with_context(
            SpanBuilder::from_name(format!("publish {}", d.route().sink))
                .with_kind(SpanKind::Producer)
                .with_span_id(SpanId::from(own.id))
                .with_start_time(own.started)
                .with_attributes([
                    KeyValue::new("trigger_relay.sink", d.route().sink.to_string()),
                    KeyValue::new(
                        "trigger_relay.subscription_id",
                        d.route().subscription_id.to_string(),
                    ),
                    KeyValue::new("trigger_relay.attempts", i64::from(d.attempts)),
                ]),
            &parent,
        );
        match outcome {
            Ok(()) => span.add_event_with_timestamp("ack", end, vec![]),
            Err(e) => {
                span.add_event_with_timestamp(
                    "failed",
                    end,
                    vec![KeyValue::new("trigger_relay.reason", e.reason())],
                );
                span.set_status(Status::error(e.reason()));
            }
        }
        span.end_with_timestamp(end);
    }
}
