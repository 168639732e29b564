//! `/triggers` (the catalog this relay knows, in ISC's shape) and `validate-filter` (ISC's check of a JSONPath
//! filter against an input, run by [`crate::filter::validate`]).

use std::collections::HashMap;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::collection::Spec;
use super::{bad_request, json_response, ApiState, Resp};
use crate::catalog::TriggerType;
use crate::error::ApiError;

impl ApiState {
    pub(super) fn list_triggers(&self, query: &HashMap<String, String>) -> Result<Resp, ApiError> {
        let items = self
            .catalog
            .all()
            .iter()
            .map(|t| {
                let mut v = json!({
                    "id": t.id,
                    "name": t.name,
                    "type": match t.kind { TriggerType::FireAndForget => "FIRE_AND_FORGET", TriggerType::RequestResponse => "REQUEST_RESPONSE" },
                    "description": t.description,
                    "inputSchema": t.input_schema.clone().unwrap_or_else(|| "{}".into()),
                    "exampleInput": t.example_input.clone().unwrap_or_else(|| json!({})),
                });
                if t.kind == TriggerType::RequestResponse {
                    v["outputSchema"] = json!(t.output_schema);
                    v["exampleOutput"] = t.example_output.clone().unwrap_or(Value::Null);
                }
                v
            })
            .collect();
        Self::list(
            query,
            &Spec {
                filters: &[("id", &["eq", "ge", "le"])],
                sorters: &["id", "name"],
            },
            items,
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidateFilterInput {
    input: Value,
    filter: String,
}

/// ISC's validate-filter: does `filter` compile, and does it select something in `input`.
pub(super) fn validate_filter(body: &[u8]) -> Result<Resp, ApiError> {
    let v: ValidateFilterInput = serde_json::from_slice(body).map_err(|e| {
        bad_request("expected {\"input\": {...}, \"filter\": \"...\"}").cause(e.to_string())
    })?;
    let r = crate::filter::validate(&v.filter, &v.input);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(r).unwrap_or_default(),
    ))
}
