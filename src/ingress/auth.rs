//! Ingress authentication, as an ISC subscription's `httpConfig` sends it: `Authorization: Basic …` or
//! `Authorization: Bearer …`, several credentials at once so a secret can be rotated.
//!
//! Comparison is constant-time: the presented credential is hashed (SHA-256) and compared with every configured
//! digest with `subtle`, without early exit, so neither content nor length nor which credential matched leaks
//! through timing; which one matched is picked with a constant-time select. Secrets are kept only as digests and
//! never logged. [`Authenticator::check`] tells the caller which credential matched (a [`Credential`]: the Basic
//! username or the index of the bearer token, never the secret), for the per-credential rate limit.

use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::config::AuthConfig;

/// Why a request was not authenticated (the text goes into ISC's `{"error": …}` 401 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("unsupported Authorization scheme: use Basic or Bearer")]
    Scheme,
    #[error("invalid credentials")]
    Invalid,
}

impl AuthError {
    /// A retry with the same request will not succeed.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// Which configured credential a request presented. Basic credentials with the same username (a password being
/// rotated) are one credential; each bearer token is its own. Names come from [`Authenticator::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credential(u32);

impl Credential {
    /// `none = true`: every request is this one.
    pub const ANONYMOUS: Credential = Credential(0);
}

#[derive(Clone)]
pub struct Authenticator {
    none: bool,
    /// Digest of `username:password`, and the credential it is.
    basic: Vec<([u8; 32], Credential)>,
    bearer: Vec<([u8; 32], Credential)>,
    /// By credential index: `none`, `basic:USERNAME`, `bearer_tokens[i]`.
    names: Vec<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("none", &self.none)
            .field("basic", &self.basic.len())
            .field("bearer", &self.bearer.len())
            .finish()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Authenticator {
    pub fn new(c: &AuthConfig) -> Self {
        let mut names = vec!["none".to_string()];
        let mut id_of = |name: String| {
            let i = names.iter().position(|n| *n == name).unwrap_or_else(|| {
                names.push(name);
                names.len() - 1
            });
            Credential(i as u32)
        };
        let basic = c
            .basic
            .iter()
            .map(|b| {
                (
                    digest(format!("{}:{}", b.username, b.password.expose()).as_bytes()),
                    id_of(format!("basic:{}", b.username)),
                )
            })
            .collect();
        let bearer = c
            .bearer_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    digest(t.expose().as_bytes()),
                    id_of(format!("bearer_tokens[{i}]")),
                )
            })
            .collect();
        Self {
            none: c.none,
            basic,
            bearer,
            names,
        }
    }

    /// How many distinct credentials there are (the size of a per-credential table).
    pub fn credentials(&self) -> usize {
        self.names.len()
    }

    /// A credential's name for logs and error causes: `none`, `basic:USERNAME` or `bearer_tokens[i]`.
    pub fn name(&self, c: Credential) -> &str {
        self.names
            .get(c.0 as usize)
            .map(String::as_str)
            .unwrap_or("none")
    }

    /// `WWW-Authenticate` for a 401.
    pub fn challenge(&self) -> &'static str {
        if self.basic.is_empty() {
            "Bearer"
        } else {
            "Basic realm=\"trigger-relay\""
        }
    }

    /// Authenticate `Authorization`; on success, which credential it was.
    pub fn check(&self, header: Option<&HeaderValue>) -> Result<Credential, AuthError> {
        if self.none {
            return Ok(Credential::ANONYMOUS);
        }
        let value = header.ok_or(AuthError::Missing)?.as_bytes();
        let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], value[i + 1..].trim_ascii()),
            None => (value, &b""[..]),
        };
        let (presented, set) = if scheme.eq_ignore_ascii_case(b"basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Invalid)?;
            (digest(&decoded), &self.basic)
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            (digest(rest), &self.bearer)
        } else {
            return Err(AuthError::Scheme);
        };
        let mut ok = Choice::from(0);
        let mut which = 0u32;
        for (d, c) in set {
            let eq = d.ct_eq(&presented);
            which.conditional_assign(&c.0, eq);
            ok |= eq;
        }
        if bool::from(ok) {
            Ok(Credential(which))
        } else {
            Err(AuthError::Invalid)
        }
    }
}
