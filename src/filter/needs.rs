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
//! The parse is the relay's own (`Projector`, on `crate::json`'s scanner): it builds the members the needs name
//! and skips the rest sixteen bytes at a time. What it skips is still checked as serde_json's whole parse checks
//! it (`AsSerdeJson`: a skipped string with an escape is decoded, a number that could be out of range is read,
//! the depth is counted), so a body the whole parse refuses (nesting past 128, a number out of range, a lone
//! surrogate) is not accepted here either: whether an event is accepted does not depend on which fields the
//! filters read. Whenever the projection is not sure (any refusal, nesting past 100), it hands the body to
//! serde_json's whole parse, whose verdict and message are then the answer, and whose whole document has the
//! same filter verdicts. A property test (`props.rs`, `the_projection_refuses_what_the_whole_parse_refuses`)
//! holds the two to the same refusals and messages on generated texts with those edge cases in them.
//! What differs is the step budget: a smaller document takes fewer steps, so a filter that ran out of steps on
//! the whole document may get a verdict on its projection.
//!
//! The same walk builds either a `serde_json::Value` (for the evaluator) or a [`Doc`] that borrows from the body
//! (for the filter set's index, which reads only members, elements and strings): the projector is generic over
//! its `Build`er, so what it checks and what it refuses are the same for both.
//!
//! Why not serde_json's own deserializer with a visitor that keeps only the named members (the first version):
//! its `deserialize_any` over what is skipped decodes every string and validates its UTF-8 again, which was
//! about a third of a filtered event's cost (BENCHMARKS.md, "Eighth look").

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::json;

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
        let projected = self.project(body, Owned::default()).map(|(v, _)| v);
        // Not sure (module doc): serde_json's whole parse decides, and what it builds has the same verdicts.
        match projected {
            Some(v) => Ok(v),
            None => serde_json::from_slice(body),
        }
    }
}

/// Whether predicate `p` reads nothing through `$` (so it can be tested on a node alone).
pub(crate) fn reads_only_its_node(p: &Pred) -> bool {
    let mut root = Needs::default();
    pred(p, &mut root);
    root == Needs::default()
}

