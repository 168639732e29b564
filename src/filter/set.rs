//! The filters of one trigger, evaluated as a set: what the ingress runs once per event for all of a trigger's
//! subscriptions, so that fan-out to many filtered subscriptions costs what their *distinct* filters cost.
//!
//! Today's one sharing rule: filters with the same source text are compiled and evaluated once per event, and
//! every subscription that has it gets that one verdict (ISC's documentation and real tenants repeat filters:
//! ten subscriptions of `$[?($.identity.name == "…")]` for ten teams). The event's [`EventBudget`] is shared
//! among the distinct filters only, so each gets at least the share it had when every copy was evaluated.
//!
//! The contract every later sharing rule (common path prefixes, hash-indexed equality) must keep: the verdict of
//! each member is the verdict [`Filter::evaluate_in`] gives alone, including its errors (fail closed). A
//! differential property test (`tests/filter_props.rs`) and the `filter_set` fuzz target hold the set to the
//! per-filter evaluator (the oracle) on generated documents and generated sets with repeats. The one deliberate
//! difference is the budget: a set whose copies would have split it gives each distinct filter more, so a
//! filter that ran out of its share alone may get a verdict in the set.

use super::{EvalError, EventBudget, Filter};

/// The filters of a trigger's routes, in route order (`None`: a route without a filter).
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    /// Per member: the index of its filter in `distinct`.
    slots: Vec<Option<u32>>,
    distinct: Vec<Filter>,
}

impl FilterSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the next member (the next route).
    pub fn push(&mut self, filter: Option<&Filter>) {
        let slot = filter.map(|f| {
            match self
                .distinct
                .iter()
                .position(|d| d.source().trim() == f.source().trim())
            {
                Some(i) => i as u32,
                None => {
                    self.distinct.push(f.clone());
                    (self.distinct.len() - 1) as u32
                }
            }
        });
        self.slots.push(slot);
    }

    /// Members (routes), with or without a filter.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Filters evaluated per event (the shares of its budget).
    pub fn distinct(&self) -> usize {
        self.distinct.len()
    }

    /// Evaluate every distinct filter once on `doc`, within `budget`.
    pub fn evaluate(&self, doc: &serde_json::Value, budget: &mut EventBudget) -> Verdicts<'_> {
        Verdicts {
            set: self,
            results: self
                .distinct
                .iter()
                .map(|f| f.evaluate_in(doc, budget))
                .collect(),
        }
    }
}

/// The verdicts of one event.
pub struct Verdicts<'a> {
    set: &'a FilterSet,
    results: Vec<Result<bool, EvalError>>,
}

impl Verdicts<'_> {
    /// Member `i`'s verdict: `None` when it has no filter (it takes every event).
    pub fn get(&self, i: usize) -> Option<&Result<bool, EvalError>> {
        self.set
            .slots
            .get(i)
            .copied()
            .flatten()
            .map(|s| &self.results[s as usize])
    }
}
