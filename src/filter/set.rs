//! The filters of one trigger, evaluated as a set: what the ingress runs once per event for all of a trigger's
//! subscriptions, so that fan-out to many filtered subscriptions costs what their *distinct* filters cost.
//!
//! The sharing rules:
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
//!   The test may also be `Q in ['a', 'b']` with string literals only (Jayway's `in` of a string in a list of
//!   strings is string equality with one of them: each literal points at the filter). And it may be the first
//!   part of a conjunction, `$.A[?(@.Q == 'lit' && R…)]`: the index passes the elements whose Q is a literal,
//!   and R is evaluated on those elements alone (R may read nothing through `$`). Jayway's `&&` evaluates its
//!   parts in order and stops at the first false one, so where the test fails, the per-filter evaluator does not
//!   evaluate R either: nothing R could raise there is lost. On the elements it passes, R is evaluated as
//!   the walker would (every element, an error on a later one fails the filter after a match).
//!
//! - **Only what the filters read is parsed.** The set keeps the union of its filters' [`Needs`]: per event
//!   [`FilterSet::parse`] builds a document holding only the members their paths can reach (`needs.rs`).
//! - **No tree at all where the index decides every filter.** When every distinct filter is in a group,
//!   [`FilterSet::evaluate_body`] (the router's way in) parses the body into `needs::Doc`, which borrows the
//!   strings the groups read from the body, and the groups decide on it; the elements a conjunction's rest is
//!   tested on are parsed from their text. The 50 typical filters of the load bench are all of these shapes.
//!   Where a group cannot decide there (a number where it compares strings), the projection and the evaluator
//!   run as above, with the budget as it was.
//!
//! The contract every later sharing rule (common path prefixes, hash-indexed equality) must keep: the verdict of
//! each member is the verdict [`Filter::evaluate_in`] gives alone, including its errors (fail closed). A
//! differential property test (`props.rs`) and the `filter_set` fuzz target hold the set to the
//! per-filter evaluator (the oracle) on generated documents and generated sets with repeats. The one deliberate
//! difference is the budget: a set whose copies would have split it gives each distinct filter more, so a
//! filter that ran out of its share alone may get a verdict in the set.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use super::needs::DocRef;
use super::parser::{Lit, LitItem, Op, Operand, Path, Pred, Seg, SegKind};
use super::{EvalError, EventBudget, Filter, Needs};

/// The filters of a trigger's routes, in route order (`None`: a route without a filter).
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    /// Per member: the index of its filter in `distinct`.
    slots: Vec<Option<u32>>,
    distinct: Vec<Filter>,
    /// Literal tests grouped by the path they read (see the module doc).
    groups: Vec<Group>,
    /// Distinct filters that are in a group.
    indexed: usize,
    /// What the distinct filters can read of an event (`needs.rs`): what [`FilterSet::parse`] builds.
    needs: Needs,
    /// What the groups read (their paths' values): what the borrowed parse of [`FilterSet::evaluate_body`]
    /// builds when every distinct filter is in a group.
    index_needs: Needs,
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
    /// `$[?(P == 'lit')]`: P, and whether it starts at `$` (else `@`, the payload itself: the same node).
    Root(bool, Vec<Part>),
    /// `$.A[?(@.Q == 'lit')]`: A and Q.
    Elements(Vec<Part>, Vec<Part>),
}

#[derive(Debug, Clone)]
struct Group {
    key: Key,
    /// Literal → the members (indexes into `members`) whose test it passes.
    by_literal: HashMap<Box<str>, Vec<u32>, foldhash::fast::RandomState>,
    members: Vec<Member>,
    /// The walker's recursion depth where it tests an element (`A`'s segments and the filter's own, as
    /// `eval.rs` counts them), for a member's `rest`.
    depth: u32,
}

#[derive(Debug, Clone)]
struct Member {
    /// Its index in `distinct`.
    filter: u32,
    /// The literals its test passes on.
    literals: Vec<Box<str>>,
    /// The rest of a conjunction whose first part is the test (`Elements` only): evaluated on the elements
    /// the test passes.
    rest: Option<Pred>,
}

