//! What part of an event a trigger's filters can read, and a parse of the body that builds only that part.
//!
//! # Why it exists
//!
//! Profiled on the load bench's 50 filtered subscriptions, building the event's `serde_json::Value` tree (its
//! allocations, the `BTreeMap` inserts, the frees) was about half of the relay's CPU and four fifths of what the
//! filters add to an event; evaluating the filters themselves was a few per cent (BENCHMARKS.md, "Seventh
//! look"). Filters read a few fields: ten filters over `$.changes[?(@.attribute == …)]` read `attribute` of each
//! change and nothing else. So when the routing table is built, the filters' paths are turned into a [`Needs`]
//! tree (the object members each path names, what it reads of array elements, and where it needs a whole
//! subtree), and per event [`Needs::parse`] builds a `Value` holding only those members. The evaluator is not
//! changed: it runs on the projected document and, by construction, cannot tell it from the whole one.
//!
//! # Why the verdicts cannot change
//!
//! The evaluator leaves a node only by these steps (`eval.rs`): a member by name (`.a`, `['a','b']`), array
//! elements (`[n]`, `[1,2]`, slices, and `[?(…)]`, which on an array tests each element and on an object the
//! object itself), or a step that reads everything below (`*`, `..`, a function, a value compared or put in a
//! value list, an existence test's node). The tree keeps every member a path names, every element of every array
//! it reaches (projected the same way, so indexes and lengths are kept), every primitive it reaches as it is,
//! and the whole subtree wherever a step reads everything. A member no path names is the only thing left out,
//! and no step can reach it. `$` paths inside a predicate are added from the root; `@` paths from the node the
//! predicate tests (and, as Jayway evaluates a bare existence test's `$` path against the element, both).
//! Held by the differential property tests in `props.rs` and the `filter_set` fuzz target, which evaluate the
//! set on the projected parse against each filter alone on the whole document.
//!
//! # One verdict on the body
//!
//! Members left out are still read by serde_json (`deserialize_any` into a visitor that keeps nothing), so a body
//! the whole parse refuses (nesting past 128, a number out of range, a lone surrogate) is refused here too, with
//! serde_json's own message: whether an event is accepted does not depend on which fields the filters read.
//! What differs is the step budget: a smaller document takes fewer steps, so a filter that ran out of steps on
//! the whole document may get a verdict on its projection.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::parser::{Func, Operand, Param, Path, Pred, Seg, SegKind};
use super::Filter;

/// The part of a JSON value that filters can read (module doc). `Default` is "this node's kind and its primitive
/// value, no object member".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The whole subtree.
    all: bool,
    /// Object members read by name, and what is read of each.
    keys: BTreeMap<Box<str>, Needs>,
    /// What is read of each element, when the node is an array (`None`: nothing below each element's kind).
    elems: Option<Box<Needs>>,
}

/// How a path's last node is used.
#[derive(Clone, Copy)]
enum End {
    /// Only whether it is there (the filter's own path; an existence test): its kind, not its members.
    Exists,
    /// As a value (compared, in a value list, a function's argument): the whole subtree.
    Value,
}

impl Needs {
    fn everything() -> Self {
        Needs {
            all: true,
            ..Needs::default()
        }
    }

    /// Everything the filter can read of the event.
    pub fn of(filter: &Filter) -> Self {
        let mut root = Needs::default();
        let top = path(&filter.path, End::Exists, &mut root);
        root.merge(top);
        root
    }

    /// The whole document is needed: parse it as it is.
    pub fn is_everything(&self) -> bool {
        self.all
    }

    /// Add what `other` reads.
    pub fn merge(&mut self, other: Needs) {
        if self.all {
            return;
        }
        if other.all {
            *self = Needs::everything();
            return;
        }
        for (k, n) in other.keys {
            self.keys.entry(k).or_default().merge(n);
        }
        if let Some(e) = other.elems {
            self.elems.get_or_insert_with(Box::default).merge(*e);
        }
    }

