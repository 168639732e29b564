//! Subscription filters: Jayway JsonPath expressions evaluated on trigger events.
//!
//! # Why this module exists
//!
//! An ISC trigger subscription may carry a `filter`; ISC only delivers an event
//! when the filter, a JSONPath expression in the **Jayway JsonPath** dialect
//! (SailPoint evaluates with Jayway 2.9.0), yields a non-empty result on the
//! event. The relay must take the same decision on the same filter text, so
//! this module compiles filters once ([`Filter::compile`]) and evaluates them
//! per event ([`Filter::matches`]); [`validate`] answers like ISC's
//! `validate-filter` endpoint.
//!
//! # Why it is hand-written
//!
//! The Rust JSONPath crates implement RFC 9535 (`serde_json_path`,
//! `jsonpath-rust` ≥ 1) or an older Goessner dialect (`jsonpath_lib`). None
//! accepts what ISC filters are written in: the infix operators `in`, `nin`,
//! `subsetof`, `anyof`, `noneof`, `size`, `empty`, `contains`, `=~ /re/i`
//! (jsonpath-rust only has `in(..)`-style functions), `[?(..)]` applied to an
//! *object* (ISC's `$[?($.identityId == "x")]` tests the root object itself
//! and yields it), Jayway's comparison rules (`"1" == 1`, no ordering
//! between a string and a number, `!=` true on a missing field), Java's
//! regex semantics, definite vs
//! indefinite path results, Jayway's value-list conversions and
//! `PathNotFoundException` behaviour. A hand-written parser/evaluator
//! reproducing Jayway's rules is smaller and more predictable than bending an
//! RFC 9535 engine. No Rust crate implementing the Jayway dialect was found.
//!
//! # Semantics (Jayway 2.9.0, default configuration)
//!
//! * **Match** = the expression yields at least one result. A definite path
//!   (only `.name`, `['name']`, `[n]`) to a missing node yields nothing
//!   (Jayway throws `PathNotFoundException`: no match, reported as
//!   `Ok(false)`, not as an error). A definite path to a JSON `null` *is* a
//!   result (Jayway returns `null`), so `$.x` matches `{"x": null}`. An
//!   indefinite path (`*`, `..`, `[?()]`, slices, unions) matches when its
//!   result list is non-empty. A path ending in a function (`$.concat(..)`,
//!   `$.changes.length()`) yields the function's value, so it matches
//!   whenever the path before the function is found.
//! * **Filters** `[?(..)]` on an array keep the elements that satisfy the
//!   predicate; on an object they test the object itself and yield it; on a
//!   primitive reached by a definite path they are an evaluation error.
//!   Inside a filter `@` is the element and `$` the event root — except in
//!   a bare existence test, where Jayway evaluates `$...` against the element
//!   too (kept).
//! * **Existence**: a bare path is an existence test (definite path: the node
//!   exists, `null` included; indefinite path: no missing property was met on
//!   the way, even if the list is empty). `!path` negates it.
//! * **Comparisons** follow Jayway's `ValueNode`s: a path value is undefined
//!   when missing (`== x` false, `!= x` **true**), numbers compare
//!   numerically (`1 == 1.0`), a string equals a number when it is the
//!   number's Java text (`"1" == 1`), `< <= > >=` work on number/number
//!   and string/string (UTF-16 order) only: a string and a number are
//!   unordered, as are booleans, null, arrays and objects, so the operator is
//!   false (and `!(..)` of it true). Jayway added a mixed string/number
//!   ordering after 2.9.0; ISC runs 2.9.0. Arrays/objects are equal when structurally equal. `===`/`!==`
//!   also require the same kind of value.
//! * `=~ /re/flags`: full-string match (Java `matches()`) with Java
//!   `Pattern` semantics (`java_regex.rs`): `\d \w \s` and POSIX classes
//!   ASCII-only, `/i` ASCII-only case folding, `.` stopping at Java's line
//!   terminators; Jayway's flags `d i m s u x U` (also inline, with Java's
//!   meaning); the other side is converted to text
//!   (strings, numbers, booleans; anything else is `""`, so a missing field
//!   matches `/.*/`); on an array, any element may match.
//! * `in`/`nin` (right side must be an array), `contains` (substring, or
//!   array membership), `subsetof`/`anyof`/`noneof` (both sides arrays),
//!   `size n` (string length in UTF-16 units or array length), `empty
//!   true|false` (string or array; on an object Jayway 2.9.0 throws a
//!   `ClassCastException`, so the whole expression does not match): as
//!   Jayway's evaluators, including
//!   Jayway's value-list conversion (array elements that are arrays/objects
//!   make the whole evaluation fail; string elements that look like paths or
//!   JSON never compare equal). `all`, `type`, `matches` parse but never
//!   match (Jayway cannot use them from a string filter).
//! * An error while evaluating a filter on one element (e.g. `in` on a
//!   non-array) only rejects that element, as Jayway does; errors Jayway does
//!   not catch there (nested values in a value list, aggregation over no
//!   number, the step budget) fail the whole evaluation → no match.
//! * Functions: `length()`/`size()` (arrays, objects; `null` otherwise),
//!   `min() max() avg() sum() stddev()` (numbers of the array plus numeric
//!   arguments; none at all is an error), `concat(..)`. Arguments: JSON
//!   literals and paths. Inside filters only argument-less calls
//!   (`@.list.length()`) are possible, as in Jayway.
//! * Slices: `[from:to]` as Jayway (a third `:step` part is ignored, a
//!   negative `to` in `[from:to]` selects nothing). Negative indexes count
//!   from the end.
//!
//! Not supported (compile error): Jayway's `first() last() index() keys()
//! append() distinct()` functions, a function in the middle of a path,
//! `[?]` placeholders (they need Java `Predicate` objects), regex constructs
//! the `regex` crate cannot express with Java's meaning (backreferences,
//! look-around, possessive quantifiers, `\Q..\E`, inline `(?d)`; the list is
//! in `java_regex.rs`).
//!
//! Known differences, all on inputs no sensible filter uses: unknown
//! function names and invalid JSON literals / function arguments are
//! rejected when compiling (Jayway fails when evaluating); leading and
//! trailing whitespace of the whole expression is ignored (Jayway reads a
//! trailing newline as a property name); regex line anchors and Unicode case
//! folding differ in corners listed in `java_regex.rs`; a number's Java text
//! uses Rust's shortest float digits;
//! deep equality gives up (not equal) below 256 levels; values nested deeper
//! than 128 levels are not copied or printed (evaluation error); Jayway keeps
//! per-token state across deep scans (`$..[*].x`) that can drop results,
//! which is not reproduced (only its stateless part is, see `eval.rs`).
//!
//! These claims are measured, not reasoned: `conformance.rs` (its unit tests)
//! holds the relay to a corpus of 4,710 filter/payload pairs with Jayway
//! 2.9.0's own verdicts (`tests/fixtures/jayway/`), and lists every pair on
//! which they still differ: 7 today, all regexes (`$` before a final line
//! terminator, and six constructs refused at load).
//!
//! # Bounds
//!
//! Nesting depth (filters, parentheses, `!`, JSON literals) is limited to 64,
//! paths to 128 segments, expressions to 16 KiB; regexes are compiled with
//! size limits and match in linear time. Evaluation is allocation-free for
//! definite paths, never recurses on the document (the deep scan uses an
//! explicit stack and visits each node once), bounds its recursion through
//! nested filters, and stops with [`EvalError::TooExpensive`] after a fixed
//! budget of 2 million steps (tens of milliseconds), so a hostile filter or
//! document cannot loop or exhaust the stack. The filters of one trigger share
//! a budget per event ([`EventBudget`], [`MAX_EVENT_STEPS`] = twice one
//! filter's), each an equal share of what is left, so 50 hostile subscriptions
//! cost an event no more than two, and cannot starve a cheap one. Nothing
//! panics on any input.

