//! Ingress authentication, as an ISC subscription's `httpConfig` sends it: `Authorization: Basic …` or
//! `Authorization: Bearer …`, several credentials at once so a secret can be rotated.
//!
//! Comparison is constant-time: the presented credential is hashed (SHA-256) and compared with every configured
//! digest with `subtle`, without early exit, so neither content nor length nor which credential matched leaks
//! through timing. Secrets are kept only as digests and never logged.

use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

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

#[derive(Clone)]
pub struct Authenticator {
    none: bool,
    basic: Vec<[u8; 32]>,
    bearer: Vec<[u8; 32]>,
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
        Self {
            none: c.none,
            basic: c
                .basic
                .iter()
                .map(|b| digest(format!("{}:{}", b.username, b.password.expose()).as_bytes()))
                .collect(),
            bearer: c
                .bearer_tokens
                .iter()
                .map(|t| digest(t.expose().as_bytes()))
                .collect(),
        }
    }

    /// `WWW-Authenticate` for a 401.
    pub fn challenge(&self) -> &'static str {
        if self.basic.is_empty() {
            "Bearer"
        } else {
            "Basic realm=\"trigger-relay\""
        }
    }

    pub fn check(&self, header: Option<&HeaderValue>) -> Result<(), AuthError> {
        if self.none {
            return Ok(());
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
        for d in set {
            ok |= d.ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}