    /// Parse `body` into a `Value` that holds what these needs read (all of it when [`Needs::is_everything`]).
    /// Refuses exactly the bodies serde_json's whole parse refuses, with its error (module doc).
    pub fn parse(&self, body: &[u8]) -> Result<Value, serde_json::Error> {
        if self.all {
            return serde_json::from_slice(body);
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let v = Project(self).deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

/// What `p` reads from the node it starts at; `$` paths met inside its predicates add to `root`.
fn path(p: &Path, end: End, root: &mut Needs) -> Needs {
    if p.inverted_fn {
        // `$..x.fn()`: a deep scan, everything below anyway.
        return Needs::everything();
    }
    segs(&p.segs, end, root)
}

fn segs(s: &[Seg], end: End, root: &mut Needs) -> Needs {
    let Some((seg, rest)) = s.split_first() else {
        return match end {
            End::Exists => Needs::default(),
            End::Value => Needs::everything(),
        };
    };
    match &seg.kind {
        SegKind::Prop(n) => {
            let mut out = Needs::default();
            out.keys.insert(n.clone(), segs(rest, end, root));
            out
        }
        SegKind::Props(ns) => {
            let below = segs(rest, end, root);
            let mut out = Needs::default();
            for n in ns.iter() {
                out.keys.entry(n.clone()).or_default().merge(below.clone());
            }
            out
        }
        SegKind::Index(_) | SegKind::Indexes(_) | SegKind::Slice(..) => Needs {
            elems: Some(Box::new(segs(rest, end, root))),
            ..Needs::default()
        },
        SegKind::Wildcard | SegKind::Scan => Needs::everything(),
        SegKind::Func(f) => {
            func_params(f, root);
            Needs::everything()
        }
        SegKind::Filter(p) => {
            // On an object the predicate tests the object and the path goes on from it; on an array, the same
            // for each element. Which one it is, only the event says: both.
            let mut here = pred(p, root);
            here.merge(segs(rest, end, root));
            let mut out = here.clone();
            out.elems.get_or_insert_with(Box::default).merge(here);
            out
        }
    }
}

/// `$` paths among a function's arguments read from the root (`@` ones from the node, which a function reads
/// whole anyway).
fn func_params(f: &Func, root: &mut Needs) {
    for p in &f.params {
        if let Param::Path(p) = p {
            if p.root_is_doc {
                let n = path(p, End::Value, root);
                root.merge(n);
            }
        }
    }
}

/// What predicate `p` reads from the node it tests (`@`); its `$` paths add to `root`.
fn pred(p: &Pred, root: &mut Needs) -> Needs {
    match p {
        Pred::Or(v) | Pred::And(v) => {
            let mut out = Needs::default();
            for p in v {
                let n = pred(p, root);
                out.merge(n);
            }
            out
        }
        Pred::Not(p) => pred(p, root),
        Pred::Exists { path: p, .. } => {
            // The evaluator walks an existence test's path from the tested node, `$` or `@` (Jayway's quirk).
            let n = path(p, End::Exists, root);
            if p.root_is_doc {
                root.merge(n.clone());
            }
            n
        }
        Pred::Cmp { left, right, .. } => {
            let mut out = Needs::default();
            for o in [left, right] {
                if let Operand::Path(p) = o {
                    let n = path(p, End::Value, root);
                    if p.root_is_doc {
                        root.merge(n);
                    } else {
                        out.merge(n);
                    }
                }
            }
            out
        }
    }
}

/// Builds a node of the projected document from the body (module doc).
struct Project<'n>(&'n Needs);

/// What each array element needs when the node says nothing of them.
static NOTHING: Needs = Needs {
    all: false,
    keys: BTreeMap::new(),
    elems: None,
};

impl<'de> DeserializeSeed<'de> for Project<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.all {
            Value::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Project<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // Primitives as `serde_json::Value`'s own visitor makes them.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let each = self.0.elems.as_deref().unwrap_or(&NOTHING);
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Project(each))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Member(self.0))? {
            match key {
                Some((name, needs)) => {
                    let v = map.next_value_seed(Project(needs))?;
                    out.insert(name, v);
                }
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// An object member's name: kept (with what is read of it) when the needs name it, else `None`.
struct Member<'n>(&'n Needs);

impl<'de, 'n> DeserializeSeed<'de> for Member<'n> {
    type Value = Option<(String, &'n Needs)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for Member<'n> {
    type Value = Option<(String, &'n Needs)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object member's name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.keys.get(v).map(|n| (v.to_owned(), n)))
    }
}

/// A value nothing reads, checked as the whole parse would check it and then dropped: serde_json's
/// `deserialize_any` decodes every string's escapes, every number and counts the nesting, where `IgnoredAny`
/// (its `deserialize_ignored_any`) only skips the grammar.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(filters: &[&str]) -> Needs {
        let mut n = Needs::default();
        for f in filters {
            n.merge(Needs::of(&Filter::compile(f).unwrap()));
        }
        n
    }

    /// Table: filters → the projection of one document (as JSON text).
    #[test]
    fn what_each_kind_of_step_keeps() {
        let doc = r#"{"identity":{"id":"i","name":"n","type":"IDENTITY","attrs":{"a":1}},
            "changes":[{"attribute":"a","oldValue":"o","newValue":"v"},{"attribute":"b","oldValue":{"x":1}}],
            "s":"text","_metadata":{"invocationId":"x"}}"#;
        let check = |filters: &[&str], want: &str| {
            let got = needs(filters).parse(doc.as_bytes()).unwrap();
            let want: Value = serde_json::from_str(want).unwrap();
            assert_eq!(got, want, "{filters:?}");
        };
        check(
            &["$.changes[?(@.attribute == 'a')]"],
            r#"{"changes":[{"attribute":"a"},{"attribute":"b"}]}"#,
        );
        check(
            &["$[?($.identity.name == 'n')]", "$.changes[1]"],
            r#"{"identity":{"name":"n"},"changes":[{},{}]}"#,
        );
        // A value compared is kept whole; an existence test keeps the node's kind.
        check(
            &["$.changes[?(@.oldValue == 1)]", "$.identity.attrs"],
            r#"{"changes":[{"oldValue":"o"},{"oldValue":{"x":1}}],"identity":{"attrs":{}}}"#,
        );
        // `@` in a root filter is the root; a primitive reached is kept as it is.
        check(&["$[?(@.s)]", "$.s[?(@.x)]"], r#"{"s":"text"}"#);
        // Wildcards, deep scans and functions read everything below.
        check(
            &["$.identity.*"],
            r#"{"identity":{"id":"i","name":"n","type":"IDENTITY","attrs":{"a":1}}}"#,
        );
        assert!(needs(&["$..attribute"]).is_everything());
        assert!(needs(&["$.length()"]).is_everything());
        assert!(needs(&["$[?(@.length() > 2)]"]).is_everything());
        // A `$` path inside an element's predicate reads from the root.
        check(
            &["$.changes[?(@.attribute == $.identity.id)]"],
            r#"{"changes":[{"attribute":"a"},{"attribute":"b"}],"identity":{"id":"i"}}"#,
        );
    }

    /// Filters that match the document, one per rule of the module doc: each still matches on what it reads
    /// (and a copy that must not match still does not).
    #[test]
    fn filters_that_match_still_match_on_what_they_read() {
        let doc = r#"{"identity":{"id":"i","name":"n","manager":{"id":"m"}},"n":3,
            "changes":[{"attribute":"a","oldValue":"o","newValue":"v"},{"attribute":"b","newValue":["x","y"]}],
            "tags":["t1","t2"],"_metadata":{"invocationId":"x"}}"#;
        let whole: Value = serde_json::from_str(doc).unwrap();
        for f in [
            "$[?($.identity.name == 'n')]",
            "$[?(@.identity.manager.id == 'm')]",
            "$.changes[?(@.attribute == 'a')]",
            "$.changes[?(@.attribute == $.identity.name || @.attribute == 'b')]",
            "$.changes[?(@.attribute == 'b' && @.newValue contains 'y')]",
            "$.changes[?(@.newValue == ['x','y'])]",
            "$.changes[?(@.attribute in ['b'])].newValue[1]",
            "$.changes[?($.n > 2)]",
            "$.changes[?($.attribute)]",
            "$.changes[?(!@.oldValue)]",
            "$[?(@.tags anyof ['t2'])]",
            "$.tags[?(@ == 't1')]",
            "$.changes[-1:]",
            "$.changes[1]['attribute','newValue']",
            "$.identity[?(@.id =~ /I/i)]",
            "$.changes.length()",
            "$..manager",
            "$.changes[?(@.newValue.length() == 2)]",
        ] {
            let filter = Filter::compile(f).unwrap();
            assert_eq!(
                filter.evaluate(&whole),
                Ok(true),
                "{f} must match the whole"
            );
            let projected = Needs::of(&filter).parse(doc.as_bytes()).unwrap();
            assert_eq!(filter.evaluate(&projected), Ok(true), "{f} on {projected}");
            // Every string literal changed (`'n'` → `'zn'`), so most of these no longer match.
            let mut other = String::new();
            let mut open = false;
            for c in f.chars() {
                other.push(c);
                if c == '\'' {
                    if !open {
                        other.push('z');
                    }
                    open = !open;
                }
            }
            let negated = Filter::compile(&other).unwrap();
            let projected = Needs::of(&negated).parse(doc.as_bytes()).unwrap();
            assert_eq!(
                negated.evaluate(&projected),
                negated.evaluate(&whole),
                "{} on {projected}",
                negated.source()
            );
        }
    }

    /// The members left out are checked as the whole parse checks them: the same verdict, the same message.
    #[test]
    fn a_body_the_whole_parse_refuses_is_refused_with_its_message() {
        let n = needs(&["$[?($.identity.name == 'a')]"]);
        let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        for field in [
            deep.as_str(),
            r#""\ud800""#,
            "1e400",
            &"9".repeat(400),
            r#"{"a":"\u00zz"}"#,
        ] {
            let body = format!(r#"{{"identity":{{"name":"a"}},"x":{field}}}"#);
            let whole = serde_json::from_str::<Value>(&body)
                .unwrap_err()
                .to_string();
            let projected = n.parse(body.as_bytes()).unwrap_err().to_string();
            assert_eq!(projected, whole, "{field}");
        }
    }
}
