//! Evaluator: walks a compiled [`Path`] over a `serde_json::Value` the way
//! Jayway's path tokens do (definite/indefinite paths, `PathNotFound` for a
//! missing step of a definite path, deep scan, filters applied to objects
//! and to array elements) and evaluates predicates with Jayway's
//! `ValueNode` semantics (see the operator notes in `mod.rs`).
//!
//! Results are streamed to a callback: nothing is collected unless a
//! predicate needs the value list of an indefinite path. The deep scan is
//! iterative (explicit stack, pre-order like Jayway), every step is counted
//! against a budget and recursion through nested filters is bounded.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::lexer::{
    java_len, java_number_string, java_str_cmp, list_string, num_cmp, number_from_text,
    parse_bigdecimal,
};
use super::parser::{
    is_json_like, is_path_like, Func, FuncKind, Lit, LitItem, LitJson, LitNum, Op, Operand, Param,
    Path, Pred, SegKind,
};
use super::EvalError;

/// Upper bound on evaluation steps (nodes visited, predicates applied) for
/// one evaluation; past it the evaluation fails with
/// [`EvalError::TooExpensive`].
pub(crate) const MAX_STEPS: u64 = 2_000_000;
/// Upper bound on evaluation recursion (path segments within nested filters).
pub(crate) const MAX_EVAL_DEPTH: u32 = 512;
/// Deep equality gives up (not equal) below this depth.
const MAX_EQ_DEPTH: usize = 256;

/// Why an evaluation step stopped, mirroring Jayway's exception classes.
#[derive(Debug)]
pub(crate) enum Fail {
    /// `PathNotFoundException`: a missing step in a definite path.
    NotFound,
    /// `InvalidPathException`: inside a filter it only rejects the element.
    Soft(EvalError),
    /// Any other `JsonPathException`: aborts the whole evaluation.
    Hard(EvalError),
}

type R<T> = Result<T, Fail>;

pub(crate) struct Cx<'a> {
    root: &'a Value,
    steps: u64,
    /// At most [`MAX_STEPS`]; less when the filter gets a share of an event's budget.
    limit: u64,
    depth: u32,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(root: &'a Value) -> Self {
        Self::with_limit(root, MAX_STEPS)
    }

    fn with_limit(root: &'a Value, limit: u64) -> Self {
        Cx {
            root,
            steps: 0,
            limit: limit.min(MAX_STEPS),
            depth: 0,
        }
    }

    #[inline]
    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > self.limit {
            return Err(Fail::Hard(if self.limit < MAX_STEPS {
                EvalError::OverEventBudget(self.limit)
            } else {
                EvalError::TooExpensive(MAX_STEPS)
            }));
        }
        Ok(())
    }

    #[inline]
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            self.depth -= 1;
            return Err(Fail::Hard(EvalError::TooDeep(MAX_EVAL_DEPTH)));
        }
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        self.depth -= 1;
    }
}

/// serde_json clones, serializes and drops values recursively: refuse to
/// copy or print a value nested deeper than this (serde_json's own parser
/// stops at 128), so a hand-built deep value cannot exhaust the stack.
const MAX_COPY_DEPTH: usize = 128;

fn check_depth(v: &Value) -> R<()> {
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        if d > MAX_COPY_DEPTH {
            return Err(Fail::Hard(EvalError::TooDeep(MAX_COPY_DEPTH as u32)));
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    Ok(())
}

fn owned_copy(v: &Value) -> R<Value> {
    check_depth(v)?;
    Ok(v.clone())
}

/// One result of a path: a node of the document (or of a literal), or a
/// value computed by a function / multi-property merge.
#[derive(Debug)]
pub(crate) enum Elem<'a> {
    Ref(&'a Value),
    Owned(Value),
}

impl Elem<'_> {
    fn value(&self) -> &Value {
        match self {
            Elem::Ref(v) => v,
            Elem::Owned(v) => v,
        }
    }
}

type Sink<'s, 'a> = &'s mut dyn FnMut(Elem<'a>) -> R<()>;

/// How a path is walked: which path, where it stops (exclusive segment
/// index; the token before it is the leaf) and whether missing properties
/// raise `NotFound` (Jayway's `REQUIRE_PROPERTIES`, used by existence tests).
#[derive(Clone, Copy)]
struct Walk<'a> {
    path: &'a Path,
    stop: usize,
    require: bool,
}

// ---------------------------------------------------------------------------
// Top level
// ---------------------------------------------------------------------------

/// Evaluate the whole expression: `Ok(true)` when it yields at least one
/// result. Like Jayway, every branch is evaluated (an error in any branch
/// makes the whole read fail), so there is no early exit on the first hit.
pub(crate) fn evaluate_top(path: &Path, doc: &Value) -> Result<bool, EvalError> {
    evaluate_limited(path, doc, MAX_STEPS).0
}

/// [`evaluate_top`] within `limit` steps (at most [`MAX_STEPS`]); also returns the steps it took.
pub(crate) fn evaluate_limited(
    path: &Path,
    doc: &Value,
    limit: u64,
) -> (Result<bool, EvalError>, u64) {
    let mut cx = Cx::with_limit(doc, limit);
    let mut count = 0usize;
    let r = if path.simple {
        resolve_simple(path, doc, &mut cx).map(|v| count = usize::from(v.is_some()))
    } else if path.inverted_fn {
        inverted_fn(path, doc, &mut cx).map(|_| count = 1)
    } else {
        let w = Walk {
            path,
            stop: path.segs.len(),
            require: false,
        };
        walk(w, 0, doc, &mut cx, &mut |_| {
            count += 1;
            Ok(())
        })
    };
    let verdict = match r {
        Ok(()) => Ok(count > 0),
        Err(Fail::NotFound) => Ok(false),
        Err(Fail::Soft(e) | Fail::Hard(e)) => Err(e),
    };
    (verdict, cx.steps.min(cx.limit))
}

