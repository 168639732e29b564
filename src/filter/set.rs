//! The filters of one trigger, evaluated as a set: what the ingress runs once per event for all of a trigger's
//! subscriptions, so that fan-out to many filtered subscriptions costs what their *distinct* filters cost.
//!
//! Two sharing rules:
//! - **Identical filters once.** Filters with the same source text are evaluated once per event, and every
//!   subscription that has it gets that one verdict (ISC's documentation and real tenants repeat filters: ten
//!   subscriptions of `$[?($.identity.name == "…")]` for ten teams). The event's [`EventBudget`] is shared among
//!   the distinct filters only, so each gets at least the share it had when every copy was evaluated.
//! - **Equality on one path, through a hash index** (the counting idea of content-based publish/subscribe:
//!   the cost grows with the filters that can match, not with all of them). Filters of the form
//!   `$[?(P == 'lit')]` (P a simple path such as `$.identity.id` or `@.source.name`) with the same P form one
//!   group, and so do `$.A[?(@.Q == 'lit')]` with the same simple A and Q (ten filters over
//!   `$.changes[?(@.attribute == "…")]` walk `changes` once). Per event P (or A and each element's Q) is read
//!   once and the literals looked up in the group's map: a filter whose literal is a value read matches, every
//!   other member does not, none of them evaluated (the cost is one read of the path). The index is
//!   used only where that is exactly what Jayway answers: a JSON object payload, P resolving to a string (and A
//!   to an array of objects whose Q is a string or absent); anything else (a number, `null`, a missing P, an
//!   element that is not an object) evaluates every member as before.
//!
//! - **Only what the filters read is parsed.** The set keeps the union of its filters' [`Needs`]: per event
//!   [`FilterSet::parse`] builds a document holding only the members their paths can reach (`needs.rs`).
//!
//! The contract every later sharing rule (common path prefixes, hash-indexed equality) must keep: the verdict of
//! each member is the verdict [`Filter::evaluate_in`] gives alone, including its errors (fail closed). A
//! differential property test (`props.rs`) and the `filter_set` fuzz target hold the set to the
//! per-filter evaluator (the oracle) on generated documents and generated sets with repeats. The one deliberate
//! difference is the budget: a set whose copies would have split it gives each distinct filter more, so a
//! filter that ran out of its share alone may get a verdict in the set.

use std::collections::HashMap;

use super::parser::{Lit, Op, Operand, Path, Pred, SegKind};
use super::{EvalError, EventBudget, Filter, Needs};

/// The filters of a trigger's routes, in route order (`None`: a route without a filter).
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    /// Per member: the index of its filter in `distinct`.
    slots: Vec<Option<u32>>,
    distinct: Vec<Filter>,
    /// Equality filters grouped by the path they compare (see the module doc).
    groups: Vec<Group>,
    /// What the distinct filters can read of an event (`needs.rs`): what [`FilterSet::parse`] builds.
    needs: Needs,
}

/// A part of a simple path, as a group's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Prop(Box<str>),
    Index(i32),
}

/// Where a group's filters read their value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// `$[?(P == 'lit')]`: P, and whether it starts at `$` (else `@`, the payload itself).
    Root(bool, Vec<Part>),
    /// `$.A[?(@.Q == 'lit')]`: A and Q.
    Elements(Vec<Part>, Vec<Part>),
}

#[derive(Debug, Clone)]
struct Group {
    key: Key,
    /// `A` for `Elements` (a `$` path), else unused.
    array: Option<Path>,
    /// P, or Q.
    operand: Path,
    /// Literal → the distinct filters comparing with it.
    by_literal: HashMap<Box<str>, Vec<u32>>,
    members: Vec<u32>,
}

/// The parts of a simple path, or `None` when it has other segments.
fn parts(p: &[super::parser::Seg]) -> Option<Vec<Part>> {
    p.iter()
        .map(|s| match &s.kind {
            SegKind::Prop(n) => Some(Part::Prop(n.clone())),
            SegKind::Index(i) => Some(Part::Index(*i)),
            _ => None,
        })
        .collect()
}