mod eval;
mod java_regex;
mod lexer;
mod needs;
mod parser;
pub mod set;

pub use needs::Needs;
pub use set::FilterSet;
#[cfg(test)]
mod conformance;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

/// Maximum length of a filter expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 16 * 1024;
/// Regular expressions (`=~`) one filter may hold: each may compile to up to a MiB, and a trigger holds up to 50
/// filters, so the count is what bounds the memory a caller's filters can take.
pub const MAX_REGEXES: usize = 8;

/// Steps all the filters of one trigger may take together on one event ([`EventBudget`]): twice what one filter
/// may take, so the subscriptions of a trigger (ISC allows 50) cannot hold an ingress worker 50 times longer than one.
pub const MAX_EVENT_STEPS: u64 = 2 * eval::MAX_STEPS;

/// The evaluation budget of one event, shared fairly by the filters it is evaluated against.
///
/// Each filter gets an equal share of what is left (`remaining / filters left`, at most one filter's own
/// [`eval::MAX_STEPS`]): steps a cheap filter does not use go to the filters after it, while an expensive one
/// can never take more than its share, so hostile filters written first cannot starve a cheap filter written
/// later. A filter over its share fails with [`EvalError::OverEventBudget`] (no match: fail closed).
#[derive(Debug, Clone)]
pub struct EventBudget {
    remaining: u64,
    filters: usize,
}