/// Predicate `pred` tested on `item`, an element of an array that a filter's `[?(…)]` segment at index
/// `depth - 1` walks (so recursion is counted from where the walker would be), within `limit` steps: the
/// element's verdict and the steps it took. For the filter set's index, which tests the rest of a conjunction
/// only on the elements its first test selects; `pred` must read nothing through `$` (the element is the root
/// here).
pub(crate) fn accept_limited(
    pred: &Pred,
    item: &Value,
    depth: u32,
    limit: u64,
) -> (Result<bool, EvalError>, u64) {
    let mut cx = Cx::with_limit(item, limit);
    cx.depth = depth;
    let verdict = match accept(pred, item, &mut cx) {
        Ok(b) => Ok(b),
        Err(Fail::NotFound) => Ok(false),
        Err(Fail::Soft(e) | Fail::Hard(e)) => Err(e),
    };
    (verdict, cx.steps.min(cx.limit))
}

// ---------------------------------------------------------------------------
// Path walking
// ---------------------------------------------------------------------------

/// Fast path for a definite path made of `.name` and `[n]` only: the node
/// it selects, if any (every way of not finding it is the same "undefined"
/// for such a path).
#[inline]
fn resolve_simple<'a>(p: &'a Path, mut v: &'a Value, cx: &mut Cx<'a>) -> R<Option<&'a Value>> {
    for seg in &p.segs {
        cx.step()?;
        let next = match (&seg.kind, v) {
            (SegKind::Prop(n), Value::Object(m)) => m.get(&**n),
            (SegKind::Index(k), Value::Array(a)) => {
                let k = i64::from(*k);
                let eff = if k < 0 { a.len() as i64 + k } else { k };
                usize::try_from(eff).ok().and_then(|e| a.get(e))
            }
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return Ok(None),
        }
    }
    Ok(Some(v))
}

fn walk<'a>(w: Walk<'a>, i: usize, model: &'a Value, cx: &mut Cx<'a>, sink: Sink<'_, 'a>) -> R<()> {
    if i >= w.stop {
        return sink(Elem::Ref(model));
    }
    cx.step()?;
    cx.enter()?;
    let r = walk_seg(w, i, model, cx, sink);
    cx.leave();
    r
}

fn walk_seg<'a>(
    w: Walk<'a>,
    i: usize,
    model: &'a Value,
    cx: &mut Cx<'a>,
    sink: Sink<'_, 'a>,
) -> R<()> {
    let seg = &w.path.segs[i];
    let leaf = i + 1 == w.stop;
    match &seg.kind {
        SegKind::Prop(name) => match model {
            Value::Object(m) => prop(w, i, m, name, leaf, true, cx, sink),
            _ => not_applicable(seg.upstream_definite),
        },
        SegKind::Props(names) => match model {
            Value::Object(m) if leaf => {
                // Jayway merges the present properties into a new object.
                let mut merged = Map::new();
                for n in names.iter() {
                    match m.get(&**n) {
                        Some(v) => {
                            merged.insert(n.to_string(), owned_copy(v)?);
                        }
                        None if w.require => return Err(Fail::NotFound),
                        None => {}
                    }
                }
                sink(Elem::Owned(Value::Object(merged)))
            }
            Value::Object(m) => {
                for n in names.iter() {
                    prop(w, i, m, n, leaf, false, cx, sink)?;
                }
                Ok(())
            }
            _ => not_applicable(seg.upstream_definite),
        },
        SegKind::Index(k) => match model {
            Value::Array(a) => index(w, i, a, i64::from(*k), cx, sink),
            _ => not_applicable(seg.upstream_definite),
        },
        SegKind::Indexes(ks) => match model {
            Value::Array(a) => {
                for k in ks.iter() {
                    index(w, i, a, i64::from(*k), cx, sink)?;
                }
                Ok(())
            }
            _ => not_applicable(seg.upstream_definite),
        },
        SegKind::Slice(from, to) => match model {
            Value::Array(a) => {
                for j in slice_indexes(a.len(), *from, *to) {
                    index(w, i, a, j, cx, sink)?;
                }
                Ok(())
            }
            _ => not_applicable(seg.upstream_definite),
        },
        SegKind::Wildcard => match model {
            Value::Object(m) => {
                for v in m.values() {
                    walk(w, i + 1, v, cx, sink)?;
                }
                Ok(())
            }
            Value::Array(a) => {
                for v in a {
                    walk(w, i + 1, v, cx, sink)?;
                }
                Ok(())
            }
            _ => Ok(()),
        },
        SegKind::Scan => scan(w, i, model, cx, sink),
        SegKind::Filter(pred) => match model {
            Value::Object(_) => {
                if accept(pred, model, cx)? {
                    walk(w, i + 1, model, cx, sink)
                } else {
                    Ok(())
                }
            }
            Value::Array(a) => {
                for e in a {
                    if accept(pred, e, cx)? {
                        walk(w, i + 1, e, cx, sink)?;
                    }
                }
                Ok(())
            }
            _ if seg.upstream_definite => Err(Fail::Soft(EvalError::FilterOnPrimitive)),
            _ => Ok(()),
        },
        SegKind::Func(f) => {
            let v = call_fn(f, model, cx)?;
            sink(Elem::Owned(v))
        }
    }
}

