//! Who may call the API: OAuth clients (client credentials at `POST /oauth/token`, as ISC and its SDKs get
//! tokens) and static bearer tokens, each with ISC's scopes. The per-caller rate limit (ISC's 100 requests per
//! 10 s by default) is a [`crate::ratelimit::RateLimiter`] keyed by [`Principal::name`].
//!
//! Access tokens are signed JWTs (HS256, `api.token_signing_key`, with `api.token_verification_keys` still
//! accepted for rotation), so a token from one replica works on every other and no replica keeps a table of
//! them (nothing to evict, nothing to share). Client secrets are configured as SHA-256 digests, static tokens
//! are kept as digests, and those comparisons are constant-time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// What an access token says: a JWT (HS256) any replica with the signing key verifies without shared state.
/// `user_name` is the client id: SailPoint's CLI reads it from the token (and warns without it).
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    client_id: String,
    user_name: String,
    scope: Vec<String>,
    iat: u64,
    exp: u64,
    jti: String,
}

const ISSUER: &str = "trigger-relay";

pub struct Auth {
    clients: Vec<Client>,
    tokens: Vec<(Digest32, Principal)>,
    signing: jsonwebtoken::EncodingKey,
    /// The signing key first, then `token_verification_keys` (rotation).
    verifying: Vec<jsonwebtoken::DecodingKey>,
    validation: jsonwebtoken::Validation,
    ttl: Duration,
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
        // Without a configured key (one process), a random one: its tokens end with the process.
        let random;
        let signing_key: &[u8] = match &c.token_signing_key {
            Some(k) => k.expose().as_bytes(),
            None => {
                random = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                    .iter()
                    .flat_map(|u| *u.as_bytes())
                    .collect::<Vec<u8>>();
                &random
            }
        };
        let mut verifying = vec![jsonwebtoken::DecodingKey::from_secret(signing_key)];
        verifying.extend(
            c.token_verification_keys
                .iter()
                .map(|k| jsonwebtoken::DecodingKey::from_secret(k.expose().as_bytes())),
        );
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
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
            signing: jsonwebtoken::EncodingKey::from_secret(signing_key),
            verifying,
            validation,
            ttl: Duration::from_secs(c.token_ttl_s.min(crate::config::MAX_TOKEN_TTL_S)),
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: ISSUER.into(),
            sub: c.id.clone(),
            client_id: c.id.clone(),
            user_name: c.id.clone(),
            scope: c.scopes.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.signing,
        )
        .map_err(|_| TokenError::InvalidRequest("the token could not be signed"))?;
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
        // A JWT from `issue` on any replica: its client must still be configured, and it keeps only the scopes
        // that client has now (a client removed or narrowed in the config loses them at once).
        let mut expired = false;
        for key in &self.verifying {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(t) => {
                    let c = t.claims;
                    let Some(client) = self.clients.iter().find(|cl| cl.id == c.client_id) else {
                        return Err("the access token's client is no longer configured");
                    };
                    return Ok(Principal {
                        name: client.id.clone(),
                        scopes: c
                            .scope
                            .into_iter()
                            .filter(|s| client.scopes.contains(s))
                            .collect(),
                    });
                }
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    expired = true;
                }
                Err(_) => {}
            }
        }
        Err(if expired {
            "the access token has expired: get a new one from POST /oauth/token"
        } else {
            "the access token is not valid"
        })
    }
}
