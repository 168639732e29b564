//! Webhook credentials at rest: sealed with AES-256-GCM (ring, which the TLS stack already links) before they
//! reach a store, so whoever can read the bucket or the file does not read the credentials.
//!
//! A sealed secret is the string `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, a fresh random
//! 96-bit nonce each time. The key is `api.store_key` (any string of at least 32 bytes; the AES key is its
//! SHA-256); `api.store_old_keys` still open what older keys sealed, so a key is rotated by moving it there.
//! The key id (8 hex digits of a hash of the key) says which key sealed a value, and names a missing key in
//! the error. Without a key (allowed for the `file` store only) secrets are stored in clear, as before.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";
/// Binds a sealed value to its use: a sealed string from anywhere else does not open here.
const AAD: &[u8] = b"trigger-relay subscription secret v1";

struct Key {
    id: String,
    key: Option<LessSafeKey>,
}

impl Key {
    fn new(secret: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let id_digest = Sha256::digest([b"trigger-relay key id:".as_slice(), &digest].concat());
        let id = id_digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        // A 32-byte key is exactly AES-256's size, so `UnboundKey::new` cannot refuse it.
        let key = UnboundKey::new(&AES_256_GCM, &digest)
            .map(LessSafeKey::new)
            .ok();
        Self { id, key }
    }
}

/// Seals with the current key, opens with any configured one.
pub struct Sealer {
    current: Option<Key>,
    old: Vec<Key>,
    rng: SystemRandom,
}

impl Sealer {
    pub fn new(api: &crate::config::ApiConfig) -> Self {
        Self {
            current: api.store_key.as_ref().map(|k| Key::new(k.expose())),
            old: api
                .store_old_keys
                .iter()
                .map(|k| Key::new(k.expose()))
                .collect(),
            rng: SystemRandom::new(),
        }
    }

    #[cfg(test)]
    pub fn for_tests(key: Option<&str>) -> Self {
        Self {
            current: key.map(Key::new),
            old: Vec::new(),
            rng: SystemRandom::new(),
        }
    }

    /// `secret`, sealed (or as it is, without a key).
    pub fn seal(&self, secret: &str) -> Result<String, String> {
        let Some(k) = &self.current else {
            return Ok(secret.to_string());
        };
        let mut nonce = [0u8; NONCE_LEN];
        // Never seal with a predictable nonce: without randomness, nothing is written.
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system random number generator failed")?;
        let mut out = secret.as_bytes().to_vec();
        let key = k.key.as_ref().ok_or("the store key is not usable")?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(AAD),
            &mut out,
        )
        .map_err(|_| "a secret could not be sealed")?;
        let mut all = nonce.to_vec();
        all.extend_from_slice(&out);
        Ok(format!(
            "{PREFIX}{}:{}",
            k.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(all)
        ))
    }

    /// The secret in `text` (a sealed string, or a secret in clear written without a key).
    pub fn open(&self, text: &str) -> Result<String, String> {
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Ok(text.to_string());
        };
        let (id, data) = rest.split_once(':').ok_or("a sealed secret is malformed")?;
        let key = self
            .current
            .iter()
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                format!("a secret was sealed with key {id}, which is not configured: add that key to api.store_old_keys")
            })?;
        let mut all = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| "a sealed secret is malformed")?;
        if all.len() < NONCE_LEN {
            return Err("a sealed secret is malformed".into());
        }
        let mut body = all.split_off(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&all).map_err(|_| "a sealed secret is malformed")?;
        let plain = key
            .key
            .as_ref()
            .ok_or("the store key is not usable")?
            .open_in_place(nonce, Aad::from(AAD), &mut body)
            .map_err(|_| format!("a secret sealed with key {id} does not open (altered, or another key with that id)"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| "a sealed secret is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_rotates() {
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        let old = Sealer::for_tests(Some(&a));
        let sealed = old.seal("hunter2-webhook-token").unwrap();
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            old.seal("hunter2-webhook-token").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(old.open(&sealed).unwrap(), "hunter2-webhook-token");
        // Rotated: the new key seals, the old one still opens.
        let rotated = Sealer {
            current: Some(Key::new(&b)),
            old: vec![Key::new(&a)],
            rng: SystemRandom::new(),
        };
        assert_eq!(rotated.open(&sealed).unwrap(), "hunter2-webhook-token");
        // Without the old key: an error naming what to configure.
        let new_only = Sealer::for_tests(Some(&b));
        assert!(new_only
            .open(&sealed)
            .unwrap_err()
            .contains("api.store_old_keys"));
        // Altered: refused.
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open(&bad).is_err());
        // In clear (a store written without a key) opens as it is.
        assert_eq!(Sealer::for_tests(None).open("plain").unwrap(), "plain");
    }
}
