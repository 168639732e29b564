//! `[ingress.rate_limit]`: the ingress's per-source-IP and per-credential limiters (both off by default).
//!
//! The source IP is the TCP peer address, which [`crate::server::serve`] hands the handler with each request.
//! Behind a proxy or load balancer every request has the proxy's address, so `trusted_proxies`
//! lists the proxies whose `X-Forwarded-For` is believed: from such a peer, the source is the right-most address
//! in the header that is not itself a trusted proxy (each proxy appends the address it received from, so
//! everything left of that may be written by the client). A hop that does not parse among the proxies' own
//! entries, or a header of trusted proxies only, leaves the peer as the source. From any other peer the header is ignored, since any client
//! can write it. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from a `[::]` listener) count as IPv4, and other
//! IPv6 sources count by their /64.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;

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

/// The request's source IP (see the module docs) from its TCP `peer`. IPv6 sources are keyed by their /64 (one
/// subscriber's allocation), so rotating addresses inside it does not escape the limit.
pub fn source_ip(headers: &HeaderMap, peer: SocketAddr, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let source = if is_trusted(&peer) {
        forwarded_client(headers, is_trusted).unwrap_or(peer)
    } else {
        peer
    };
    match source {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The right-most `X-Forwarded-For` hop that is not a trusted proxy. Hops are read from the right (each proxy
/// appends the address it received from), so what the client wrote on the left is never reached once an
/// untrusted hop is found. A hop that does not parse *before* that point is in the proxies' own part: `None`.
fn forwarded_client(headers: &HeaderMap, is_trusted: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    let hops: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    for hop in hops
        .iter()
        .rev()
        .flat_map(|h| h.split(|b| *b == b',').rev())
    {
        let ip = parse_hop(hop)?;
        if !is_trusted(&ip) {
            return Some(ip);
        }
    }
    None
}

/// `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678` or `[2001:db8::1]:5678` (some load balancers add the port).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?.trim();
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
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