/// The parts of a simple path, or `None` when it has other segments.
fn parts(p: &[Seg]) -> Option<Vec<Part>> {
    p.iter()
        .map(|s| match &s.kind {
            SegKind::Prop(n) => Some(Part::Prop(n.clone())),
            SegKind::Index(i) => Some(Part::Index(*i)),
            _ => None,
        })
        .collect()
}

/// A test the index can answer for a string value: `Q == 'lit'` (either side), or `Q in ['a', 'b']` with string
/// literals only. Its path and the literals it passes on (Jayway's `==` of a string to a string literal, and so
/// its `in`, is string equality; a list item Jayway turns into a path or node equals nothing).
fn literal_test(p: &Pred) -> Option<(&Path, Vec<Box<str>>)> {
    match p {
        Pred::Cmp {
            left: Operand::Path(q),
            op: Op::Eq,
            right: Operand::Lit(Lit::Str(s)),
        }
        | Pred::Cmp {
            left: Operand::Lit(Lit::Str(s)),
            op: Op::Eq,
            right: Operand::Path(q),
        } => Some((q, vec![s.clone()])),
        Pred::Cmp {
            left: Operand::Path(q),
            op: Op::In,
            right: Operand::Lit(Lit::Json(l)),
        } => {
            let Some(Ok(items)) = &l.items else {
                return None;
            };
            let mut literals = Vec::new();
            for it in items {
                match it {
                    LitItem::Str(s) => literals.push(s.clone()),
                    LitItem::Never => {}
                    _ => return None,
                }
            }
            Some((q, literals))
        }
        _ => None,
    }
}

