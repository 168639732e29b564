//! `[isc]`: how `trigger-relay isc …` reaches the tenant that sends the relay its events, and what it hands
//! that tenant. Only the `isc` commands read it; the relay itself runs the same with or without it. It lives with
//! the config file's other tables (`isc` re-exports it), so the config imports nothing of the commands.

use serde::{Deserialize, Serialize};

use crate::model::Secret;

/// `[isc]` in the relay's config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IscConfig {
    /// The tenant's API base URL, e.g. `https://acme.api.identitynow.com`.
    pub tenant_url: String,
    /// OAuth client (client credentials; a personal access token works): `${ISC_CLIENT_ID}`.
    pub client_id: String,
    /// `${ISC_CLIENT_SECRET}`.
    pub client_secret: Secret,
    /// The relay's ingress as the tenant must call it, e.g. `https://relay.example.com`;
    /// `/events/<triggerId>` is appended.
    pub public_url: String,
    /// Which ingress credential the tenant gets: the newest (last) of `ingress.auth.bearer_tokens` or of
    /// `ingress.auth.basic`.
    #[serde(default)]
    pub credential: Credential,
    /// The relay's own Triggers API (its admin listener), where `isc sync` reads the relay's routes and
    /// `isc test` reads delivery statuses. Default: `http://127.0.0.1:<admin port>` (the command beside the
    /// relay); from a Job, the relay's Service.
    #[serde(default)]
    pub relay_api_url: Option<String>,
    /// A bearer token for the relay's API with the read scopes. Default: the first of `[[api.tokens]]`.
    #[serde(default)]
    pub relay_api_token: Option<Secret>,
    /// Names the subscriptions this relay manages on the tenant (in their description), so two relays can
    /// share a tenant and unmanaged subscriptions are never touched.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Also set an ISC-side `filter` when every relay subscription of a trigger has one that can be joined
    /// exactly (see `isc::sync`), so the tenant does not send what no subscription wants.
    #[serde(default)]
    pub push_filters: bool,
    /// Requests per 10 s the commands send to the tenant (ISC allows 100 per client).
    #[serde(default = "default_rate")]
    pub rate_limit_requests: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Credential {
    /// `BEARER_TOKEN` with the last of `ingress.auth.bearer_tokens`.
    #[default]
    Bearer,
    /// `BASIC_AUTH` with the last of `ingress.auth.basic`.
    Basic,
}

fn default_instance() -> String {
    "default".into()
}

fn default_rate() -> u32 {
    90
}

/// Longest `instance` name (it is written into every managed subscription's description).
const MAX_INSTANCE: usize = 64;

impl IscConfig {
    /// What cannot work, as `(key under [isc], message)`. `ingress_auth` is the relay's ingress credentials,
    /// checked for the one `credential` names.
    pub fn check(&self, ingress_auth: Option<&super::AuthConfig>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, url) in [
            ("tenant_url", Some(&self.tenant_url)),
            ("public_url", Some(&self.public_url)),
            ("relay_api_url", self.relay_api_url.as_ref()),
        ] {
            let Some(url) = url else { continue };
            // The tenant's URL carries the OAuth client secret, the public URL the ingress credential (every
            // call ISC makes): https, except to this machine. The relay's API may be plain HTTP inside a
            // cluster (its admin listener), as the chart's default is.
            let https_only = key != "relay_api_url";
            if let Some(why) = check_base_url(url, https_only) {
                out.push((key, why));
            }
        }
        if self.client_id.trim().is_empty() {
            out.push(("client_id", "must not be empty".into()));
        }
        if self.client_secret.expose().is_empty() {
            out.push(("client_secret", "must not be empty".into()));
        }
        if self.instance.is_empty()
            || self.instance.len() > MAX_INSTANCE
            || !self
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            out.push((
                "instance",
                format!("must be 1 to {MAX_INSTANCE} characters of A-Z, a-z, 0-9, `-`, `_`, `.`"),
            ));
        }
        if self.rate_limit_requests == 0 || self.rate_limit_requests > 100 {
            out.push((
                "rate_limit_requests",
                "must be between 1 and 100 (ISC allows 100 requests per 10 s per client)".into(),
            ));
        }
        let has = match self.credential {
            Credential::Bearer => ingress_auth.is_some_and(|a| !a.bearer_tokens.is_empty()),
            Credential::Basic => ingress_auth.is_some_and(|a| !a.basic.is_empty()),
        };
        if !has {
            out.push((
                "credential",
                match self.credential {
                    Credential::Bearer => "is \"bearer\" but ingress.auth.bearer_tokens is empty: the tenant would have no credential to call the relay with",
                    Credential::Basic => "is \"basic\" but ingress.auth.basic is empty: the tenant would have no credential to call the relay with",
                }
                .into(),
            ));
        }
        out
    }
}

/// Why `url` is not an `http(s)://host[:port][/path]` base URL without credentials, query or fragment.
fn check_base_url(url: &str, https_only: bool) -> Option<String> {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Some(format!("`{url}` is not a URL"));
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Some("must start with https:// (or http://)".into());
    }
    let Some(authority) = uri.authority() else {
        return Some("must name a host".into());
    };
    if authority.as_str().contains('@') {
        return Some("must not carry credentials (user:password@)".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if https_only && uri.scheme_str() == Some("http") && !loopback {
        return Some(
            "must use https:// (a credential travels on it); plain http is accepted only to this machine"
                .into(),
        );
    }
    if uri.query().is_some() || url.contains('#') {
        return Some("must not have a query or fragment".into());
    }
    None
}
