//! Where webhooks may connect: the egress policy, checked on the resolved address of every new connection.
//!
//! A webhook URL comes from whoever may create subscriptions (a `manage` token holder), so without a policy the
//! relay would be a proxy into its own network: cloud metadata (169.254.169.254, fd00:ec2::254), the pod network,
//! localhost services, the relay's own ports. By default the connector refuses loopback, link-local, RFC 1918,
//! shared (CGNAT) and benchmarking space, unique-local and site-local IPv6, unspecified, multicast, broadcast and
//! reserved addresses, IPv4-mapped/compatible/NAT64 forms of those, and any address of this host. `[sinks.http.
//! egress] allow_cidrs` opens ranges (e.g. an internal webhook's subnet) and `allow_hosts` trusts names whatever
//! they resolve to; the relay's own listeners stay refused even inside an allowed range (a self-loop).
//!
//! The check is in the connector, after DNS, so a name that resolves inward is refused however it is spelled
//! (`127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`, a rebinding name that was public when the
//! subscription was validated). The TLS layer above still verifies the certificate against the URL's host name.
//! One policy serves config-file and API subscriptions alike: the config file sets the allow-lists, and an
//! operator who needs an internal webhook says so there.
//!
//! The same policy guards an EventBridge `endpointUrl` that an API caller set (only possible with
//! `api.allow_endpoint_url`): the AWS SDK's client resolves names through [`EgressResolver`], which answers only
//! the allowed addresses of a name, on every new connection; an IP-literal endpoint (which no resolver sees) is
//! checked with [`EgressPolicy::check_url`] when it is written and when its client is built. An endpoint that a
//! config-file subscription names is the operator's (LocalStack, moto, a VPC endpoint) and is not checked.
//!
//! A loop through a load balancer is caught by the ingress instead: every webhook request carries
//! `Via: 1.1 trigger-relay-<instance>`, and an ingress that sees its own instance there answers 508.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use ipnet::IpNet;

/// Why a connection was refused: recognised by the sink (never retried) and shown in the status.
#[derive(Debug, thiserror::Error)]
#[error("refused by the egress policy: {host} is {what}; allow it in [sinks.http.egress] if this webhook is meant to be reached")]
pub struct EgressRefused {
    pub host: String,
    pub what: String,
}

impl EgressRefused {
    /// The refusal somewhere in `e`'s chain of sources (an SDK or client error wrapping the connector's).
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressRefused> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(r) = e.downcast_ref::<EgressRefused>() {
                return Some(r);
            }
            next = e.source();
        }
        None
    }
}

/// What the connector allows.
#[derive(Debug, Default)]
pub struct EgressPolicy {
    allow_cidrs: Vec<IpNet>,
    allow_hosts: Vec<String>,
    /// The relay's own listeners, set once they are bound.
    own: RwLock<Vec<SocketAddr>>,
}

/// The class of an address the default policy refuses, or `None` for a public address.
pub fn inward(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => inward_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return inward_v4(v4).map(|_| "an IPv6 form of an inward IPv4 address");
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local (private)")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation space")
            } else if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 {
                Some("discard-only space")
            } else {
                None
            }
        }
    }
}

fn inward_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if ip.is_private() {
        Some("private (RFC 1918)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space (CGNAT)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking space")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments")
    } else if ip.is_documentation() {
        Some("documentation space")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    (mapped || compatible || nat64).then_some(tail)
}

/// Whether `ip` is an address of this host (connecting a UDP socket sends nothing; the kernel picks the source
/// address, which is the destination itself exactly when it is local).
fn local(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect((ip, 9)).and_then(|_| s.local_addr()))
        .is_ok_and(|a| a.ip() == ip)
}

impl EgressPolicy {
    pub fn new(config: &EgressConfig) -> Self {
        Self {
            allow_cidrs: config.allow_cidrs.clone(),
            allow_hosts: config
                .allow_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            own: RwLock::new(Vec::new()),
        }
    }

