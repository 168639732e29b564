//! The load benches' request bodies: ISC's example invocations from the built-in catalog, grown to 0.5–8 KB the
//! way real events grow, each sent with a fresh invocation id. Shared by the load bench and the probe
//! microbenchmark (`benches/probe.rs`), so both measure the same bodies.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// The triggers of the payload mix: an attribute change, a creation, an access request, a provisioning result.
pub const MIX: &[&str] = &[
    "idn:identity-attributes-changed",
    "idn:identity-created",
    "idn:access-request-post-approval",
    "idn:post-provisioning",
];

/// One request template: the body with a 36-byte placeholder where the invocation id goes.
#[derive(Clone)]
pub struct Template {
    pub trigger: String,
    pub path: String,
    pub body: Vec<u8>,
    id_at: usize,
}

pub struct Payloads {
    templates: Vec<Template>,
    nonce: u32,
    seq: AtomicU64,
}

const PLACEHOLDER: &str = "00000000-0000-4000-8000-000000000000";
pub const SIZES: &[usize] = &[512, 1024, 2048, 4096, 8192];

impl Payloads {
    /// ISC's example invocation of each trigger, padded to every size of [`SIZES`].
    pub fn new(triggers: &[&str]) -> Self {
        let catalog = trigger_relay::catalog::Catalog::builtin();
        let mut templates = Vec::new();
        for &size in SIZES {
            for t in triggers {
                let mut v = catalog
                    .example_invocation(t, PLACEHOLDER)
                    .unwrap_or_else(|| panic!("{t} is not in the catalog"));
                pad(&mut v, size);
                let body = serde_json::to_vec(&v).unwrap();
                let id_at = find(&body, PLACEHOLDER.as_bytes()).expect("placeholder");
                templates.push(Template {
                    trigger: t.to_string(),
                    path: format!("/events/{t}"),
                    body,
                    id_at,
                });
            }
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            ^ std::process::id();
        Self {
            templates,
            nonce,
            seq: AtomicU64::new(0),
        }
    }

    /// This run's nonce (in every invocation id), to name the run's topics and streams.
    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    /// How many templates (triggers × sizes); never zero, `new` builds at least one per size.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn mean_size(&self) -> usize {
        self.templates.iter().map(|t| t.body.len()).sum::<usize>() / self.templates.len()
    }

    pub fn sizes(&self) -> (usize, usize) {
        let min = self.templates.iter().map(|t| t.body.len()).min().unwrap();
        let max = self.templates.iter().map(|t| t.body.len()).max().unwrap();
        (min, max)
    }

    /// The next body (templates in turn), with a fresh invocation id.
    pub fn next(&self) -> (&Template, Bytes, String) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = &self.templates[(n % self.templates.len() as u64) as usize];
        let id = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            self.nonce,
            (n >> 48) as u16,
            n & 0xffff_ffff_ffff
        );
        let mut body = t.body.clone();
        body[t.id_at..t.id_at + 36].copy_from_slice(id.as_bytes());
        (t, Bytes::from(body), id)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Grow an example to about `size` bytes the way real events grow: more entries in its first array of objects
/// (`changes`, `requestedItemsStatus`, `accountRequests`), otherwise more keys in an `attributes` object.
fn pad(v: &mut serde_json::Value, size: usize) {
    use serde_json::{json, Value};
    let len = |v: &Value| serde_json::to_vec(v).unwrap().len();
    let obj = v.as_object_mut().unwrap();
    let array_key = obj
        .iter()
        .find(|(k, x)| {
            *k != "_metadata"
                && x.as_array()
                    .is_some_and(|a| a.first().is_some_and(Value::is_object))
        })
        .map(|(k, _)| k.clone());
    let mut i = 0;
    loop {
        if len(v) >= size {
            return;
        }
        let obj = v.as_object_mut().unwrap();
        match &array_key {
            Some(k) => {
                let arr = obj.get_mut(k).unwrap().as_array_mut().unwrap();
                let mut e = arr[0].clone();
                // Vary the attribute names so filters see different entries.
                if let Some(a) = e.get_mut("attribute") {
                    *a = json!(format!("attribute{i}"));
                }
                arr.push(e);
            }
            None => {
                let attrs = obj
                    .entry("attributes")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
                attrs.insert(
                    format!("customAttribute{i}"),
                    json!(format!("value {i} of a custom identity attribute")),
                );
            }
        }
        i += 1;
    }
}

/// 50 filters of the kinds ISC's documentation shows, on `idn:identity-attributes-changed`: some match every
/// event, some match the larger ones, some never match.
pub fn typical_filters() -> Vec<String> {
    (0..50)
        .map(|i| match i % 5 {
            0 => format!("$.changes[?(@.attribute == \"attribute{i}\")]"),
            1 => "$[?($.identity.name == \"William Wilson\")]".to_string(),
            2 => {
                "$.changes[?(@.attribute in [\"department\", \"title\", \"manager\"])]".to_string()
            }
            3 => "$.changes[?(@.attribute == \"department\" && @.newValue =~ /market.*/i)]"
                .to_string(),
            _ => format!("$[?($.identity.id == \"2c91808568c529c60168cca6f90c13{i:02}\")]"),
        })
        .collect()
}

/// Ten equality filters over one array (`$.changes[?(@.attribute == "attributeN")]`): filters that share a path.
pub fn shared_path_filters() -> Vec<String> {
    (0..10)
        .map(|i| format!("$.changes[?(@.attribute == \"attribute{i}\")]"))
        .collect()
}
