//! `[ingress.rate_limit]`: the ingress's per-source-IP and per-credential limiters (both off by default).
//!
//! The source IP is the TCP peer address, which [`crate::server::serve`] puts in each request's extensions as a
//! `SocketAddr`. Behind a proxy or load balancer every request has the proxy's address, so `trusted_proxies`
//! lists the proxies whose `X-Forwarded-For` is believed: from such a peer, the source is the right-most address
//! in the header that is not itself a trusted proxy (each proxy appends the address it received from, so
//! everything left of that may be written by the client). A header that does not parse, or that holds only
//! trusted proxies, leaves the peer as the source. From any other peer the header is ignored, since any client
//! can write it. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from a `[::]` listener) count as IPv4.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::Request;

use super::auth::{Authenticator, Credential};
use crate::config::IngressRateLimitConfig;
use crate::ratelimit::{Admitted, OverLimit, RateLimiter};

/// What a limit counts by: the `scope` label of the rate-limit metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ip,
    Credential,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Credential => "credential",
        }
    }

    /// Its limit's key in `[ingress.rate_limit]`.
    pub fn key(self) -> &'static str {
        match self {
            Scope::Ip => "per_ip_requests",
            Scope::Credential => "per_credential_requests",
        }
    }
}

/// The ingress's limiters; `None` is a limit that is off.
#[derive(Default)]
pub struct IngressLimits {
    pub per_ip: Option<RateLimiter<IpAddr>>,
    /// Bounded by the configured credentials (its table is sized to hold them all).
    pub per_credential: Option<RateLimiter<Credential>>,
    /// For the 429's cause: "N requests per W ms".
    window_ms: u64,
    /// Peers whose `X-Forwarded-For` is believed.
    trusted: Vec<ipnet::IpNet>,
}

impl IngressLimits {
    pub fn new(c: &IngressRateLimitConfig, auth: &Authenticator) -> Self {
        let window = Duration::from_millis(c.window_ms);
        Self {
            per_ip: c
                .per_ip_requests
                .map(|n| RateLimiter::new(n, window, c.max_tracked_keys)),
            per_credential: c
                .per_credential_requests
                .map(|n| RateLimiter::new(n, window, auth.credentials())),
            window_ms: c.window_ms,
            trusted: c.trusted_proxies.clone(),
        }
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.trusted
    }

    /// The limit of `scope` (0 when off).
    pub fn limit(&self, scope: Scope) -> u32 {
        match scope {
            Scope::Ip => self.per_ip.as_ref().map(|l| l.limit()),
            Scope::Credential => self.per_credential.as_ref().map(|l| l.limit()),
        }
        .unwrap_or_default()
    }
}

/// The request's source IP (see the module docs), when the server recorded the peer address.
pub fn source_ip<B>(req: &Request<B>, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = req.extensions().get::<SocketAddr>()?.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // Every X-Forwarded-For header, in order, as one list; read from the right.
    let mut hops = Vec::new();
    for v in req.headers().get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return Some(peer);
        };
        for hop in v.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip.to_canonical()),
                Err(_) => return Some(peer),
            }
        }
    }
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

/// Count one request against `limiter` (when on): `Err` when over the limit. A request let through uncounted
/// (full table) is counted in `trigger_relay_ingress_rate_limit_untracked_requests_total{scope}`.
pub fn admit<K, Q>(
    limiter: Option<&RateLimiter<K>>,
    key: &Q,
    metrics: &super::IngressMetrics,
    scope: Scope,
) -> Result<(), OverLimit>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    match limiter.map(|l| l.check(key)) {
        None | Some(Ok(Admitted::Counted)) => Ok(()),
        Some(Ok(Admitted::Untracked)) => {
            metrics
                .rate_limit_untracked
                .with_label_values(&[scope.label()])
                .inc();
            Ok(())
        }
        Some(Err(l)) => Err(l),
    }
}
