//! The trigger catalog: which trigger ids exist, their names, types and example inputs.
//!
//! The built-in part is a snapshot of ISC's GA triggers carried in `src/catalog/triggers.json` (provenance in
//! `src/catalog/PROVENANCE.md`); per tenant the authority is ISC's `GET /beta/triggers`, and tenants get new
//! triggers before any built-in list knows them, so `[[catalog.triggers]]` in the config extends it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// One `[[catalog.triggers]]` entry: a trigger the built-in catalog does not know yet.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogEntryConfig {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TriggerType,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub example_input: Option<serde_json::Value>,
}

const BUILTIN: &str = include_str!("catalog/triggers.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriggerType {
    FireAndForget,
    RequestResponse,
}

impl TriggerType {
    /// The value of `_metadata.triggerType` ISC sends.
    pub fn metadata_name(self) -> &'static str {
        match self {
            Self::FireAndForget => "fireAndForget",
            Self::RequestResponse => "requestResponse",
        }
    }
}

/// One trigger, in ISC's `Trigger` wire shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TriggerType,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<String>,
    #[serde(default)]
    pub example_input: Option<serde_json::Value>,
    #[serde(default)]
    pub output_schema: Option<String>,
    #[serde(default)]
    pub example_output: Option<serde_json::Value>,
    #[serde(default)]
    pub deprecated: bool,
}

/// Built-in triggers plus config extensions, looked up by id.
#[derive(Debug, Clone)]
pub struct Catalog {
    by_id: HashMap<String, Arc<TriggerInfo>>,
}

fn builtin_entries() -> &'static [Arc<TriggerInfo>] {
    static ENTRIES: OnceLock<Vec<Arc<TriggerInfo>>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        // The file is part of the binary and checked by a test; a broken one is a build defect.
        let list: Vec<TriggerInfo> =
            serde_json::from_str(BUILTIN).expect("src/catalog/triggers.json is valid");
        list.into_iter().map(Arc::new).collect()
    })
}

impl Catalog {
    /// The built-in triggers only.
    pub fn builtin() -> Self {
        Self {
            by_id: builtin_entries()
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
        }
    }

    /// Add a trigger from the config. A built-in id cannot be redefined (its type is a fact of ISC).
    pub fn extend(&mut self, e: &CatalogEntryConfig) -> Result<(), String> {
        if e.id.trim().is_empty() || e.id.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("`{}` is not a trigger id (no spaces or '/')", e.id));
        }
        if self.by_id.contains_key(&e.id) {
            return Err(format!("`{}` is already in the catalog", e.id));
        }
        let info = TriggerInfo {
            id: e.id.clone(),
            name: e.name.clone(),
            kind: e.kind,
            description: e.description.clone(),
            input_schema: None,
            example_input: e.example_input.clone(),
            output_schema: None,
            example_output: None,
            deprecated: false,
        };
        self.by_id.insert(e.id.clone(), Arc::new(info));
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Arc<TriggerInfo>> {
        self.by_id.get(id)
    }

    /// Every trigger, sorted by id.
    pub fn all(&self) -> Vec<Arc<TriggerInfo>> {
        let mut v: Vec<_> = self.by_id.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// An example invocation body for a trigger: its example input with ISC's `_metadata` added.
    pub fn example_invocation(&self, id: &str, invocation_id: &str) -> Option<serde_json::Value> {
        let t = self.get(id)?;
        let mut body = match t.example_input.clone() {
            Some(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        body.insert(
            "_metadata".into(),
            serde_json::json!({
                "triggerType": t.kind.metadata_name(),
                "invocationId": invocation_id,
                "triggerId": t.id,
            }),
        );
        Some(serde_json::Value::Object(body))
    }
}