/// A filter the index can decide: its group key, the literals, the rest of its conjunction, and what the
/// index reads of an event for it.
fn indexable(f: &Filter) -> Option<(Key, Member, u32, Needs)> {
    let p = &*f.path;
    if !p.root_is_doc || p.inverted_fn {
        return None;
    }
    let (last, before) = p.segs.split_last()?;
    let SegKind::Filter(pred) = &last.kind else {
        return None;
    };
    // `T && R…`: the index answers T; R is evaluated only where T passes. Jayway's `&&` stops at the first
    // false part, so R is never evaluated where T fails: nothing R could raise is lost.
    // R stays a conjunction (of one part, perhaps) so that its parts are evaluated at the recursion depth the
    // whole `&&` gives them.
    let (test, rest) = match &**pred {
        Pred::And(v) if v.len() >= 2 && !before.is_empty() => {
            (&v[0], Some(Pred::And(v[1..].to_vec())))
        }
        p => (p, None),
    };
    let (q, literals) = literal_test(test)?;
    if q.inverted_fn {
        return None;
    }
    let q_parts = parts(&q.segs)?;
    // The rest runs on the element alone: it may read nothing through `$`.
    if rest
        .as_ref()
        .is_some_and(|r| !super::needs::reads_only_its_node(r))
    {
        return None;
    }
    let member = |rest| Member {
        filter: 0,
        literals,
        rest,
    };
    if before.is_empty() {
        let key = Key::Root(q.root_is_doc, q_parts);
        return Some((key, member(None), 0, Needs::of_index(&[], q)));
    }
    if q.root_is_doc {
        return None;
    }
    let a_parts = parts(before)?;
    let depth = before.len() as u32 + 1;
    Some((
        Key::Elements(a_parts, q_parts),
        member(rest),
        depth,
        Needs::of_index(before, q),
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
                    if let Some((key, mut member, depth, reads)) = indexable(f) {
                        member.filter = i;
                        self.index_needs.merge(reads);
                        self.indexed += 1;
                        let g = match self.groups.iter().position(|g| g.key == key) {
                            Some(g) => &mut self.groups[g],
                            None => {
                                self.groups.push(Group {
                                    key,
                                    by_literal: HashMap::default(),
                                    members: Vec::new(),
                                    depth,
                                });
                                self.groups.last_mut().expect("just pushed")
                            }
                        };
                        let m = g.members.len() as u32;
                        for lit in &member.literals {
                            let hits = g.by_literal.entry(lit.clone()).or_default();
                            // A literal twice in one `in` list: the member once.
                            if hits.last() != Some(&m) {
                                hits.push(m);
                            }
                        }
                        g.members.push(member);
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
    pub fn parse(&self, body: &[u8]) -> Result<Value, serde_json::Error> {
        self.needs.parse(body)
    }

    /// Filters evaluated per event (the shares of its budget).
    pub fn distinct(&self) -> usize {
        self.distinct.len()
    }

    /// The verdicts on `body`, refusing what serde_json's whole parse refuses (with its error). When every
    /// distinct filter is in a group, the groups decide on a parse that borrows what they read from the body
    /// (`needs::Doc`) and builds no `serde_json::Value`; when they cannot all decide there (a value that is not a
    /// string, a path missing), or some filter is in no group, [`parse`](Self::parse) then
    /// [`evaluate`](Self::evaluate), with the budget as it was.
    pub fn evaluate_body(
        &self,
        body: &[u8],
        budget: &mut EventBudget,
    ) -> Result<Verdicts<'_>, serde_json::Error> {
        if let Some(v) = self.decide_borrowed(body, budget) {
            return Ok(v);
        }
        let doc = self.parse(body)?;
        Ok(self.evaluate(&doc, budget))
    }

    /// [`evaluate_body`](Self::evaluate_body)'s first way: the groups alone on the borrowed parse, when they
    /// decide every distinct filter; `None` (the budget untouched) when they cannot.
    fn decide_borrowed(&self, body: &[u8], budget: &mut EventBudget) -> Option<Verdicts<'_>> {
        if self.indexed < self.distinct.len() || self.distinct.is_empty() {
            return None;
        }
        let doc = self.index_needs.parse_borrowed(body)?;
        let root = doc.root();
        if !root.is_object() {
            return None;
        }
        let before = budget.clone();
        let mut results = vec![None; self.distinct.len()];
        if self
            .groups
            .iter()
            .all(|g| g.decide(root, &mut results, budget))
            && results.iter().all(Option::is_some)
        {
            for _ in &results {
                budget.skip();
            }
            return Some(Verdicts { set: self, results });
        }
        *budget = before;
        None
    }

    /// Evaluate every distinct filter at most once on `doc`, within `budget`: the index decides the members of
    /// a group it can (module doc), the rest are evaluated.
    pub fn evaluate(&self, doc: &Value, budget: &mut EventBudget) -> Verdicts<'_> {
        // One allocation per event: the verdicts, filled in place by the index, then by evaluation.
        let mut results: Vec<Option<Result<bool, EvalError>>> = vec![None; self.distinct.len()];
        if doc.is_object() {
            for g in &self.groups {
                g.decide(doc, &mut results, budget);
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

/// What the index reads a document through: a `serde_json::Value`, or the borrowed parse ([`DocRef`]).
trait Tree<'x>: Copy {
    fn get(self, key: &str) -> Option<Self>;
    fn elements(self) -> Option<impl ExactSizeIterator<Item = Self>>;
    fn as_str(self) -> Option<&'x str>;
    fn is_object(self) -> bool;
    /// The node as a `Value` (for the rest of a conjunction), `None` if it cannot be had.
    fn value(self) -> Option<Cow<'x, Value>>;
}

impl<'x> Tree<'x> for &'x Value {
    fn get(self, key: &str) -> Option<Self> {
        self.as_object()?.get(key)
    }

    fn elements(self) -> Option<impl ExactSizeIterator<Item = Self>> {
        self.as_array().map(|a| a.iter())
    }

    fn as_str(self) -> Option<&'x str> {
        Value::as_str(self)
    }

    fn is_object(self) -> bool {
        Value::is_object(self)
    }

    fn value(self) -> Option<Cow<'x, Value>> {
        Some(Cow::Borrowed(self))
    }
}

