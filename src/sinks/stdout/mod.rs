//! The `STDOUT` sink: one JSON line per delivery on standard output, for trying the relay without a broker
//! (`config/dev.toml`). Logs go to standard error, so the two never mix.
//!
//! Line shape: `{"subscriptionId", "subscriptionName", "triggerId", "invocationId", "event"}` where `event` is
//! the payload made compact (a pretty-printed body would otherwise break the one-line-per-event format).

mod kind;

pub(crate) use kind::Kind;

use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::pipeline::queue::QueueReceiver;
use crate::pipeline::QueueConfig;
use crate::sinks::{Readiness, SinkWorker};

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    #[serde(default)]
    pub queue: QueueConfig,
}

pub struct StdoutSink {
    pub batch: prometheus::Histogram,
}

impl StdoutSink {
    /// Standard output is always there.
    pub fn new(ready: &Readiness, batch: prometheus::Histogram) -> Self {
        ready.set();
        Self { batch }
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    subscription_id: &'a str,
    subscription_name: &'a str,
    trigger_id: &'a str,
    invocation_id: Option<&'a str>,
    event: &'a serde_json::Value,
}

impl SinkWorker for StdoutSink {
    fn run(
        self: Box<Self>,
        mut rx: QueueReceiver,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut out = tokio::io::stdout();
            let mut buf = Vec::with_capacity(64);
            let mut text = Vec::new();
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => break,
                    n = rx.recv_many(&mut buf, 64) => n,
                };
                if n == 0 {
                    break;
                }
                self.batch.observe(n as f64);
                text.clear();
                for d in &buf {
                    let event: serde_json::Value =
                        serde_json::from_slice(&d.event().body).unwrap_or_default();
                    let line = Line {
                        subscription_id: &d.route().subscription_id,
                        subscription_name: &d.route().subscription_name,
                        trigger_id: &d.event().trigger_id,
                        invocation_id: d.event().invocation_id.as_deref(),
                        event: &event,
                    };
                    let _ = serde_json::to_writer(&mut text, &line);
                    text.push(b'\n');
                }
                let result = match out.write_all(&text).await {
                    Ok(()) => out.flush().await,
                    Err(e) => Err(e),
                };
                for d in buf.drain(..) {
                    let outcome = result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| crate::sinks::SinkError::Unavailable(format!("stdout: {e}")));
                    d.finish(outcome);
                }
            }
        })
    }
}