/// A token met a value it cannot apply to: an error for a definite path,
/// silently nothing otherwise.
fn not_applicable(upstream_definite: bool) -> R<()> {
    if upstream_definite {
        Err(Fail::NotFound)
    } else {
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn prop<'a>(
    w: Walk<'a>,
    i: usize,
    m: &'a Map<String, Value>,
    name: &str,
    leaf: bool,
    token_definite: bool,
    cx: &mut Cx<'a>,
    sink: Sink<'_, 'a>,
) -> R<()> {
    match m.get(name) {
        Some(v) => walk(w, i + 1, v, cx, sink),
        None if leaf => {
            if w.require {
                Err(Fail::NotFound)
            } else {
                Ok(())
            }
        }
        None => {
            if (w.path.segs[i].upstream_definite && token_definite) || w.require {
                Err(Fail::NotFound)
            } else {
                Ok(())
            }
        }
    }
}

fn index<'a>(
    w: Walk<'a>,
    i: usize,
    a: &'a [Value],
    k: i64,
    cx: &mut Cx<'a>,
    sink: Sink<'_, 'a>,
) -> R<()> {
    let len = a.len() as i64;
    let eff = if k < 0 { len + k } else { k };
    if (0..len).contains(&eff) {
        walk(w, i + 1, &a[eff as usize], cx, sink)
    } else {
        Ok(())
    }
}

/// Jayway `ArraySliceToken`: `[from:]` and `[:to]` count negative bounds
/// from the end; `[from:to]` only clamps `to` to the length (a negative
/// `from` then reads elements from the end, a negative `to` selects nothing).
fn slice_indexes(len: usize, from: Option<i32>, to: Option<i32>) -> std::ops::Range<i64> {
    let len = len as i64;
    match (from, to) {
        (Some(f), None) => {
            let mut f = i64::from(f);
            if f < 0 {
                f += len;
            }
            f.max(0)..len
        }
        (Some(f), Some(t)) => {
            let t = i64::from(t).min(len);
            let f = i64::from(f);
            if f >= t || len == 0 {
                0..0
            } else {
                f..t
            }
        }
        (None, Some(t)) => {
            let mut t = i64::from(t);
            if t < 0 {
                t += len;
            }
            0..t.min(len)
        }
        (None, None) => 0..0,
    }
}

/// Deep scan `..` followed by token `pt` (Jayway `ScanPathToken`): visits
/// every object and array once, pre-order. On an object that the token's
/// predicate accepts, the token is evaluated on the object. On an accepted
/// array, a leaf token is evaluated on the array; otherwise (a Jayway
/// quirk, kept) the token *after* it is applied to each element, e.g.
/// `$..[0].a.b` reads `.a.b` of every element of every array, while
/// `$..[0].a` keeps element 0 only and `$..[*].a` / `$..[1,2].a` keep none.
/// (Jayway also keeps that element index as mutable state on the compiled
/// token, which can drop later results; that part is not reproduced.)
fn scan<'a>(w: Walk<'a>, i: usize, model: &'a Value, cx: &mut Cx<'a>, sink: Sink<'_, 'a>) -> R<()> {
    let pt = i + 1;
    let pt_leaf = pt + 1 == w.stop;
    let mut stack: Vec<&'a Value> = vec![model];
    while let Some(node) = stack.pop() {
        cx.step()?;
        match node {
            Value::Object(m) => {
                if scan_accepts(w, pt, pt_leaf, node, cx)? {
                    walk(w, pt, node, cx, sink)?;
                }
                let at = stack.len();
                stack.extend(m.values());
                stack[at..].reverse();
            }
            Value::Array(a) => {
                if scan_accepts(w, pt, pt_leaf, node, cx)? {
                    if pt_leaf {
                        walk(w, pt, node, cx, sink)?;
                    } else {
                        // Jayway 2.9 tags the next token with the element
                        // index; a single-property leaf then only keeps the
                        // element whose index is spelled by `pt` (`[k]`).
                        let only = match (&w.path.segs[pt].kind, &w.path.segs[pt + 1].kind) {
                            (kind, SegKind::Prop(_)) if pt + 2 == w.stop => match kind {
                                SegKind::Index(k) if *k >= 0 => Some(*k as usize),
                                _ => Some(usize::MAX),
                            },
                            _ => None,
                        };
                        for (idx, e) in a.iter().enumerate() {
                            if only.is_none_or(|k| k == idx) {
                                walk(w, pt + 1, e, cx, sink)?;
                            }
                        }
                    }
                }
                let at = stack.len();
                stack.extend(a.iter());
                stack[at..].reverse();
            }
            _ => {}
        }
    }
    Ok(())
}

fn scan_accepts<'a>(
    w: Walk<'a>,
    pt: usize,
    pt_leaf: bool,
    node: &'a Value,
    cx: &mut Cx<'a>,
) -> R<bool> {
    Ok(match &w.path.segs[pt].kind {
        SegKind::Prop(n) => node.as_object().is_some_and(|m| m.contains_key(&**n)),
        SegKind::Props(ns) => node
            .as_object()
            .is_some_and(|m| !pt_leaf || ns.iter().all(|n| m.contains_key(&**n))),
        SegKind::Index(_) | SegKind::Indexes(_) | SegKind::Slice(..) => node.is_array(),
        SegKind::Wildcard => true,
        SegKind::Filter(pred) => accept(pred, node, cx)?,
        SegKind::Func(_) | SegKind::Scan => false,
    })
}

// ---------------------------------------------------------------------------
// Predicates
// ---------------------------------------------------------------------------

