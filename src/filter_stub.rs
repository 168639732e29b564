//! Placeholder until the JSONPath filter engine lands: every filter is refused at config load, so no
//! subscription silently matches everything.

#[derive(Debug, Clone)]
pub struct Filter;

#[derive(Debug, thiserror::Error)]
#[error("JSONPath filters are not available in this build yet at position 0")]
pub struct FilterError;

#[derive(Debug, thiserror::Error)]
#[error("unsupported")]
pub struct EvalError;

impl Filter {
    pub fn compile(_expr: &str) -> Result<Filter, FilterError> {
        Err(FilterError)
    }
    pub fn evaluate(&self, _doc: &serde_json::Value) -> Result<bool, EvalError> {
        Err(EvalError)
    }
}