    /// The relay's listeners, once bound (a webhook to one of them is a loop).
    pub fn set_own(&self, addrs: Vec<SocketAddr>) {
        *self.own.write().unwrap_or_else(|p| p.into_inner()) = addrs;
    }

    fn own_port(&self, port: u16) -> bool {
        self.own
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| a.port() == port)
    }

    /// May the relay connect to `ip:port` for `host`?
    pub fn check(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), EgressRefused> {
        let refuse = |what: String| EgressRefused {
            host: if host.parse::<IpAddr>().is_ok()
                || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
            {
                ip.to_string()
            } else {
                format!("{host} ({ip})")
            },
            what,
        };
        // Asked of the kernel (a socket each time): once per check, only when a rule needs it.
        let mut is_local = None;
        let mut local_once = || *is_local.get_or_insert_with(|| local(ip));
        if self.own_port(port) && local_once() {
            return Err(refuse(format!("this relay's own listener (port {port})")));
        }
        if self
            .allow_hosts
            .iter()
            .any(|h| h == &host.to_ascii_lowercase())
        {
            return Ok(());
        }
        if self.allow_cidrs.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if let Some(what) = inward(ip) {
            return Err(refuse(what.to_string()));
        }
        if local_once() {
            return Err(refuse("an address of this host".into()));
        }
        Ok(())
    }
}

impl EgressPolicy {
    /// Check a URL whose host is an IP literal (a name is checked when it is resolved, by the connector or by
    /// [`EgressResolver`]). Also refuses userinfo. The URL's port (its scheme's default when it names none).
    pub fn check_url(&self, url: &str) -> Result<u16, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(
                "must not carry user:password@ (credentials come from the AWS chain)".into(),
            );
        }
        let host = uri.host().ok_or("the URL has no host")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check(bare, ip, port).map_err(|e| e.to_string())?;
        }
        Ok(port)
    }
}

/// A DNS resolver for the AWS SDK's HTTP client that answers only the addresses the egress policy allows for a
/// name (all refused: the connection fails with the policy's reason), resolved anew for every connection.
#[derive(Debug, Clone)]
pub struct EgressResolver {
    pub policy: Arc<EgressPolicy>,
    /// The endpoint's port (the resolver is asked for names only).
    pub port: u16,
}

impl aws_smithy_runtime_api::client::dns::ResolveDns for EgressResolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDnsError};
        DnsFuture::new(async move {
            let lookup = tokio::net::lookup_host((name, self.port));
            let found: Vec<IpAddr> = tokio::time::timeout(Duration::from_secs(10), lookup)
                .await
                .map_err(|_| ResolveDnsError::new(format!("DNS lookup of {name} timed out")))?
                .map_err(ResolveDnsError::new)?
                .map(|a| a.ip())
                .collect();
            let mut refused = None;
            let allowed: Vec<IpAddr> = found
                .into_iter()
                .filter(|ip| match self.policy.check(name, *ip, self.port) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(e)) => Err(ResolveDnsError::new(e)),
                (true, None) => Err(ResolveDnsError::new(format!(
                    "{name} resolves to no address"
                ))),
                (false, _) => Ok(allowed),
            }
        })
    }
}

/// `[sinks.http.egress]`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Ranges webhooks may reach although the default refuses them (e.g. `["10.20.0.0/16"]`).
    #[serde(default)]
    pub allow_cidrs: Vec<IpNet>,
    /// Host names trusted whatever they resolve to (exact, case-insensitive).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

/// A connector that resolves, checks every address against the policy, and connects to the first allowed one.
#[derive(Clone)]
pub struct EgressConnector {
    inner: HttpConnector,
    policy: Arc<EgressPolicy>,
    resolve_timeout: Duration,
}