/// Jayway `PredicatePathToken.accept`: an `InvalidPathException` (and so a
/// `PathNotFoundException`) while evaluating rejects the element.
fn accept<'a>(pred: &'a Pred, item: &'a Value, cx: &mut Cx<'a>) -> R<bool> {
    cx.step()?;
    match eval_pred(pred, item, cx) {
        Ok(b) => Ok(b),
        Err(Fail::Soft(_) | Fail::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

fn eval_pred<'a>(pred: &'a Pred, item: &'a Value, cx: &mut Cx<'a>) -> R<bool> {
    cx.enter()?;
    let r = match pred {
        Pred::Or(v) => {
            let mut out = Ok(false);
            for p in v {
                match eval_pred(p, item, cx) {
                    Ok(true) => {
                        out = Ok(true);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        out = Err(e);
                        break;
                    }
                }
            }
            out
        }
        Pred::And(v) => {
            let mut out = Ok(true);
            for p in v {
                match eval_pred(p, item, cx) {
                    Ok(true) => {}
                    Ok(false) => {
                        out = Ok(false);
                        break;
                    }
                    Err(e) => {
                        out = Err(e);
                        break;
                    }
                }
            }
            out
        }
        Pred::Not(p) => eval_pred(p, item, cx).map(|b| !b),
        Pred::Exists { path, should_exist } => exists(path, item, cx).map(|e| e == *should_exist),
        Pred::Cmp { left, op, right } => match operand(left, item, cx) {
            Ok(l) => match operand(right, item, cx) {
                Ok(r) => compare(*op, &l, &r),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
    };
    cx.leave();
    r
}

/// Existence test (`@.x`, `!@.x`): the path is evaluated with
/// `REQUIRE_PROPERTIES` against the current item, for `$` paths too (as
/// Jayway does). A definite path exists when it yields a node (JSON null
/// included); an indefinite one when no missing property was met.
fn exists<'a>(path: &'a Path, item: &'a Value, cx: &mut Cx<'a>) -> R<bool> {
    if path.simple {
        return resolve_simple(path, item, cx).map(|v| v.is_some());
    }
    let mut count = 0usize;
    let r = if path.inverted_fn {
        inverted_fn(path, item, cx).map(|_| count = 1)
    } else {
        let w = Walk {
            path,
            stop: path.segs.len(),
            require: true,
        };
        walk(w, 0, item, cx, &mut |_| {
            count += 1;
            Ok(())
        })
    };
    match r {
        Ok(()) => Ok(!path.definite || count > 0),
        Err(Fail::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Value of an operand (Jayway `ValueNode`).
#[derive(Debug)]
pub(crate) enum V<'a> {
    /// A path that selected nothing (definite path) or failed.
    Undef,
    Null,
    Bool(bool),
    Num(NumV<'a>),
    Str(Cow<'a, str>),
    Json(JsonV<'a>),
    Pattern(&'a super::java_regex::JavaRegex),
}

#[derive(Debug)]
pub(crate) enum NumV<'a> {
    Ref(&'a Number),
    Own(Number),
    Lit(&'a LitNum),
}

/// An array or object operand (Jayway `JsonNode`).
#[derive(Debug)]
pub(crate) enum JsonV<'a> {
    Ref(&'a Value),
    Owned(Value),
    Lit(&'a LitJson),
    /// Results of an indefinite path (always an array).
    List(Vec<Elem<'a>>),
}

impl<'a> V<'a> {
    fn from_elem(e: Elem<'a>) -> Self {
        match e {
            Elem::Ref(v) => match v {
                Value::Null => V::Null,
                Value::Bool(b) => V::Bool(*b),
                Value::Number(n) => V::Num(NumV::Ref(n)),
                Value::String(s) => V::Str(Cow::Borrowed(s)),
                Value::Array(_) | Value::Object(_) => V::Json(JsonV::Ref(v)),
            },
            Elem::Owned(v) => match v {
                Value::Null => V::Null,
                Value::Bool(b) => V::Bool(b),
                Value::Number(n) => V::Num(NumV::Own(n)),
                Value::String(s) => V::Str(Cow::Owned(s)),
                other => V::Json(JsonV::Owned(other)),
            },
        }
    }

    fn view(&self) -> S<'_> {
        match self {
            V::Undef => S::Undef,
            V::Null => S::Null,
            V::Bool(b) => S::Bool(*b),
            V::Num(n) => S::Num(match n {
                NumV::Ref(n) => NumRef::J(n),
                NumV::Own(n) => NumRef::J(n),
                NumV::Lit(l) => NumRef::Lit(l),
            }),
            V::Str(s) => S::Str(s),
            V::Json(j) => S::Json(j),
            V::Pattern(_) => S::Pattern,
        }
    }

    fn class(&self) -> u8 {
        match self {
            V::Undef => 0,
            V::Null => 1,
            V::Bool(_) => 2,
            V::Num(_) => 3,
            V::Str(_) => 4,
            V::Json(_) => 5,
            V::Pattern(_) => 6,
        }
    }
}

fn operand<'a>(op: &'a Operand, item: &'a Value, cx: &mut Cx<'a>) -> R<V<'a>> {
    match op {
        Operand::Lit(l) => Ok(match l {
            Lit::Null => V::Null,
            Lit::Bool(b) => V::Bool(*b),
            Lit::Num(n) => V::Num(NumV::Lit(n)),
            Lit::Str(s) => V::Str(Cow::Borrowed(s)),
            Lit::Json(j) => V::Json(JsonV::Lit(j)),
            Lit::Regex(r) => V::Pattern(r),
        }),
        Operand::Path(p) => path_value(p, item, cx),
    }
}

/// Jayway `PathNode.evaluate`: `$` paths read the root, `@` paths the
/// current item; a definite path gives its value (or undefined), an
/// indefinite one the list of its results.
fn path_value<'a>(p: &'a Path, item: &'a Value, cx: &mut Cx<'a>) -> R<V<'a>> {
    let doc = if p.root_is_doc { cx.root } else { item };
    if p.simple {
        return Ok(resolve_simple(p, doc, cx)?.map_or(V::Undef, |v| V::from_elem(Elem::Ref(v))));
    }
    if p.inverted_fn {
        return match inverted_fn(p, doc, cx) {
            Ok(v) => Ok(V::from_elem(Elem::Owned(v))),
            Err(Fail::NotFound) => Ok(V::Undef),
            Err(e) => Err(e),
        };
    }
    let w = Walk {
        path: p,
        stop: p.segs.len(),
        require: false,
    };
    if p.definite {
        let mut last: Option<Elem<'a>> = None;
        match walk(w, 0, doc, cx, &mut |e| {
            last = Some(e);
            Ok(())
        }) {
            Ok(()) => Ok(last.map_or(V::Undef, V::from_elem)),
            Err(Fail::NotFound) => Ok(V::Undef),
            Err(e) => Err(e),
        }
    } else {
        let mut list = Vec::new();
        match walk(w, 0, doc, cx, &mut |e| {
            list.push(e);
            Ok(())
        }) {
            Ok(()) => Ok(V::Json(JsonV::List(list))),
            Err(Fail::NotFound) => Ok(V::Undef),
            Err(e) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------
// Value views and Java equality
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum NumRef<'x> {
    J(&'x Number),
    Lit(&'x LitNum),
}

impl<'x> NumRef<'x> {
    fn number(self) -> &'x Number {
        match self {
            NumRef::J(n) => n,
            NumRef::Lit(l) => &l.num,
        }
    }

    /// `BigDecimal.toString()` of the number.
    fn java(self) -> Cow<'x, str> {
        match self {
            NumRef::J(n) => Cow::Owned(java_number_string(n)),
            NumRef::Lit(l) => Cow::Borrowed(&l.text),
        }
    }

    /// `BigDecimal.intValue()` (truncation), saturated.
    fn int_value(self) -> i64 {
        let n = self.number();
        if let Some(i) = n.as_i64() {
            i
        } else if n.as_u64().is_some() {
            i64::MAX
        } else {
            n.as_f64().unwrap_or(0.0).trunc() as i64
        }
    }
}

/// Borrowed view of a value node for comparisons.
#[derive(Clone, Copy, Debug)]
enum S<'x> {
    Undef,
    Null,
    Bool(bool),
    Num(NumRef<'x>),
    Str(&'x str),
    Json(&'x JsonV<'x>),
    Pattern,
    /// Value-list element that Jayway turned into a path/JSON node.
    Never,
}

/// A value-list element (Jayway `ValueNode.toValueNode`).
enum Item<'x> {
    Null,
    Bool(bool),
    Num(NumRef<'x>),
    Str(Cow<'x, str>),
    Never,
}

impl Item<'_> {
    fn view(&self) -> S<'_> {
        match self {
            Item::Null => S::Null,
            Item::Bool(b) => S::Bool(*b),
            Item::Num(n) => S::Num(*n),
            Item::Str(s) => S::Str(s),
            Item::Never => S::Never,
        }
    }
}

fn item_of(v: &Value) -> Item<'_> {
    match v {
        Value::Null => Item::Null,
        Value::Bool(b) => Item::Bool(*b),
        Value::Number(n) => Item::Num(NumRef::J(n)),
        Value::String(s) => {
            let t = s.trim_start();
            let special = match t.as_bytes().first() {
                Some(b'$' | b'@') => is_path_like(s, 0),
                Some(b'[' | b'{') => is_json_like(s),
                _ => false,
            };
            if special {
                Item::Never
            } else {
                Item::Str(list_string(s))
            }
        }
        Value::Array(_) | Value::Object(_) => Item::Never,
    }
}

fn lit_item(l: &LitItem) -> Item<'_> {
    match l {
        LitItem::Null => Item::Null,
        LitItem::Bool(b) => Item::Bool(*b),
        LitItem::Num(n) => Item::Num(NumRef::J(n)),
        LitItem::Str(s) => Item::Str(Cow::Borrowed(s)),
        LitItem::Never => Item::Never,
    }
}

/// Jayway `a.equals(b)` between value nodes.
fn java_eq(a: S<'_>, b: S<'_>) -> bool {
    match (a, b) {
        (S::Null, S::Null) => true,
        (S::Bool(x), S::Bool(y)) => x == y,
        (S::Str(x), S::Str(y)) => x == y,
        (S::Str(x), S::Num(n)) => x == n.java(),
        (S::Num(x), S::Num(y)) => num_cmp(x.number(), y.number()) == Ordering::Equal,
        (S::Num(x), S::Str(s)) => {
            parse_bigdecimal(s).is_some()
                && number_from_text(s).is_some_and(|n| num_cmp(x.number(), &n) == Ordering::Equal)
        }
        (S::Json(x), S::Json(y)) => json_v_eq(x, y),
        _ => false,
    }
}

enum Shape<'x> {
    Val(&'x Value),
    List(&'x [Elem<'x>]),
}

fn shape<'x>(j: &'x JsonV<'x>) -> Shape<'x> {
    match j {
        JsonV::Ref(v) => Shape::Val(v),
        JsonV::Owned(v) => Shape::Val(v),
        JsonV::Lit(l) => Shape::Val(&l.value),
        JsonV::List(l) => Shape::List(l),
    }
}

fn json_v_eq(a: &JsonV<'_>, b: &JsonV<'_>) -> bool {
    match (shape(a), shape(b)) {
        (Shape::Val(x), Shape::Val(y)) => deep_eq(x, y, 0),
        (Shape::List(l), Shape::Val(Value::Array(a)))
        | (Shape::Val(Value::Array(a)), Shape::List(l)) => {
            l.len() == a.len() && l.iter().zip(a).all(|(x, y)| deep_eq(x.value(), y, 0))
        }
        (Shape::List(x), Shape::List(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| deep_eq(p.value(), q.value(), 0))
        }
        _ => false,
    }
}

/// Structural equality (Java `List`/`Map.equals`), depth-bounded.
fn deep_eq(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > MAX_EQ_DEPTH {
        return false;
    }
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_eq(p, q, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w, depth + 1)))
        }
        _ => a == b,
    }
}

/// A value list (Jayway `ValueListNode`) borrowed from an operand.
enum List<'x> {
    Lit(&'x [LitItem]),
    Vals(&'x [Value]),
    Elems(&'x [Elem<'x>]),
}

impl List<'_> {
    fn any(&self, mut f: impl FnMut(S<'_>) -> bool) -> bool {
        match self {
            List::Lit(items) => items.iter().any(|i| f(lit_item(i).view())),
            List::Vals(vals) => vals.iter().any(|v| f(item_of(v).view())),
            List::Elems(es) => es.iter().any(|e| f(item_of(e.value()).view())),
        }
    }

    fn all(&self, mut f: impl FnMut(S<'_>) -> bool) -> bool {
        !self.any(|s| !f(s))
    }
}

fn nested(v: &Value) -> bool {
    matches!(v, Value::Array(_) | Value::Object(_))
}

/// `JsonNode.asValueListNode`: `Ok(None)` when the JSON value is not an
/// array; a soft error when the operand is not a JSON node at all; a hard
/// error when an element is itself an array/object (Jayway cannot convert
/// it).
fn as_list<'x>(v: &'x V<'x>, op: &'static str) -> R<Option<List<'x>>> {
    let V::Json(j) = v else {
        return Err(Fail::Soft(EvalError::ExpectedArray(op)));
    };
    let hard = || Fail::Hard(EvalError::NestedListValue);
    Ok(match j {
        JsonV::Ref(Value::Array(a)) | JsonV::Owned(Value::Array(a)) => {
            if a.iter().any(nested) {
                return Err(hard());
            }
            Some(List::Vals(a))
        }
        JsonV::Ref(_) | JsonV::Owned(_) => None,
        JsonV::Lit(l) => match &l.items {
            None => None,
            Some(Ok(items)) => Some(List::Lit(items)),
            Some(Err(())) => return Err(hard()),
        },
        JsonV::List(es) => {
            if es.iter().any(|e| nested(e.value())) {
                return Err(hard());
            }
            Some(List::Elems(es))
        }
    })
}

fn json_is_array(j: &JsonV<'_>) -> bool {
    match shape(j) {
        Shape::Val(v) => v.is_array(),
        Shape::List(_) => true,
    }
}

/// Size of a JSON node for `size`: arrays only (Jayway gives -1 otherwise).
fn json_len(j: &JsonV<'_>) -> i64 {
    match shape(j) {
        Shape::Val(Value::Array(a)) => a.len() as i64,
        Shape::Val(_) => -1,
        Shape::List(l) => l.len() as i64,
    }
}

/// `JsonNode.isEmpty`: Jayway 2.9.0 casts an object (a `Map`) to a
/// `Collection`, which throws a `ClassCastException` that no predicate
/// catches, so `empty` on an object fails the whole evaluation.
fn json_is_empty(j: &JsonV<'_>) -> R<bool> {
    Ok(match shape(j) {
        Shape::Val(Value::Array(a)) => a.is_empty(),
        Shape::Val(Value::Object(_)) => return Err(Fail::Hard(EvalError::EmptyOnObject)),
        Shape::Val(Value::String(s)) => s.is_empty(),
        Shape::Val(_) => true,
        Shape::List(l) => l.is_empty(),
    })
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::TsEq => "===",
        Op::TsNe => "!==",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Regex => "=~",
        Op::In => "in",
        Op::Nin => "nin",
        Op::Contains => "contains",
        Op::All => "all",
        Op::Size => "size",
        Op::Exists => "exists",
        Op::Type => "type",
        Op::Matches => "matches",
        Op::Empty => "empty",
        Op::SubsetOf => "subsetof",
        Op::AnyOf => "anyof",
        Op::NoneOf => "noneof",
    }
}

