//! JSON Patch (RFC 6902) on a subscription: the pure part of the API's `PATCH /trigger-subscriptions/{id}`.
//!
//! [`apply_patch`] takes the request body and the current subscription and gives the patched subscription,
//! validated as a PUT is, or the API error to answer. The handler calls it after the content type, the lookup and
//! the read-only check, and then only counts subscriptions per trigger and commits. It is public so that the
//! `json_patch` fuzz target (`fuzz/fuzz_targets/json_patch.rs`) and `tests/it/fuzz_regressions.rs` drive exactly the
//! code the API runs, without a listener, a token and a store on disk.

use json_patch::PatchOperation;
use serde_json::Value;

use super::bad_request;
use super::subscriptions::{document, parse, replacement};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::Subscription;

/// The fields a PATCH may touch (ISC's list, plus the relay's own configs).
pub const PATCHABLE: &[&str] = &[
    "name",
    "description",
    "enabled",
    "type",
    "filter",
    "responseDeadline",
    "httpConfig",
    "eventBridgeConfig",
    "workflowConfig",
    "kafkaConfig",
    "natsConfig",
    "ackMode",
    "deadLetter",
    "envelope",
    "cloudEvents",
];

/// The largest a patched subscription may get, serialised (as large as a request body may be).
pub const MAX_PATCHED_BYTES: usize = super::MAX_BODY;

/// The most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// Apply the JSON Patch `body` to `current` (as the API shows it, secrets `null`) and validate the result like a
/// PUT: only [`PATCHABLE`] fields and the operations add, remove, replace, move and copy; the id and the
/// `triggerId` stay; a secret the result leaves `null` keeps its stored value; every config check passes.
///
/// Every error is a 400 (the body is not a patch, the patch does not apply, its copies would grow the subscription
/// past [`MAX_PATCHED_BYTES`], the result is not a valid subscription), never a server error.
pub fn apply_patch(
    config: &Config,
    current: &Subscription,
    body: &[u8],
) -> Result<Subscription, ApiError> {
    let ops: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| bad_request("the body is not a JSON Patch array").cause(e.to_string()))?;
    // A subscription has a handful of patchable fields; thousands of operations (e.g. inserts at the front of an
    // array, each a memmove) are only a way to burn CPU in code no timeout can interrupt.
    if ops.len() > MAX_OPERATIONS {
        return Err(bad_request("too many JSON Patch operations").cause(format!(
            "{} operations; at most {MAX_OPERATIONS} in one PATCH",
            ops.len()
        )));
    }
    for (i, op) in ops.iter().enumerate() {
        let kind = op["op"].as_str().unwrap_or("");
        if !matches!(kind, "add" | "remove" | "replace" | "move" | "copy") {
            return Err(
                bad_request("unsupported JSON Patch operation").cause(format!(
                    "[{i}].op: `{kind}`: use add, remove, replace, move or copy"
                )),
            );
        }
        for key in ["path", "from"] {
            let Some(p) = op.get(key).and_then(Value::as_str) else {
                continue;
            };
            let field = p.trim_start_matches('/').split('/').next().unwrap_or("");
            if !PATCHABLE.contains(&field) {
                return Err(bad_request("this field cannot be patched").cause(format!(
                    "[{i}].{key}: `{p}`: patchable fields are {}",
                    PATCHABLE.join(", ")
                )));
            }
        }
    }
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| bad_request("the body is not a valid JSON Patch").cause(e.to_string()))?;
    let mut doc = document(current);
    // `copy` can double the document at each operation: a few kilobytes of patch would take all the memory. The
    // size before the patch plus everything copied (what add and replace bring is bounded by the body, which the
    // handler bounds) must stay under the limit, checked before each copy; removals are not credited.
    let mut size = json_len(&doc);
    for (i, op) in patch.0.iter().enumerate() {
        if let PatchOperation::Copy(c) = op {
            size += doc.pointer(c.from.as_str()).map_or(0, json_len);
            if size > MAX_PATCHED_BYTES {
                return Err(
                    bad_request("the patched subscription is too large").cause(format!(
                        "[{i}].from: `{}`: the subscription would exceed {MAX_PATCHED_BYTES} bytes",
                        c.from
                    )),
                );
            }
        }
        // One operation at a time (the index in the error is ours); a failed patch leaves `doc` half-patched,
        // and it is dropped.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            bad_request("the patch does not apply").cause(e.to_string())
        })?;
    }
    let new = parse(doc.to_string().as_bytes())?;
    replacement(config, current, new)
}

/// The length of `v` serialised, without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests;