/// The group key, paths and literal of an equality filter the index can decide, if `f` is one.
fn indexable(f: &Filter) -> Option<(Key, Option<Path>, Path, Box<str>)> {
    let p = &*f.path;
    if !p.root_is_doc || p.inverted_fn {
        return None;
    }
    let (last, before) = p.segs.split_last()?;
    let SegKind::Filter(pred) = &last.kind else {
        return None;
    };
    let (q, lit) = match &**pred {
        Pred::Cmp {
            left: Operand::Path(q),
            op: Op::Eq,
            right: Operand::Lit(Lit::Str(s)),
        }
        | Pred::Cmp {
            left: Operand::Lit(Lit::Str(s)),
            op: Op::Eq,
            right: Operand::Path(q),
        } => (q, s),
        _ => return None,
    };
    if q.inverted_fn {
        return None;
    }
    let q_parts = parts(&q.segs)?;
    if before.is_empty() {
        return Some((
            Key::Root(q.root_is_doc, q_parts),
            None,
            q.clone(),
            lit.clone(),
        ));
    }
    if q.root_is_doc {
        return None;
    }
    let a_parts = parts(before)?;
    let array = Path {
        root_is_doc: true,
        segs: before.to_vec(),
        definite: true,
        inverted_fn: false,
        simple: true,
    };
    Some((
        Key::Elements(a_parts, q_parts),
        Some(array),
        q.clone(),
        lit.clone(),
    ))
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
                    self.needs.merge(Needs::of(f));
                    self.distinct.push(f.clone());
                    let i = (self.distinct.len() - 1) as u32;
                    if let Some((key, array, operand, lit)) = indexable(f) {
                        let g = match self.groups.iter().position(|g| g.key == key) {
                            Some(g) => &mut self.groups[g],
                            None => {
                                self.groups.push(Group {
                                    key,
                                    array,
                                    operand,
                                    by_literal: HashMap::new(),
                                    members: Vec::new(),
                                });
                                self.groups.last_mut().expect("just pushed")
                            }
                        };
                        g.by_literal.entry(lit).or_default().push(i);
                        g.members.push(i);
                    }
                    i
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

    /// What the filters can read of an event.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// The part of `body` the filters can read, as a document to [`evaluate`](Self::evaluate) them on: their
    /// verdicts on it are their verdicts on the whole body, and it refuses exactly what the whole parse refuses
    /// (`needs.rs`).
    pub fn parse(&self, body: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
        self.needs.parse(body)
    }

    /// Filters evaluated per event (the shares of its budget).
    pub fn distinct(&self) -> usize {
        self.distinct.len()
    }

    /// Evaluate every distinct filter at most once on `doc`, within `budget`: the index decides the members of
    /// a group it can (module doc), the rest are evaluated.
    pub fn evaluate(&self, doc: &serde_json::Value, budget: &mut EventBudget) -> Verdicts<'_> {
        // One allocation per event: the verdicts, filled in place by the index, then by evaluation.
        let mut results: Vec<Option<Result<bool, EvalError>>> = vec![None; self.distinct.len()];
        if doc.is_object() {
            for g in &self.groups {
                g.decide(doc, &mut results);
            }
        }
        for (slot, f) in results.iter_mut().zip(&self.distinct) {
            match slot {
                Some(_) => budget.skip(),
                None => *slot = Some(f.evaluate_in(doc, budget)),
            }
        }
        Verdicts { set: self, results }
    }
}

/// The verdicts of one event.
pub struct Verdicts<'a> {
    set: &'a FilterSet,
    /// Per distinct filter; every one is `Some` once [`FilterSet::evaluate`] returns.
    results: Vec<Option<Result<bool, EvalError>>>,
}

impl Verdicts<'_> {
    /// Member `i`'s verdict: `None` when it has no filter (it takes every event).
    pub fn get(&self, i: usize) -> Option<&Result<bool, EvalError>> {
        let slot = self.set.slots.get(i).copied().flatten()?;
        self.results[slot as usize].as_ref()
    }
}

impl Group {
    /// Decide this group's members in `results` when the index can (module doc): every member a non-match, then
    /// the members whose literal is a value read a match. Left undecided (`None`) otherwise.
    fn decide(&self, doc: &serde_json::Value, results: &mut [Option<Result<bool, EvalError>>]) {
        use serde_json::Value;
        let mut set = |hits: &[u32], v: bool| {
            for &m in hits {
                results[m as usize] = Some(Ok(v));
            }
        };
        let lookup = |s: &str| {
            self.by_literal
                .get(s)
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        match &self.key {
            Key::Root(..) => {
                let Some(Value::String(s)) = super::eval::resolve_plain(&self.operand, doc) else {
                    return;
                };
                set(&self.members, false);
                // The value read is the literal, a string equal to a string: Jayway's `==` holds, and with no
                // other segment after the filter the result is not empty.
                set(lookup(s), true);
            }
            Key::Elements(..) => {
                let Some(Value::Array(items)) = self
                    .array
                    .as_ref()
                    .and_then(|a| super::eval::resolve_plain(a, doc))
                else {
                    return;
                };
                // Only arrays of objects whose value is a string or absent: read once to check, once to decide.
                let decidable = items.iter().all(|item| {
                    item.is_object()
                        && matches!(
                            super::eval::resolve_plain(&self.operand, item),
                            None | Some(Value::String(_))
                        )
                });
                if !decidable {
                    return;
                }
                set(&self.members, false);
                for item in items {
                    if let Some(Value::String(s)) = super::eval::resolve_plain(&self.operand, item)
                    {
                        set(lookup(s), true);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps a set of `filters` uses on `doc` (a budget far beyond them).
    fn steps(filters: &[String], doc: &serde_json::Value) -> u64 {
        let mut set = FilterSet::new();
        let compiled: Vec<Filter> = filters
            .iter()
            .map(|f| Filter::compile(f).unwrap())
            .collect();
        for f in &compiled {
            set.push(Some(f));
        }
        let total = 1 << 40;
        let mut budget = EventBudget::with_steps(total, set.distinct());
        set.evaluate(doc, &mut budget);
        total - budget.remaining()
    }

    /// The index is used: ten equality filters on one path cost less than one of them evaluated alone.
    #[test]
    fn equality_filters_on_one_path_cost_less_than_one_evaluation() {
        let doc = serde_json::json!({
            "identity": {"name": "n7"},
            "changes": [{"attribute": "a1"}, {"attribute": "a7"}, {"attribute": "x"}],
        });
        for shape in [
            "$[?($.identity.name == 'nN')]",
            "$.changes[?(@.attribute == 'aN')]",
        ] {
            let alone = Filter::compile(&shape.replace('N', "7")).unwrap();
            let mut budget = EventBudget::with_steps(1 << 40, 1);
            assert_eq!(alone.evaluate_in(&doc, &mut budget), Ok(true));
            let one = (1 << 40) - budget.remaining();
            let ten: Vec<String> = (0..10)
                .map(|i| shape.replace('N', &i.to_string()))
                .collect();
            let with_index = steps(&ten, &doc);
            assert!(one > 0);
            assert!(
                with_index < one,
                "{shape}: ten cost {with_index} steps, one alone {one}"
            );
        }
    }
}