// ---------------------------------------------------------------------------
// Operators (Jayway `EvaluatorFactory`)
// ---------------------------------------------------------------------------

fn compare(op: Op, l: &V<'_>, r: &V<'_>) -> R<bool> {
    Ok(match op {
        Op::Eq => java_eq(l.view(), r.view()),
        Op::Ne => !java_eq(l.view(), r.view()),
        Op::TsEq => l.class() == r.class() && java_eq(l.view(), r.view()),
        Op::TsNe => !(l.class() == r.class() && java_eq(l.view(), r.view())),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => match ordering(l.view(), r.view()) {
            None => false,
            Some(o) => match op {
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                _ => o.is_ge(),
            },
        },
        Op::Regex => regex_op(l, r)?,
        Op::In => in_op(l, r, op)?,
        Op::Nin => !in_op(l, r, op)?,
        Op::Contains => match (l, r) {
            (V::Str(a), V::Str(b)) => a.contains(&**b),
            (V::Json(_), _) => match as_list(l, "contains")? {
                None => false,
                Some(list) => list.any(|it| java_eq(r.view(), it)),
            },
            _ => false,
        },
        Op::Size => {
            let S::Num(n) = r.view() else {
                return Ok(false);
            };
            let expected = n.int_value();
            match l {
                V::Str(s) => java_len(s) as i64 == expected,
                V::Json(j) => json_len(j) == expected,
                _ => false,
            }
        }
        Op::Empty => {
            let is_empty = match l {
                V::Str(s) => s.is_empty(),
                V::Json(j) => json_is_empty(j)?,
                _ => return Ok(false),
            };
            match r {
                V::Bool(b) => is_empty == *b,
                _ => return Err(Fail::Soft(EvalError::ExpectedBoolean("empty"))),
            }
        }
        Op::SubsetOf | Op::AnyOf | Op::NoneOf => {
            let name = op_name(op);
            let Some(rl) = as_list(r, name)? else {
                return Ok(false);
            };
            let Some(ll) = as_list(l, name)? else {
                return Ok(false);
            };
            match op {
                Op::SubsetOf => ll.all(|li| rl.any(|ri| java_eq(li, ri))),
                Op::AnyOf => ll.any(|li| rl.any(|ri| java_eq(li, ri))),
                _ => !ll.any(|li| rl.any(|ri| java_eq(li, ri))),
            }
        }
        Op::Exists => match (l, r) {
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Bool(_), _) | (_, V::Bool(_)) => {
                return Err(Fail::Soft(EvalError::ExpectedBoolean("exists")))
            }
            _ => return Err(Fail::Hard(EvalError::ExistsOperand)),
        },
        Op::All | Op::Type | Op::Matches => {
            return Err(Fail::Soft(EvalError::UnsupportedOperator(op_name(op))))
        }
    })
}