impl EventBudget {
    /// A budget of [`MAX_EVENT_STEPS`] for `filters` evaluations.
    pub fn new(filters: usize) -> Self {
        Self::with_steps(MAX_EVENT_STEPS, filters)
    }

    /// A budget of `steps` for `filters` evaluations.
    pub fn with_steps(steps: u64, filters: usize) -> Self {
        Self {
            remaining: steps,
            filters,
        }
    }

    /// Steps not yet used.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// One of the filters is decided without an evaluation (the filter set's index): it uses no steps and
    /// gives up its share to the ones after it.
    pub(crate) fn skip(&mut self) {
        self.filters = self.filters.saturating_sub(1);
    }

    /// The next filter's share: an equal part of what is left.
    pub(crate) fn share(&self) -> u64 {
        self.remaining / self.filters.max(1) as u64
    }

    /// `used` steps were taken for the next filter (which is then counted by [`skip`](Self::skip)).
    pub(crate) fn spend(&mut self, used: u64) {
        self.remaining -= used.min(self.remaining);
    }
}

/// A compiled filter. Cheap to clone (the compiled form is shared);
/// `Send + Sync`.
#[derive(Clone)]
pub struct Filter {
    source: Arc<str>,
    path: Arc<parser::Path>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why a filter does not compile. `position` is the 0-based char offset of
/// the offending character in the expression given to [`Filter::compile`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{message} at position {position}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

/// Why evaluating a compiled filter failed (the event then does not match).
/// These are the cases where Jayway throws out of `JsonPath.read`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalError {
    /// `[?(..)]` applied to a string/number/boolean/null reached by a
    /// definite path (Jayway: "Filter can not be applied to primitives").
    #[error("a filter cannot be applied to a primitive value")]
    FilterOnPrimitive,
    /// An operator needing a JSON array got something else.
    #[error("the operand of `{0}` must be a JSON array")]
    ExpectedArray(&'static str),
    /// An operator needing a boolean got something else.
    #[error("the operand of `{0}` must be a boolean")]
    ExpectedBoolean(&'static str),
    /// `all`, `type`, `matches`: valid syntax, unusable from a string filter.
    #[error("operator `{0}` cannot be evaluated from a string filter")]
    UnsupportedOperator(&'static str),
    /// A value list (`in`, `anyof`, `contains`, ...) holds an array or object.
    #[error("a value list contains a nested array or object")]
    NestedListValue,
    /// `min()`, `max()`, `avg()`, `sum()`, `stddev()` found no number.
    #[error("aggregation function `{0}()` found no numeric input")]
    EmptyAggregation(&'static str),
    /// `empty` applied to an object (Jayway 2.9.0 throws a
    /// `ClassCastException` there, which aborts the whole read).
    #[error("`empty` cannot be applied to an object")]
    EmptyOnObject,
    /// The `exists` operator needs a boolean operand.
    #[error("the `exists` operator needs a boolean operand")]
    ExistsOperand,
    /// The evaluation step budget was exhausted.
    #[error("evaluation exceeded {0} steps")]
    TooExpensive(u64),
    /// The filter's share of the event's budget ([`EventBudget`]) was exhausted: the trigger's filters together
    /// may not take more than [`MAX_EVENT_STEPS`] per event.
    #[error("evaluation exceeded its share of the event's filter budget ({0} steps)")]
    OverEventBudget(u64),
    /// Evaluation recursion (nested filters) exceeded its bound.
    #[error("evaluation nested deeper than {0} levels")]
    TooDeep(u32),
}

impl Filter {
    /// Parse and compile `expr` once. Leading/trailing whitespace is ignored;
    /// an expression not starting with `$` or `@` gets Jayway's implicit `$.`
    /// prefix (`identity.name` = `$.identity.name`).
    pub fn compile(expr: &str) -> Result<Filter, FilterError> {
        let trimmed_start = expr.trim_start();
        let lead_chars = expr[..expr.len() - trimmed_start.len()].chars().count();
        let t = trimmed_start.trim_end();
        if t.is_empty() {
            return Err(FilterError {
                position: lead_chars,
                message: "empty expression".into(),
            });
        }
        if expr.len() > MAX_EXPRESSION_LEN {
            return Err(FilterError {
                position: expr
                    .char_indices()
                    .take_while(|(i, _)| *i < MAX_EXPRESSION_LEN)
                    .count(),
                message: format!("expression longer than {MAX_EXPRESSION_LEN} bytes"),
            });
        }
        // Counted on the text (a `=~` inside a string literal counts too: the bound errs on the safe side).
        let regexes = t.matches("=~").count();
        if regexes > MAX_REGEXES {
            return Err(FilterError {
                position: lead_chars,
                message: format!(
                    "{regexes} regular expressions (=~); a filter may hold at most {MAX_REGEXES}"
                ),
            });
        }
        let implicit = !t.starts_with(['$', '@']);
        let owned;
        let src: &str = if implicit {
            owned = format!("$.{t}");
            &owned
        } else {
            t
        };
        let shift = if implicit { 2 } else { 0 };
        match parser::compile_path_src(src, 0) {
            Ok(path) => Ok(Filter {
                source: expr.into(),
                path: Arc::new(path),
            }),
            Err((byte, message)) => {
                let chars = src.char_indices().take_while(|(i, _)| *i < byte).count();
                Err(FilterError {
                    position: chars.saturating_sub(shift) + lead_chars,
                    message,
                })
            }
        }
    }

    /// `P` when the expression is exactly `$[?(P)]`: one filter on the root, which selects the payload
    /// itself when `P` holds (so `$[?((P1) || (P2))]` matches exactly when one of the two filters does).
    pub fn root_predicate(&self) -> Option<&str> {
        let one_root_filter = self.path.root_is_doc
            && self.path.segs.len() == 1
            && matches!(self.path.segs[0].kind, parser::SegKind::Filter(_));
        if !one_root_filter {
            return None;
        }
        let inner = self
            .source
            .trim()
            .strip_prefix("$[?(")?
            .strip_suffix(")]")?;
        // `$[?(@.a)] || $[?(@.b)]`-like texts cannot reach here (one segment), but the cut must still be the
        // filter's own parentheses: the predicate alone must compile as one.
        Filter::compile(&format!("$[?({inner})]"))
            .ok()
            .filter(|f| f.path.segs.len() == 1)
            .map(|_| inner)
    }

    /// The expression as given to [`Filter::compile`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the expression yields a non-empty result on `doc`. Never
    /// panics; evaluation errors count as no match (fail closed).
    pub fn matches(&self, doc: &serde_json::Value) -> bool {
        self.evaluate(doc).unwrap_or(false)
    }

    /// Like [`Filter::matches`] but tells an evaluation error apart.
    pub fn evaluate(&self, doc: &serde_json::Value) -> Result<bool, EvalError> {
        eval::evaluate_top(&self.path, doc)
    }

    /// [`Filter::evaluate`] within this filter's share of an event's `budget`, which it then draws from.
    pub fn evaluate_in(
        &self,
        doc: &serde_json::Value,
        budget: &mut EventBudget,
    ) -> Result<bool, EvalError> {
        let (verdict, used) = eval::evaluate_limited(&self.path, doc, budget.share());
        budget.spend(used);
        budget.skip();
        verdict
    }
}

/// ISC's `validate-filter` answer (`ValidateFilterOutputDto`) for a filter and
/// a sample input.
///
/// ISC documents the flags only as "the filter expression is valid against
/// the input" (`isValid`), "is using a valid JSON path" (`isValidJSONPath`)
/// and "is using an existing path" (`isPathExist`). Here they mean:
///
/// * `is_valid_json_path`: the expression compiles ([`Filter::compile`]).
/// * `is_path_exist`: the expression compiles and every path it references
///   selects something in `input`: its own path, with each `[?(..)]` letting
///   all its candidates through (the object itself, or every array
///   element), and each path used inside a filter — `$...` paths on the
///   input root, `@...` paths on at least one candidate of their filter
///   (path arguments of functions on the root). So `$[?($.identityId ==
///   "x")]` has existing paths on `{"identityId": "y"}`, and
///   `$.changes[?(@.attribute == "x")]` does not when `changes` is missing,
///   empty, or no change has an `attribute`.
/// * `is_valid`: the expression compiles and yields a non-empty result on
///   `input` ([`Filter::matches`]), i.e. the subscription would fire for an
///   event equal to `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub is_valid: bool,
    #[serde(rename = "isValidJSONPath")]
    pub is_valid_json_path: bool,
    pub is_path_exist: bool,
}

/// Validate `expr` against `input` the way ISC's validate-filter endpoint
/// answers (see [`Validation`] for the meaning of each flag).
pub fn validate(expr: &str, input: &serde_json::Value) -> Validation {
    match Filter::compile(expr) {
        Err(_) => Validation {
            is_valid: false,
            is_valid_json_path: false,
            is_path_exist: false,
        },
        Ok(f) => Validation {
            is_valid: f.matches(input),
            is_valid_json_path: true,
            is_path_exist: eval::probe(&f.path, input),
        },
    }
}
