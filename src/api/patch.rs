//! JSON Patch (RFC 6902) on a subscription: the pure part of the API's `PATCH /trigger-subscriptions/{id}`.
//!
//! [`apply_patch`] takes the request body and the current subscription and gives the patched subscription,
//! validated as a PUT is, or the API error to answer. The handler calls it after the content type, the lookup and
//! the read-only check, and then only counts subscriptions per trigger and commits. It is public so that the
//! `json_patch` fuzz target (`fuzz/fuzz_targets/json_patch.rs`) and `tests/fuzz_regressions.rs` drive exactly the
//! code the API runs, without a listener, a token and a store on disk.

use serde_json::Value;

use super::{bad_request, document, parse, replacement};
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
];

/// Apply the JSON Patch `body` to `current` (as the API shows it, secrets `null`) and validate the result like a
/// PUT: only [`PATCHABLE`] fields and the operations add, remove, replace, move and copy; the id and the
/// `triggerId` stay; a secret the result leaves `null` keeps its stored value; every config check passes.
///
/// Every error is a 400 (the body is not a patch, the patch does not apply, the result is not a valid
/// subscription), never a server error.
pub fn apply_patch(
    config: &Config,
    current: &Subscription,
    body: &[u8],
) -> Result<Subscription, ApiError> {
    let ops: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| bad_request("the body is not a JSON Patch array").cause(e.to_string()))?;
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
    json_patch::patch(&mut doc, &patch)
        .map_err(|e| bad_request("the patch does not apply").cause(e.to_string()))?;
    let new = parse(doc.to_string().as_bytes())?;
    replacement(config, current, new)
}