impl<'x> Tree<'x> for DocRef<'x, '_> {
    fn get(self, key: &str) -> Option<Self> {
        DocRef::get(self, key)
    }

    fn elements(self) -> Option<impl ExactSizeIterator<Item = Self>> {
        DocRef::elements(self)
    }

    fn as_str(self) -> Option<&'x str> {
        DocRef::as_str(self)
    }

    fn is_object(self) -> bool {
        DocRef::is_object(self)
    }

    fn value(self) -> Option<Cow<'x, Value>> {
        serde_json::from_str(self.text()?).ok().map(Cow::Owned)
    }
}

/// The node a simple path selects (`eval.rs`'s `resolve_simple`: a member by name, an element by index, a
/// negative one from the end).
fn resolve<'x, T: Tree<'x>>(parts: &[Part], mut v: T) -> Option<T> {
    for p in parts {
        v = match p {
            Part::Prop(n) => v.get(n)?,
            Part::Index(k) => {
                let mut items = v.elements()?;
                let k = i64::from(*k);
                let eff = if k < 0 { items.len() as i64 + k } else { k };
                items.nth(usize::try_from(eff).ok()?)?
            }
        };
    }
    Some(v)
}

impl Group {
    /// Decide this group's members in `results` when the index can (module doc): every member a non-match,
    /// then the members whose literal is a value read a match (after the rest of their conjunction, on that
    /// element). `false`, with nothing decided, when it cannot.
    fn decide<'x, T: Tree<'x>>(
        &self,
        root: T,
        results: &mut [Option<Result<bool, EvalError>>],
        budget: &mut EventBudget,
    ) -> bool {
        let lookup = |s: &str| {
            self.by_literal
                .get(s)
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        match &self.key {
            Key::Root(_, p) => {
                let Some(s) = resolve(p, root).and_then(T::as_str) else {
                    return false;
                };
                for m in &self.members {
                    results[m.filter as usize] = Some(Ok(false));
                }
                // The value read is the literal, a string equal to a string: Jayway's `==` holds, and with no
                // other segment after the filter the result is not empty.
                for &m in lookup(s) {
                    results[self.members[m as usize].filter as usize] = Some(Ok(true));
                }
                true
            }
            Key::Elements(a, q) => {
                let Some(items) = resolve(a, root).and_then(T::elements) else {
                    return false;
                };
                // Only arrays of objects whose value is a string or absent: read once to check, once to decide.
                let mut read = Vec::with_capacity(items.len());
                for item in items {
                    if !item.is_object() {
                        return false;
                    }
                    match resolve(q, item) {
                        None => read.push((item, None)),
                        Some(v) => match v.as_str() {
                            Some(s) => read.push((item, Some(s))),
                            None => return false,
                        },
                    }
                }
                for m in &self.members {
                    results[m.filter as usize] = Some(Ok(false));
                }
                for &(_, s) in &read {
                    let Some(s) = s else { continue };
                    for &m in lookup(s) {
                        let m = &self.members[m as usize];
                        if m.rest.is_none() {
                            results[m.filter as usize] = Some(Ok(true));
                        }
                    }
                }
                for m in &self.members {
                    let Some(rest) = &m.rest else { continue };
                    match self.rest_on(m, rest, &read, budget) {
                        Some(v) => results[m.filter as usize] = Some(v),
                        None => {
                            // An element that cannot be had as a value: the evaluator decides this one.
                            results[m.filter as usize] = None;
                        }
                    }
                }
                true
            }
        }
    }

    /// Member `m`'s verdict: `rest` on each element whose value passes its test, in order, as the walker would
    /// (every element is tested, so an error on a later one fails the filter even after a match). Its steps
    /// come from the member's share of the budget.
    fn rest_on<'x, T: Tree<'x>>(
        &self,
        m: &Member,
        rest: &Pred,
        read: &[(T, Option<&str>)],
        budget: &mut EventBudget,
    ) -> Option<Result<bool, EvalError>> {
        let limit = budget.share().min(super::eval::MAX_STEPS);
        let mut used = 0;
        let mut verdict = Ok(false);
        for &(item, s) in read {
            if !s.is_some_and(|s| m.literals.iter().any(|l| &**l == s)) {
                continue;
            }
            let v = item.value()?;
            let (r, steps) = super::eval::accept_limited(rest, &v, self.depth, limit - used);
            used += steps;
            match r {
                Ok(true) => verdict = Ok(true),
                Ok(false) => {}
                Err(EvalError::OverEventBudget(_) | EvalError::TooExpensive(_)) => {
                    // Over what the whole filter may take, as its one walk would report it.
                    verdict = Err(if limit < super::eval::MAX_STEPS {
                        EvalError::OverEventBudget(limit)
                    } else {
                        EvalError::TooExpensive(super::eval::MAX_STEPS)
                    });
                    break;
                }
                Err(e) => {
                    verdict = Err(e);
                    break;
                }
            }
        }
        budget.spend(used);
        Some(verdict)
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

    /// Sets whose filters are all literal tests are decided on the borrowed parse (no `serde_json::Value`), with
    /// each filter's own verdict; a value the index cannot read (a number where it compares strings, a key it
    /// reads given twice with another type last) leaves them to the evaluator, which gives the same verdicts.
    #[test]
    fn the_borrowed_parse_decides_what_the_index_covers() {
        let filters = [
            "$.changes[?(@.attribute == 'title')]",
            "$.changes[?(@.attribute in ['department', 'title', 'manager'])]",
            "$.changes[?(@.attribute == 'department' && @.newValue =~ /market.*/i)]",
            "$.changes[?(@.attribute == 'department' && @.newValue =~ /sales/)]",
            "$[?($.identity.name == 'William Wilson')]",
            "$[?(@.identity.id in ['x', 'y'])]",
        ];
        let compiled: Vec<Filter> = filters
            .iter()
            .map(|f| Filter::compile(f).unwrap())
            .collect();
        let mut set = FilterSet::new();
        for f in &compiled {
            set.push(Some(f));
        }
        let check = |body: &str, borrowed: bool| {
            let doc: Value = serde_json::from_str(body).unwrap();
            let mut budget = EventBudget::new(set.distinct());
            assert_eq!(
                set.decide_borrowed(body.as_bytes(), &mut budget).is_some(),
                borrowed,
                "{body}"
            );
            let verdicts = set
                .evaluate_body(body.as_bytes(), &mut EventBudget::new(set.distinct()))
                .unwrap();
            for (i, f) in compiled.iter().enumerate() {
                assert_eq!(
                    verdicts.get(i),
                    Some(&f.evaluate(&doc)),
                    "{} on {body}",
                    f.source()
                );
            }
        };
        let id = r#""identity":{"id":"y","name":"William Wilson"}"#;
        check(
            &format!(
                r#"{{{id},"changes":[{{"attribute":"department","oldValue":"sales","newValue":"Marketing"}},
                {{"attribute":"cn","newValue":{{"a":1}}}},{{"oldValue":1}}],"_metadata":{{"x":[1,2]}}}}"#
            ),
            true,
        );
        check(&format!(r#"{{{id},"changes":[]}}"#), true);
        check(&format!(r#"{{{id},"changes":[{{"attribute":7}}]}}"#), false);
        check(
            &format!(r#"{{{id},"changes":[{{"attribute":"title","attribute":7}}]}}"#),
            false,
        );
        check(
            &format!(r#"{{{id},"changes":[{{"attribute":7,"attribute":"title"}}]}}"#),
            true,
        );
        check(r#"{"identity":{"name":null},"changes":[]}"#, false);
        check(r#"{"changes":[{"attribute":"title"}]}"#, false);
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