impl Needs {
    /// What the filter set's index reads for a test of `q` (a simple path, read as a value): from each element
    /// of the array at the simple path `array`, or from the root when `array` is empty.
    pub(crate) fn of_index(array: &[Seg], q: &Path) -> Needs {
        let mut root = Needs::default();
        let at_q = path(q, End::Value, &mut root);
        let mut n = if array.is_empty() {
            at_q
        } else {
            Needs {
                elems: Some(Box::new(at_q)),
                ..Needs::default()
            }
        };
        for seg in array.iter().rev() {
            n = match &seg.kind {
                SegKind::Prop(k) => Needs {
                    keys: BTreeMap::from([(k.clone(), n)]),
                    ..Needs::default()
                },
                SegKind::Index(_) => Needs {
                    elems: Some(Box::new(n)),
                    ..Needs::default()
                },
                _ => Needs::everything(),
            };
        }
        root.merge(n);
        root
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

/// What the projecting parse builds, node by node: a `serde_json::Value` for the evaluator ([`Owned`]), or a
/// [`Doc`] that borrows from the body for the filter set's index. Containers are built in order
/// (`begin_*`, then their members or items, then `end_*`), so a builder keeps a stack of the open ones.
trait Build<'a> {
    type Node;
    fn string(&mut self, s: std::borrow::Cow<'a, str>) -> Self::Node;
    /// A number's text, as the scanner found it (not yet checked for range).
    fn number(&mut self, text: &'a str) -> json::Result<Self::Node>;
    fn literal(&mut self, v: Value) -> Self::Node;
    /// A container read whole, already checked as serde_json's parse checks it.
    fn whole(&mut self, text: &'a str) -> json::Result<Self::Node>;
    fn begin_object(&mut self);
    fn begin_array(&mut self);
    fn member(&mut self, key: std::borrow::Cow<'a, str>, v: Self::Node);
    fn item(&mut self, v: Self::Node);
    /// The innermost open container ends: `text` is all of it.
    fn end_object(&mut self, text: &'a str) -> Self::Node;
    fn end_array(&mut self, text: &'a str) -> Self::Node;
}

/// Builds a `serde_json::Value`.
#[derive(Default)]
struct Owned {
    /// The open objects and arrays (`Map::new` and `Vec::new` do not allocate).
    objects: Vec<Map<String, Value>>,
    arrays: Vec<Vec<Value>>,
}

impl<'a> Build<'a> for Owned {
    type Node = Value;

    fn string(&mut self, s: std::borrow::Cow<'a, str>) -> Value {
        Value::String(s.into_owned())
    }

    fn number(&mut self, text: &'a str) -> json::Result<Value> {
        // As serde_json makes it (`-0` is a float, a long integer a float or out of range).
        serde_json::from_str(text).map_err(|_| UNSURE)
    }

    fn literal(&mut self, v: Value) -> Value {
        v
    }

    fn whole(&mut self, text: &'a str) -> json::Result<Value> {
        serde_json::from_str(text).map_err(|_| UNSURE)
    }

    fn begin_object(&mut self) {
        self.objects.push(Map::new());
    }

    fn begin_array(&mut self) {
        self.arrays.push(Vec::new());
    }

    fn member(&mut self, key: std::borrow::Cow<'a, str>, v: Value) {
        if let Some(m) = self.objects.last_mut() {
            // A key given twice: the last one wins, as in serde_json's `Value`.
            m.insert(key.into_owned(), v);
        }
    }

    fn item(&mut self, v: Value) {
        if let Some(a) = self.arrays.last_mut() {
            a.push(v);
        }
    }

    fn end_object(&mut self, _: &'a str) -> Value {
        Value::Object(self.objects.pop().unwrap_or_default())
    }

    fn end_array(&mut self, _: &'a str) -> Value {
        Value::Array(self.arrays.pop().unwrap_or_default())
    }
}

/// The part of a body its filters read, borrowed from the body: what the filter set's index decides on
/// (`set.rs`) without building a `serde_json::Value`. Strings are slices of the body (unless they have an
/// escape), containers ranges of two flat tables, every node keeps its text (for the few elements the index
/// then evaluates a predicate on). Numbers, booleans, `null` and containers read whole are only
/// [`Node::Other`]: the index decides on strings, objects and arrays, and leaves anything else to the evaluator.
#[derive(Debug, Default)]
pub(crate) struct Doc<'a> {
    nodes: Vec<Node<'a>>,
    members: Vec<(std::borrow::Cow<'a, str>, u32)>,
    items: Vec<u32>,
}

#[derive(Debug)]
enum Node<'a> {
    Str(std::borrow::Cow<'a, str>),
    Other,
    /// `members[from..to]`, and the object's text.
    Obj(u32, u32, &'a str),
    Arr(u32, u32, &'a str),
}

/// A node of a [`Doc`].
#[derive(Clone, Copy)]
pub(crate) struct DocRef<'d, 'a> {
    doc: &'d Doc<'a>,
    node: u32,
}

impl<'d, 'a> DocRef<'d, 'a> {
    fn node(self) -> &'d Node<'a> {
        &self.doc.nodes[self.node as usize]
    }

    /// The member `key` (the last one, when the key is given twice, as serde_json's `Value` keeps).
    pub(crate) fn get(self, key: &str) -> Option<Self> {
        let Node::Obj(from, to, _) = *self.node() else {
            return None;
        };
        self.doc.members[from as usize..to as usize]
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key)
            .map(|&(_, node)| DocRef { node, ..self })
    }

    /// The elements, when this is an array.
    pub(crate) fn elements(self) -> Option<impl ExactSizeIterator<Item = Self>> {
        let Node::Arr(from, to, _) = *self.node() else {
            return None;
        };
        let doc = self.doc;
        Some(
            doc.items[from as usize..to as usize]
                .iter()
                .map(move |&node| DocRef { doc, node }),
        )
    }

    pub(crate) fn as_str(self) -> Option<&'d str> {
        match self.node() {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_object(self) -> bool {
        matches!(self.node(), Node::Obj(..))
    }

    /// An object's or array's text (`None` for anything else).
    pub(crate) fn text(self) -> Option<&'a str> {
        match *self.node() {
            Node::Obj(_, _, t) | Node::Arr(_, _, t) => Some(t),
            _ => None,
        }
    }
}

impl<'a> Doc<'a> {
    /// The top-level value.
    pub(crate) fn root(&self) -> DocRef<'_, 'a> {
        DocRef {
            doc: self,
            node: (self.nodes.len() - 1) as u32,
        }
    }
}

/// Builds a [`Doc`].
#[derive(Default)]
struct Borrowed<'a> {
    doc: Doc<'a>,
    /// The members and items of the open containers, and where each open one starts in them.
    members: Vec<(std::borrow::Cow<'a, str>, u32)>,
    items: Vec<u32>,
    open: Vec<(usize, usize)>,
}

impl<'a> Borrowed<'a> {
    fn push(&mut self, n: Node<'a>) -> u32 {
        self.doc.nodes.push(n);
        (self.doc.nodes.len() - 1) as u32
    }
}

impl<'a> Build<'a> for Borrowed<'a> {
    type Node = u32;

    fn string(&mut self, s: std::borrow::Cow<'a, str>) -> u32 {
        self.push(Node::Str(s))
    }

    fn number(&mut self, text: &'a str) -> json::Result<u32> {
        json::Check::number(&mut AsSerdeJson { base: 0 }, text.as_bytes())?;
        Ok(self.push(Node::Other))
    }

    fn literal(&mut self, _: Value) -> u32 {
        self.push(Node::Other)
    }

    fn whole(&mut self, _: &'a str) -> json::Result<u32> {
        Ok(self.push(Node::Other))
    }

    fn begin_object(&mut self) {
        self.open.push((self.members.len(), self.items.len()));
    }

    fn begin_array(&mut self) {
        self.begin_object();
    }

    fn member(&mut self, key: std::borrow::Cow<'a, str>, v: u32) {
        self.members.push((key, v));
    }

    fn item(&mut self, v: u32) {
        self.items.push(v);
    }

    fn end_object(&mut self, text: &'a str) -> u32 {
        let (m, _) = self.open.pop().unwrap_or_default();
        let (from, to) = moved(&mut self.members, m, &mut self.doc.members);
        self.push(Node::Obj(from, to, text))
    }

    fn end_array(&mut self, text: &'a str) -> u32 {
        let (_, i) = self.open.pop().unwrap_or_default();
        let (from, to) = moved(&mut self.items, i, &mut self.doc.items);
        self.push(Node::Arr(from, to, text))
    }
}

/// Move `open[start..]` (a closing container's members or items) to the end of `table`: where they are now.
fn moved<T>(open: &mut Vec<T>, start: usize, table: &mut Vec<T>) -> (u32, u32) {
    let from = table.len() as u32;
    table.extend(open.drain(start..));
    (from, table.len() as u32)
}

impl Needs {
    /// The part of `body` these needs read, borrowed ([`Doc`]): `None` when the projection is not sure of the
    /// whole parse's verdict (module doc), or when the needs are everything.
    pub(crate) fn parse_borrowed<'a>(&self, body: &'a [u8]) -> Option<Doc<'a>> {
        if self.all {
            return None;
        }
        // About one node per 24 bytes of ISC's events: room for most without growing.
        let n = body.len() / 24;
        let build = Borrowed {
            doc: Doc {
                nodes: Vec::with_capacity(n),
                members: Vec::with_capacity(n),
                items: Vec::with_capacity(n / 2),
            },
            ..Borrowed::default()
        };
        let (_, b) = self.project(body, build)?;
        Some(b.doc)
    }

    /// Run the projecting parse with builder `b`: `None` when it is not sure (module doc).
    fn project<'a, B: Build<'a>>(&self, body: &'a [u8], build: B) -> Option<(B::Node, B)> {
        let src = std::str::from_utf8(body).ok()?;
        let mut p = Projector {
            src,
            b: body,
            nest: Vec::new(),
            build,
        };
        let (v, end) = p.value(self, 0, 0).ok()?;
        (json::skip_ws(body, end) == body.len()).then_some((v, p.build))
    }
}

/// The projecting parse: builds the members `needs` names and checks the rest as serde_json's whole parse
/// would, without building it (`crate::json`). `None` when it cannot be sure of that verdict (an error, or
/// nesting deeper than [`MAX_DEPTH`]): the caller then asks serde_json.
struct Projector<'a, B> {
    src: &'a str,
    b: &'a [u8],
    /// Scratch for the skips' open containers.
    nest: Vec<bool>,
    build: B,
}

/// A node built, and the index after its text.
type Built<N> = json::Result<(N, usize)>;

/// Deeper than this, the projection leaves the verdict to serde_json (whose limit is 128 levels, counted from
/// the root, which a skip that starts below the root does not see).
const MAX_DEPTH: usize = 100;

/// What serde_json's whole parse checks that the grammar does not, on what a projection skips: escapes decoded
/// (a lone surrogate is refused), numbers in range, the nesting.
struct AsSerdeJson {
    /// The depth the skip starts at.
    base: usize,
}

/// Any refusal here sends the body to serde_json for its own verdict and message.
const UNSURE: crate::json::ScanError = crate::json::ScanError {
    offset: 0,
    what: "left to serde_json",
};

impl json::Check for AsSerdeJson {
    fn escaped(&mut self, text: &[u8]) -> json::Result<()> {
        serde_json::from_slice::<String>(text).map_err(|_| UNSURE)?;
        Ok(())
    }

    #[inline]
    fn number(&mut self, text: &[u8]) -> json::Result<()> {
        // An integer of up to 18 digits fits an i64 or u64: only longer ones, fractions and exponents can be out
        // of range.
        if text.len() <= 18 && text.iter().all(|&c| c.is_ascii_digit() || c == b'-') {
            return Ok(());
        }
        serde_json::from_slice::<Value>(text).map_err(|_| UNSURE)?;
        Ok(())
    }

    #[inline]
    fn nested(&mut self, depth: usize) -> json::Result<()> {
        if self.base + depth > MAX_DEPTH {
            return Err(UNSURE);
        }
        Ok(())
    }
}

impl<'a, B: Build<'a>> Projector<'a, B> {
    /// The value at `i` (whitespace first) projected by `needs`, at nesting `depth`: the value and the index
    /// after it.
    fn value(&mut self, needs: &Needs, i: usize, depth: usize) -> Built<B::Node> {
        let b = self.b;
        let i = json::skip_ws(b, i);
        match b.get(i) {
            // A whole subtree read (a primitive is built below, as it is either way).
            Some(b'{' | b'[') if needs.all => {
                let end = self.skip(i, depth)?;
                Ok((self.build.whole(&self.src[i..end])?, end))
            }
            Some(b'"') => {
                let (s, end) = json::string_value(self.src, i)?;
                Ok((self.build.string(s), end))
            }
            Some(b'{') => self.object(needs, i, depth + 1),
            Some(b'[') => self.array(needs, i, depth + 1),
            Some(b't') => Ok((
                self.build.literal(Value::Bool(true)),
                json::scan_literal(b, i, b"true")?,
            )),
            Some(b'f') => Ok((
                self.build.literal(Value::Bool(false)),
                json::scan_literal(b, i, b"false")?,
            )),
            Some(b'n') => Ok((
                self.build.literal(Value::Null),
                json::scan_literal(b, i, b"null")?,
            )),
            Some(b'-' | b'0'..=b'9') => {
                let end = json::scan_number(b, i)?;
                Ok((self.build.number(&self.src[i..end])?, end))
            }
            _ => Err(UNSURE),
        }
    }

    /// A value nobody reads, from `i`: checked, not built.
    fn skip(&mut self, i: usize, depth: usize) -> json::Result<usize> {
        self.nest.clear();
        json::skip_value(self.b, i, &mut self.nest, &mut AsSerdeJson { base: depth })
    }

    /// A container opens at `start`, at nesting `depth`: where its first member or item may start.
    fn open(&self, start: usize, depth: usize) -> json::Result<usize> {
        if depth > MAX_DEPTH {
            return Err(UNSURE);
        }
        Ok(json::skip_ws(self.b, start + 1))
    }

    fn object(&mut self, needs: &Needs, start: usize, depth: usize) -> Built<B::Node> {
        let b = self.b;
        let mut i = self.open(start, depth)?;
        self.build.begin_object();
        if b.get(i) == Some(&b'}') {
            return Ok((self.build.end_object(&self.src[start..i + 1]), i + 1));
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return Err(UNSURE);
            }
            let (key, after) = json::string_value(self.src, i)?;
            i = json::skip_ws(b, after);
            if b.get(i) != Some(&b':') {
                return Err(UNSURE);
            }
            i += 1;
            // A linear look (a node's needs name a few members): cheaper than the map's ordered compares.
            let key_len = key.len();
            let named = needs
                .keys
                .iter()
                .find(|(k, _)| k.len() == key_len && k.as_ref() == key.as_ref())
                .map(|(_, n)| n);
            match named {
                Some(n) => {
                    let (v, end) = self.value(n, i, depth)?;
                    self.build.member(key, v);
                    i = end;
                }
                None => i = self.skip(i, depth)?,
            }
            i = json::skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = json::skip_ws(b, i + 1),
                Some(b'}') => return Ok((self.build.end_object(&self.src[start..i + 1]), i + 1)),
                _ => return Err(UNSURE),
            }
        }
    }

    fn array(&mut self, needs: &Needs, start: usize, depth: usize) -> Built<B::Node> {
        let b = self.b;
        let each = needs.elems.as_deref().unwrap_or(&NOTHING);
        let mut i = self.open(start, depth)?;
        self.build.begin_array();
        if b.get(i) == Some(&b']') {
            return Ok((self.build.end_array(&self.src[start..i + 1]), i + 1));
        }
        loop {
            let (v, end) = self.value(each, i, depth)?;
            self.build.item(v);
            i = json::skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b']') => return Ok((self.build.end_array(&self.src[start..i + 1]), i + 1)),
                _ => return Err(UNSURE),
            }
        }
    }
}

/// What each array element needs when the node says nothing of them.
static NOTHING: Needs = Needs {
    all: false,
    keys: BTreeMap::new(),
    elems: None,
};

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
