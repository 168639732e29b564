//! Who may call the API: OAuth clients (client credentials at `POST /oauth/token`, as ISC and its SDKs get
//! tokens) and static bearer tokens, each with ISC's scopes. The per-caller rate limit (ISC's 100 requests per
//! 10 s by default) is a [`crate::ratelimit::RateLimiter`] keyed by [`Principal::name`].
//!
//! Secrets are never kept in clear: client secrets are configured as SHA-256 digests, issued tokens and static
//! tokens are kept as digests, and every comparison is constant-time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiConfig;

type Digest32 = [u8; 32];

fn digest(s: &str) -> Digest32 {
    Sha256::digest(s.as_bytes()).into()
}

fn hex_digest(hex: &str) -> Option<Digest32> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Client id or static token name: the rate-limit key and the log name.
    pub name: String,
    pub scopes: Vec<String>,
}

impl Principal {
    /// Has any of `scopes` (or `sp:scopes:all`).
    pub fn allowed(&self, scopes: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|s| s == "sp:scopes:all" || scopes.contains(&s.as_str()))
    }
}

struct Client {
    id: String,
    secret: Digest32,
    scopes: Vec<String>,
}

struct Issued {
    principal: Principal,
    expires: Instant,
    issued: Instant,
}

pub struct Auth {
    clients: Vec<Client>,
    tokens: Vec<(Digest32, Principal)>,
    /// Live access tokens: at most `per_client` per configured client, so bounded by the config.
    issued: Mutex<HashMap<Digest32, Issued>>,
    ttl: Duration,
    per_client: usize,
}

/// Why a token request failed (OAuth's error codes).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    UnsupportedGrant,
    InvalidRequest(&'static str),
    InvalidClient,
}

impl Auth {
    pub fn new(c: &ApiConfig) -> Self {
        Self {
            clients: c
                .clients
                .iter()
                .filter_map(|cl| {
                    Some(Client {
                        id: cl.client_id.clone(),
                        secret: hex_digest(&cl.client_secret_sha256.to_ascii_lowercase())?,
                        scopes: cl.scopes.clone(),
                    })
                })
                .collect(),
            tokens: c
                .tokens
                .iter()
                .map(|t| {
                    (
                        digest(t.token.expose()),
                        Principal {
                            name: t.name.clone(),
                            scopes: t.scopes.clone(),
                        },
                    )
                })
                .collect(),
            issued: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(c.token_ttl_s.min(crate::config::MAX_TOKEN_TTL_S)),
            per_client: c.max_tokens_per_client.max(1),
        }
    }

    /// Is `id` a configured client? (Says nothing about its secret.)
    pub fn knows_client(&self, id: &str) -> bool {
        self.clients.iter().any(|c| c.id == id)
    }

    /// `grant_type=client_credentials`: a new access token, its lifetime and scopes.
    pub fn issue(
        &self,
        form: &HashMap<String, String>,
    ) -> Result<(String, Duration, Vec<String>), TokenError> {
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {}
            Some(_) => return Err(TokenError::UnsupportedGrant),
            None => return Err(TokenError::InvalidRequest("grant_type is required")),
        }
        let id = form
            .get("client_id")
            .ok_or(TokenError::InvalidRequest("client_id is required"))?;
        let secret = digest(
            form.get("client_secret")
                .ok_or(TokenError::InvalidRequest("client_secret is required"))?,
        );
        // Compare against every client so timing says nothing about which ids exist.
        let mut found = None;
        for c in &self.clients {
            let ok = c.id.as_bytes().ct_eq(id.as_bytes()) & c.secret.ct_eq(&secret);
            if bool::from(ok) {
                found = Some(c);
            }
        }
        let c = found.ok_or(TokenError::InvalidClient)?;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, t| t.expires > now);
        // Over its own cap a client forgets its own oldest token: never another client's.
        let mine = issued.values().filter(|t| t.principal.name == c.id).count();
        if mine >= self.per_client {
            if let Some(oldest) = issued
                .iter()
                .filter(|(_, t)| t.principal.name == c.id)
                .min_by_key(|(_, t)| t.issued)
                .map(|(k, _)| *k)
            {
                issued.remove(&oldest);
            }
        }
        issued.insert(
            digest(&token),
            Issued {
                principal: Principal {
                    name: c.id.clone(),
                    scopes: c.scopes.clone(),
                },
                expires: now.checked_add(self.ttl).unwrap_or(now),
                issued: now,
            },
        );
        Ok((token, self.ttl, c.scopes.clone()))
    }

    /// The caller behind `Authorization: Bearer …`, or why there is none.
    pub fn authenticate(
        &self,
        header: Option<&http::HeaderValue>,
    ) -> Result<Principal, &'static str> {
        let value = header
            .and_then(|v| v.to_str().ok())
            .ok_or("missing Authorization header: send `Bearer <token>` from POST /oauth/token")?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or("the Authorization header must be `Bearer <token>`")?
            .trim();
        let d = digest(token);
        for (t, p) in &self.tokens {
            if bool::from(t.ct_eq(&d)) {
                return Ok(p.clone());
            }
        }
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        match issued.get(&d) {
            Some(t) if t.expires > Instant::now() => Ok(t.principal.clone()),
            Some(_) => Err("the access token has expired: get a new one from POST /oauth/token"),
            None => Err("the access token is not valid"),
        }
    }
}