fn ordering(l: S<'_>, r: S<'_>) -> Option<Ordering> {
    match (l, r) {
        (S::Num(a), S::Num(b)) => Some(num_cmp(a.number(), b.number())),
        (S::Str(a), S::Str(b)) => Some(java_str_cmp(a, b)),
        // Jayway 2.9.0's `LessThanEvaluator` & co. compare only number/number,
        // string/string (and dates, which JSON never yields): a string and a
        // number are unordered, so every ordering operator is false (its
        // mixed string/number branch came after 2.9.0).
        _ => None,
    }
}

fn in_op(l: &V<'_>, r: &V<'_>, op: Op) -> R<bool> {
    match as_list(r, op_name(op))? {
        None => Ok(false),
        Some(list) => Ok(list.any(|it| java_eq(l.view(), it))),
    }
}

/// `=~`: exactly one side is a pattern; the other side's text (strings,
/// numbers as Java text, booleans; anything else is `""`) must match in
/// full. A JSON array matches when any element does.
fn regex_op(l: &V<'_>, r: &V<'_>) -> R<bool> {
    let (pat, other) = match (l, r) {
        (V::Pattern(p), o) if !matches!(o, V::Pattern(_)) => (*p, o),
        (o, V::Pattern(p)) if !matches!(o, V::Pattern(_)) => (*p, o),
        _ => return Ok(false),
    };
    if let V::Json(j) = other {
        if json_is_array(j) {
            return Ok(match as_list(other, "=~")? {
                None => false,
                Some(list) => list.any(|it| pat.is_match(&regex_input(it))),
            });
        }
    }
    Ok(pat.is_match(&regex_input(other.view())))
}

