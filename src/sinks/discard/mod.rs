//! The DISCARD sink: acknowledges every event at once and sends it nowhere. It exists to measure the relay
//! itself (the load benches' "ingress → blackhole" scenario) and to dry-run a config; it goes through the same
//! queue and driver as the network sinks, so what it measures is the real path minus a broker.

mod kind;

pub(crate) use kind::Kind;

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::pipeline::Delivery;
use crate::sinks::driver::{InFlight, Transport};

pub struct DiscardSink;

impl Transport for DiscardSink {
    fn take(&self) -> usize {
        512
    }

    fn max_in_flight(&self) -> usize {
        usize::MAX
    }

    fn start(&self, batch: Vec<Delivery>) -> BoxFuture<'_, Vec<InFlight>> {
        let done = batch.into_iter().map(|d| (d, Ok(()))).collect();
        let f: InFlight = Box::pin(std::future::ready(done));
        Box::pin(std::future::ready(vec![f]))
    }

    fn flush(&self, _within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
