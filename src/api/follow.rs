//! Every replica's routing table follows the store: whenever the [`View`] changes (a write on this replica or
//! on any other), the table is rebuilt from the config file's subscriptions and the view's, and swapped in.
//! The API's writes wait for `routed` to reach their revision before they answer (read-your-writes: an event
//! posted right after a `201` routes to the new subscription).
//!
//! A stored subscription this replica cannot route (written by a replica with another config, or no longer
//! fitting this config) is left out of the table with an error log; the others still route.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::View;
use crate::config::Config;
use crate::model::Subscription;
use crate::router::Router;
use crate::routes::RouteBuilder;

/// The subscriptions of `view` that fit `config`, after the config file's own.
pub fn routable(config: &Config, view: &View) -> Vec<Subscription> {
    let mut all = config.subscriptions.clone();
    for s in view.subscriptions() {
        let problems = config.check_subscription("", s);
        if problems.is_empty() {
            all.push(s.clone());
        } else {
            let list: Vec<String> = problems.iter().map(|e| e.to_string()).collect();
            tracing::error!(subscription = %s.effective_id(), name = %s.name, problems = ?list, "a stored subscription does not fit this replica's config; it is not routed (fix the config, or change it through the API)");
        }
    }
    all
}

pub struct Follow {
    pub config: Arc<Config>,
    pub view: watch::Receiver<Arc<View>>,
    pub builder: Arc<tokio::sync::Mutex<Option<RouteBuilder>>>,
    pub router: Arc<ArcSwap<Router>>,
    /// The store revision the routing table reflects.
    pub routed: watch::Sender<u64>,
    /// The stored subscriptions the current table was built from (their metric series go when they go).
    pub routed_ids: BTreeSet<String>,
}

impl Follow {
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = self.view.changed() => if changed.is_err() { return },
            }
            let view = self.view.borrow_and_update().clone();
            if !view.caught_up {
                continue;
            }
            let guard = self.builder.lock().await;
            // Shutting down: the builder is gone, and the table with it.
            let Some(builder) = guard.as_ref() else {
                return;
            };
            let subs = routable(&self.config, &view);
            let router = builder.build_lenient(&subs).await;
            self.router.store(Arc::new(router));
            let ids: BTreeSet<String> = view
                .subscriptions()
                .map(Subscription::effective_id)
                .collect();
            for gone in self.routed_ids.difference(&ids) {
                builder.forget(gone);
            }
            self.routed_ids = ids;
            drop(guard);
            self.routed.send_replace(view.revision);
        }
    }
}