fn regex_input(s: S<'_>) -> Cow<'_, str> {
    match s {
        S::Str(s) => Cow::Borrowed(s),
        S::Num(n) => n.java(),
        S::Bool(true) => Cow::Borrowed("true"),
        S::Bool(false) => Cow::Borrowed("false"),
        _ => Cow::Borrowed(""),
    }
}

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

fn param_values<'a>(f: &'a Func, cx: &mut Cx<'a>) -> R<Vec<Elem<'a>>> {
    let mut out = Vec::with_capacity(f.params.len());
    for p in &f.params {
        match p {
            Param::Json(v) => out.push(Elem::Ref(v)),
            Param::Path(pp) => {
                let root = cx.root;
                let w = Walk {
                    path: pp,
                    stop: pp.segs.len(),
                    require: false,
                };
                if pp.definite {
                    let mut last = None;
                    walk(w, 0, root, cx, &mut |e| {
                        last = Some(e);
                        Ok(())
                    })?;
                    out.push(last.ok_or(Fail::NotFound)?);
                } else {
                    let mut vals = Vec::new();
                    walk(w, 0, root, cx, &mut |e| {
                        vals.push(owned_copy(e.value())?);
                        Ok(())
                    })?;
                    out.push(Elem::Owned(Value::Array(vals)));
                }
            }
        }
    }
    Ok(out)
}

/// Number of children of all results of `path` (Jayway's `length()` with a
/// path argument appends `[*]` to it and counts the results).
fn count_children<'a>(path: &'a Path, stop: usize, start: &'a Value, cx: &mut Cx<'a>) -> R<usize> {
    let mut n = 0usize;
    let w = Walk {
        path,
        stop,
        require: false,
    };
    walk(w, 0, start, cx, &mut |e| {
        n += match e.value() {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            _ => 0,
        };
        Ok(())
    })?;
    Ok(n)
}

fn call_fn<'a>(f: &'a Func, model: &'a Value, cx: &mut Cx<'a>) -> R<Value> {
    if f.kind == FuncKind::Length {
        if let Some(Param::Path(p)) = f.params.first() {
            let start = if p.root_is_doc { cx.root } else { model };
            return Ok(Value::from(
                count_children(p, p.segs.len(), start, cx)? as u64
            ));
        }
        return Ok(match model {
            Value::Array(a) => Value::from(a.len() as u64),
            Value::Object(m) => Value::from(m.len() as u64),
            _ => Value::Null,
        });
    }
    let params = param_values(f, cx)?;
    apply_fn(f.kind, model, &params)
}

fn apply_fn(kind: FuncKind, model: &Value, params: &[Elem<'_>]) -> R<Value> {
    if kind == FuncKind::Concat {
        let mut s = String::new();
        if let Value::Array(a) = model {
            for v in a {
                if let Value::String(t) = v {
                    s.push_str(t);
                }
            }
        }
        for p in params {
            match p.value() {
                Value::Null => {}
                Value::String(t) => s.push_str(t),
                other => {
                    check_depth(other)?;
                    s.push_str(&other.to_string());
                }
            }
        }
        return Ok(Value::String(s));
    }
    let mut nums: Vec<f64> = Vec::new();
    if let Value::Array(a) = model {
        nums.extend(a.iter().filter_map(Value::as_f64));
    }
    nums.extend(params.iter().filter_map(|p| p.value().as_f64()));
    if nums.is_empty() {
        return Err(Fail::Hard(EvalError::EmptyAggregation(kind.name())));
    }
    let count = nums.len() as f64;
    let sum: f64 = nums.iter().sum();
    let v = match kind {
        FuncKind::Sum => sum,
        FuncKind::Avg => sum / count,
        FuncKind::Min => nums.iter().copied().fold(f64::INFINITY, f64::min),
        FuncKind::Max => nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => {
            let sq: f64 = nums.iter().map(|x| x * x).sum();
            (sq / count - (sum / count) * (sum / count)).max(0.0).sqrt()
        }
    };
    Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
}

/// `$..x.fn()`: Jayway evaluates it as `fn($..x)` on the document.
fn inverted_fn<'a>(path: &'a Path, doc: &'a Value, cx: &mut Cx<'a>) -> R<Value> {
    let n = path.segs.len();
    let SegKind::Func(f) = &path.segs[n - 1].kind else {
        return Ok(Value::Null);
    };
    if f.kind == FuncKind::Length {
        return Ok(Value::from(count_children(path, n - 1, doc, cx)? as u64));
    }
    let mut vals = Vec::new();
    let w = Walk {
        path,
        stop: n - 1,
        require: false,
    };
    walk(w, 0, doc, cx, &mut |e| {
        vals.push(owned_copy(e.value())?);
        Ok(())
    })?;
    let list = Elem::Owned(Value::Array(vals));
    // The scan results are a single list-valued parameter, not numbers.
    apply_fn(f.kind, doc, std::slice::from_ref(&list))
}