impl EgressConnector {
    pub fn new(policy: Arc<EgressPolicy>, connect_timeout: Duration) -> Self {
        let mut inner = HttpConnector::new();
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(connect_timeout));
        Self {
            inner,
            policy,
            resolve_timeout: connect_timeout,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for EgressConnector {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let policy = self.policy.clone();
        let timeout = self.resolve_timeout;
        Box::pin(async move {
            let host = uri.host().ok_or("the URL has no host")?.to_string();
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => {
                    tokio::time::timeout(timeout, tokio::net::lookup_host((bare.as_str(), port)))
                        .await
                        .map_err(|_| format!("DNS lookup of {bare} timed out"))?
                        .map_err(|e| format!("DNS lookup of {bare} failed: {e}"))?
                        .map(|a| a.ip())
                        .collect()
                }
            };
            let mut refused = None;
            let mut chosen = None;
            for ip in addrs {
                match policy.check(&bare, ip, port) {
                    Ok(()) => {
                        chosen = Some(ip);
                        break;
                    }
                    Err(e) => refused = Some(e),
                }
            }
            let Some(ip) = chosen else {
                return Err(match refused {
                    Some(e) => Box::new(e) as BoxError,
                    None => format!("{bare} resolves to no address").into(),
                });
            };
            let authority = match ip {
                IpAddr::V4(v4) => format!("{v4}:{port}"),
                IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            };
            let direct = Uri::builder()
                .scheme("http")
                .authority(authority)
                .path_and_query("/")
                .build()?;
            inner.call(direct).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling of an inward address the issue lists is refused; public ones pass; allow-lists open.
    #[test]
    fn inward_addresses_in_every_spelling() {
        let p = EgressPolicy::new(&EgressConfig::default());
        let refused = [
            "169.254.169.254",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.5.4",
            "100.64.0.1",
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "fd00:ec2::254",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
            "fec0::1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().unwrap();
            assert!(p.check(a, ip, 443).is_err(), "{a} must be refused");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(p.check(a, ip, 443).is_ok(), "{a} must pass");
        }
        let open = EgressPolicy::new(&EgressConfig {
            allow_cidrs: vec!["10.20.0.0/16".parse().unwrap()],
            allow_hosts: vec!["Hooks.Internal".into()],
        });
        assert!(open
            .check("10.20.1.2", "10.20.1.2".parse().unwrap(), 80)
            .is_ok());
        assert!(open
            .check("10.21.1.2", "10.21.1.2".parse().unwrap(), 80)
            .is_err());
        assert!(open
            .check("hooks.internal", "192.168.9.9".parse().unwrap(), 80)
            .is_ok());
        // Own listeners stay refused inside an allowed range.
        let lo = EgressPolicy::new(&EgressConfig {
            allow_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            allow_hosts: vec![],
        });
        lo.set_own(vec!["0.0.0.0:8080".parse().unwrap()]);
        assert!(lo
            .check("127.0.0.1", "127.0.0.1".parse().unwrap(), 9000)
            .is_ok());
        let e = lo
            .check("localhost", "127.0.0.1".parse().unwrap(), 8080)
            .unwrap_err();
        assert!(e.to_string().contains("own listener"), "{e}");
    }

    /// No IPv6 spelling of an IPv4 address gets another verdict than the address itself (the fuzz target
    /// `egress` checks the same on arbitrary input; this walks a million addresses spread over the space).
    #[test]
    fn ipv6_forms_of_ipv4_share_its_verdict() {
        for i in 0..1u64 << 20 {
            let v4 = Ipv4Addr::from(((i * 4093) as u32).wrapping_mul(2_654_435_761));
            let plain = inward(IpAddr::V4(v4)).is_some();
            let [a, b, c, d] = v4.octets();
            let nat64 = Ipv6Addr::new(
                0x64,
                0xff9b,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            );
            assert_eq!(
                inward(IpAddr::V6(v4.to_ipv6_mapped())).is_some(),
                plain,
                "{v4}"
            );
            assert_eq!(inward(IpAddr::V6(nat64)).is_some(), plain, "{v4} as NAT64");
        }
    }
}