// ---------------------------------------------------------------------------
// validate(): does every referenced path exist?
// ---------------------------------------------------------------------------

/// `isPathExist` for [`super::validate`]: the expression's own path selects
/// something when its filters let every candidate through, and every path
/// used inside a filter selects something on at least one application of
/// that filter: `$` paths on the input, `@` paths on one of the candidates
/// (the object itself, or an array element); function path arguments on the
/// input.
pub(crate) fn probe(path: &Path, input: &Value) -> bool {
    let mut cx = Cx::new(input);
    let mut seen = HashMap::new();
    match probe_path(path, input, &mut cx, &mut seen) {
        Ok(found) => found && seen.values().all(|&b| b),
        Err(_) => false,
    }
}

/// Per referenced path (by address): found on some application so far.
type Seen = HashMap<usize, bool>;

fn probe_path<'a>(path: &'a Path, start: &'a Value, cx: &mut Cx<'a>, seen: &mut Seen) -> R<bool> {
    let doc = if path.root_is_doc { cx.root } else { start };
    let mut found = false;
    probe_walk(path, 0, doc, cx, seen, &mut found)?;
    Ok(found)
}

fn probe_walk<'a>(
    path: &'a Path,
    i: usize,
    model: &'a Value,
    cx: &mut Cx<'a>,
    seen: &mut Seen,
    found: &mut bool,
) -> R<()> {
    let Some(seg) = path.segs.get(i) else {
        *found = true;
        return Ok(());
    };
    cx.step()?;
    cx.enter()?;
    let r = probe_seg(path, i, &seg.kind, model, cx, seen, found);
    cx.leave();
    r
}

fn probe_seg<'a>(
    path: &'a Path,
    i: usize,
    kind: &'a SegKind,
    model: &'a Value,
    cx: &mut Cx<'a>,
    seen: &mut Seen,
    found: &mut bool,
) -> R<()> {
    let mut children: Vec<&'a Value> = Vec::new();
    match kind {
        SegKind::Prop(n) => children.extend(model.get(&**n)),
        SegKind::Props(ns) => {
            if let Value::Object(m) = model {
                children.extend(ns.iter().filter_map(|n| m.get(&**n)));
            }
        }
        SegKind::Index(_) | SegKind::Indexes(_) | SegKind::Slice(..) => {
            if let Value::Array(a) = model {
                let len = a.len() as i64;
                let mut pick = |k: i64| {
                    let eff = if k < 0 { len + k } else { k };
                    if let Some(v) = usize::try_from(eff).ok().and_then(|e| a.get(e)) {
                        children.push(v);
                    }
                };
                match kind {
                    SegKind::Index(k) => pick(i64::from(*k)),
                    SegKind::Indexes(ks) => ks.iter().for_each(|k| pick(i64::from(*k))),
                    SegKind::Slice(f, t) => slice_indexes(a.len(), *f, *t).for_each(pick),
                    _ => {}
                }
            }
        }
        SegKind::Wildcard => match model {
            Value::Object(m) => children.extend(m.values()),
            Value::Array(a) => children.extend(a.iter()),
            _ => {}
        },
        SegKind::Scan => {
            let mut stack = vec![model];
            while let Some(node) = stack.pop() {
                cx.step()?;
                children.push(node);
                match node {
                    Value::Object(m) => stack.extend(m.values()),
                    Value::Array(a) => stack.extend(a.iter()),
                    _ => {}
                }
            }
        }
        SegKind::Filter(pred) => {
            match model {
                Value::Object(_) => children.push(model),
                Value::Array(a) => children.extend(a.iter()),
                _ => {}
            }
            probe_pred(pred, &children, cx, seen)?;
        }
        SegKind::Func(f) => {
            for p in &f.params {
                if let Param::Path(pp) = p {
                    let root = cx.root;
                    let e = probe_path(pp, root, cx, seen)?;
                    *seen.entry(pp as *const Path as usize).or_insert(false) |= e;
                }
            }
            *found = true;
            return Ok(());
        }
    }
    for c in children {
        probe_walk(path, i + 1, c, cx, seen, found)?;
    }
    Ok(())
}

fn probe_pred<'a>(pred: &'a Pred, cands: &[&'a Value], cx: &mut Cx<'a>, seen: &mut Seen) -> R<()> {
    match pred {
        Pred::Or(v) | Pred::And(v) => {
            for p in v {
                probe_pred(p, cands, cx, seen)?;
            }
        }
        Pred::Not(p) => probe_pred(p, cands, cx, seen)?,
        Pred::Exists { path, .. } => probe_operand(path, cands, cx, seen)?,
        Pred::Cmp { left, right, .. } => {
            for o in [left, right] {
                if let Operand::Path(p) = o {
                    probe_operand(p, cands, cx, seen)?;
                }
            }
        }
    }
    Ok(())
}

fn probe_operand<'a>(p: &'a Path, cands: &[&'a Value], cx: &mut Cx<'a>, seen: &mut Seen) -> R<()> {
    let mut e = false;
    if p.root_is_doc {
        let root = cx.root;
        e = probe_path(p, root, cx, seen)?;
    } else {
        for c in cands {
            if probe_path(p, c, cx, seen)? {
                e = true;
                break;
            }
        }
    }
    *seen.entry(p as *const Path as usize).or_insert(false) |= e;
    Ok(())
}
