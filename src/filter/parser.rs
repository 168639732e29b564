//! Parser: Jayway's `PathCompiler` (paths) and `FilterCompiler` (`[?( .. )]`
//! predicates) re-done as a recursive-descent parser over byte offsets,
//! accepting the same language. Errors carry the byte offset of the
//! offending character; `mod.rs` turns it into a char offset.
//!
//! Where Jayway's scanner has a quirk that decides what is accepted, it is
//! kept (and noted): e.g. a path inside a filter ends at a blank, at one of
//! `< > = ~ !`, or at a `)` that does not close an empty function call.

use serde_json::{Number, Value};

use super::lexer::{
    matching_close, next_unescaped, number_from_text, parse_bigdecimal, parse_permissive_json,
    unescape,
};

/// Maximum nesting of filters, parentheses, `!` and paths inside filters.
pub(crate) const MAX_DEPTH: u32 = 64;
/// Maximum number of segments in one path.
pub(crate) const MAX_SEGMENTS: usize = 128;
/// Regex compile limits (the `regex` crate matches in linear time).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Parse error: byte offset into the parsed string and a message.
pub(crate) type PErr = (usize, String);
type PResult<T> = Result<T, PErr>;

// ---------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------

/// A compiled path (`$...` or `@...`).
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// `$` (true) or `@` (false).
    pub(crate) root_is_doc: bool,
    pub(crate) segs: Vec<Seg>,
    /// Jayway "definite" path: every token selects at most one node.
    pub(crate) definite: bool,
    /// `$..x.fn()`: Jayway rewrites it into `fn($..x)`.
    pub(crate) inverted_fn: bool,
    /// Only `.name` / `['name']` / `[n]` segments: resolved without the
    /// general walker.
    pub(crate) simple: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Seg {
    pub(crate) kind: SegKind,
    /// All tokens before this one are definite (Jayway `isUpstreamDefinite`).
    pub(crate) upstream_definite: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum SegKind {
    Prop(Box<str>),
    Props(Box<[Box<str>]>),
    Index(i32),
    Indexes(Box<[i32]>),
    /// `[from:to]`; a third `:step` part is ignored, as Jayway does.
    Slice(Option<i32>, Option<i32>),
    Wildcard,
    Scan,
    Filter(Box<Pred>),
    Func(Box<Func>),
}

#[derive(Debug, Clone)]
pub(crate) struct Func {
    pub(crate) kind: FuncKind,
    pub(crate) params: Vec<Param>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FuncKind {
    Length,
    Min,
    Max,
    Avg,
    Sum,
    StdDev,
    Concat,
}

impl FuncKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FuncKind::Length => "length",
            FuncKind::Min => "min",
            FuncKind::Max => "max",
            FuncKind::Avg => "avg",
            FuncKind::Sum => "sum",
            FuncKind::StdDev => "stddev",
            FuncKind::Concat => "concat",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Param {
    Json(Value),
    Path(Path),
}

#[derive(Debug, Clone)]
pub(crate) enum Pred {
    Or(Vec<Pred>),
    And(Vec<Pred>),
    Not(Box<Pred>),
    /// Bare path (`@.x`) or negated bare path (`!@.x`).
    Exists {
        path: Path,
        should_exist: bool,
    },
    Cmp {
        left: Operand,
        op: Op,
        right: Operand,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Path(Path),
    Lit(Lit),
}

#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Num(LitNum),
    Str(Box<str>),
    Json(Box<LitJson>),
    Regex(Box<super::java_regex::JavaRegex>),
}

/// Number literal: value plus its Java `BigDecimal.toString()` text.
#[derive(Debug, Clone)]
pub(crate) struct LitNum {
    pub(crate) num: Number,
    pub(crate) text: Box<str>,
}

/// `[..]` / `{..}` literal; for arrays, the elements as Jayway's value-list
/// nodes (`Err` when an element is itself an array/object, which Jayway
/// cannot convert).
#[derive(Debug, Clone)]
pub(crate) struct LitJson {
    pub(crate) value: Value,
    pub(crate) items: Option<Result<Vec<LitItem>, ()>>,
}

/// Element of a value list (Jayway `ValueNode.toValueNode`).
#[derive(Debug, Clone)]
pub(crate) enum LitItem {
    Null,
    Bool(bool),
    Num(Number),
    Str(Box<str>),
    /// A string that Jayway turns into a path or JSON node: equal to nothing.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    TsEq,
    TsNe,
    Lt,
    Le,
    Gt,
    Ge,
    Regex,
    In,
    Nin,
    Contains,
    All,
    Size,
    Exists,
    Type,
    Matches,
    Empty,
    SubsetOf,
    AnyOf,
    NoneOf,
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Compile a whole expression. `src` is already trimmed and starts with `$`
/// or `@` (the caller adds Jayway's implicit `$.` prefix).
pub(crate) fn compile_path_src(src: &str, depth: u32) -> PResult<Path> {
    let b = src.as_bytes();
    if b.is_empty() {
        return Err((0, "empty expression".into()));
    }
    if !matches!(b[0], b'$' | b'@') {
        return Err((0, "path must start with '$' or '@'".into()));
    }
    if b[b.len() - 1] == b'.' {
        return Err((b.len() - 1, "path must not end with a '.' or '..'".into()));
    }
    let mut p = Parser {
        s: src,
        b,
        pos: 0,
        end: b.len(),
        depth,
    };
    p.parse_path(0, b.len())
}

/// Jayway `ValueNode.isPath`: a string that compiles as a path.
/// (Strings longer than an expression may be are never paths here, which
/// bounds the work spent on document strings.)
pub(crate) fn is_path_like(s: &str, depth: u32) -> bool {
    let t = s.trim();
    matches!(t.as_bytes().first(), Some(b'$' | b'@'))
        && t.len() <= super::MAX_EXPRESSION_LEN
        && compile_path_src(t, depth).is_ok()
}

/// Jayway `ValueNode.isJson`: `[..]` or `{..}` that parses as JSON.
pub(crate) fn is_json_like(s: &str) -> bool {
    let t = s.trim().as_bytes();
    t.len() > 1
        && ((t[0] == b'[' && t[t.len() - 1] == b']') || (t[0] == b'{' && t[t.len() - 1] == b'}'))
        && parse_permissive_json(s.trim()).is_ok()
}

fn to_lit_item(v: &Value, depth: u32) -> Result<LitItem, ()> {
    Ok(match v {
        Value::Null => LitItem::Null,
        Value::Bool(b) => LitItem::Bool(*b),
        Value::Number(n) => LitItem::Num(n.clone()),
        Value::String(s) => {
            if is_path_like(s, depth) || is_json_like(s) {
                LitItem::Never
            } else {
                LitItem::Str(super::lexer::list_string(s).into())
            }
        }
        Value::Array(_) | Value::Object(_) => return Err(()),
    })
}

fn func_kind(name: &str) -> Result<FuncKind, String> {
    Ok(match name {
        "length" | "size" => FuncKind::Length,
        "min" => FuncKind::Min,
        "max" => FuncKind::Max,
        "avg" => FuncKind::Avg,
        "sum" => FuncKind::Sum,
        "stddev" => FuncKind::StdDev,
        "concat" => FuncKind::Concat,
        "append" | "keys" | "first" | "last" | "index" | "distinct" => {
            return Err(format!("function '{name}()' is not supported"))
        }
        _ => return Err(format!("unknown function '{name}()'")),
    })
}

fn is_relop_char(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'=' | b'~' | b'!')
}

fn op_from(text: &str) -> Option<Op> {
    Some(match text.to_ascii_uppercase().as_str() {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "===" => Op::TsEq,
        "!==" => Op::TsNe,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "=~" => Op::Regex,
        "IN" => Op::In,
        "NIN" => Op::Nin,
        "CONTAINS" => Op::Contains,
        "ALL" => Op::All,
        "SIZE" => Op::Size,
        "EXISTS" => Op::Exists,
        "TYPE" => Op::Type,
        "MATCHES" => Op::Matches,
        "EMPTY" => Op::Empty,
        "SUBSETOF" => Op::SubsetOf,
        "ANYOF" => Op::AnyOf,
        "NONEOF" => Op::NoneOf,
        _ => return None,
    })
}

fn finish_path(root_is_doc: bool, kinds: Vec<SegKind>) -> Path {
    let n = kinds.len();
    let inverted_fn =
        n >= 2 && matches!(kinds[0], SegKind::Scan) && matches!(kinds[n - 1], SegKind::Func(_));
    let mut upstream = true;
    let mut segs = Vec::with_capacity(n);
    for (i, kind) in kinds.into_iter().enumerate() {
        let leaf = i + 1 == n;
        let token_definite = match &kind {
            SegKind::Prop(_) | SegKind::Index(_) | SegKind::Func(_) => true,
            SegKind::Props(_) => leaf,
            SegKind::Indexes(_)
            | SegKind::Slice(..)
            | SegKind::Wildcard
            | SegKind::Scan
            | SegKind::Filter(_) => false,
        };
        segs.push(Seg {
            kind,
            upstream_definite: upstream,
        });
        upstream = upstream && token_definite;
    }
    let simple = segs
        .iter()
        .all(|s| matches!(s.kind, SegKind::Prop(_) | SegKind::Index(_)));
    Path {
        root_is_doc,
        segs,
        definite: upstream,
        inverted_fn,
        simple,
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser<'s> {
    s: &'s str,
    b: &'s [u8],
    pos: usize,
    /// Exclusive end of the region being parsed.
    end: usize,
    depth: u32,
}

impl Parser<'_> {
    fn cur(&self) -> Option<u8> {
        if self.pos < self.end {
            Some(self.b[self.pos])
        } else {
            None
        }
    }

    /// Jayway `skipBlanks`: spaces only.
    fn skip_ws(&mut self) {
        while self.pos < self.end && self.b[self.pos] == b' ' {
            self.pos += 1;
        }
    }

    /// Index of the next non-space character after `i`.
    fn next_sig(&self, i: usize) -> Option<usize> {
        let mut j = i + 1;
        while j < self.end && self.b[j] == b' ' {
            j += 1;
        }
        (j < self.end).then_some(j)
    }

    fn enter(&mut self, at: usize) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((
                at,
                format!("expression nested too deeply (limit {MAX_DEPTH})"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // --- paths -------------------------------------------------------------

    /// Parse the path occupying `[begin, end)`; `b[begin]` is `$` or `@`.
    fn parse_path(&mut self, begin: usize, end: usize) -> PResult<Path> {
        self.enter(begin)?;
        let saved_end = self.end;
        self.end = end;
        self.pos = begin + 1;
        let root_is_doc = self.b[begin] == b'$';
        let mut kinds: Vec<SegKind> = Vec::new();
        if let Some(c) = self.cur() {
            if c != b'.' && c != b'[' {
                return Err((self.pos, "illegal character, expected '.' or '['".into()));
            }
        }
        while let Some(c) = self.cur() {
            if kinds.len() >= MAX_SEGMENTS {
                return Err((
                    self.pos,
                    format!("path has more than {MAX_SEGMENTS} segments"),
                ));
            }
            if matches!(kinds.last(), Some(SegKind::Func(_))) {
                return Err((
                    self.pos,
                    "a function must be the last element of a path".into(),
                ));
            }
            if c == b'.' {
                if self.b.get(self.pos + 1) == Some(&b'.') && self.pos + 1 < self.end {
                    kinds.push(SegKind::Scan);
                    self.pos += 2;
                    if self.pos >= self.end {
                        return Err((self.pos - 2, "path must not end with '..'".into()));
                    }
                } else {
                    if self.pos + 1 >= self.end {
                        return Err((self.pos, "path must not end with '.'".into()));
                    }
                    self.pos += 1;
                }
                if self.cur() == Some(b'.') {
                    return Err((self.pos, "character '.' is not valid here".into()));
                }
            }
            self.token(&mut kinds)?;
        }
        for w in kinds.windows(2) {
            if matches!(w[0], SegKind::Scan) && matches!(w[1], SegKind::Func(_)) {
                return Err((begin, "a function cannot directly follow '..'".into()));
            }
        }
        self.end = saved_end;
        self.leave();
        Ok(finish_path(root_is_doc, kinds))
    }

    fn token(&mut self, kinds: &mut Vec<SegKind>) -> PResult<()> {
        match self.cur() {
            Some(b'[') => self.bracket(kinds),
            Some(b'*') => {
                self.pos += 1;
                kinds.push(SegKind::Wildcard);
                Ok(())
            }
            Some(b' ') | Some(b'.') | None => Err((self.pos, "could not parse token".into())),
            Some(_) => self.name_or_func(kinds),
        }
    }

    fn name_or_func(&mut self, kinds: &mut Vec<SegKind>) -> PResult<()> {
        let start = self.pos;
        while let Some(c) = self.cur() {
            match c {
                b' ' => {
                    return Err((
                        self.pos,
                        "use bracket notation ['my prop'] for a property containing blanks".into(),
                    ))
                }
                b'.' | b'[' | b'(' => break,
                _ => self.pos += 1,
            }
        }
        let name = &self.s[start..self.pos];
        if self.cur() != Some(b'(') {
            kinds.push(SegKind::Prop(name.into()));
            return Ok(());
        }
        let open = self.pos;
        let kind = func_kind(name).map_err(|m| (start, m))?;
        let close = matching_close(self.b, open, self.end, b'(', b')', false).ok_or_else(|| {
            (
                open,
                format!("arguments to function '{name}' are not closed properly"),
            )
        })?;
        let params = if close == open + 1 {
            Vec::new()
        } else {
            self.params(open + 1, close)?
        };
        self.pos = close + 1;
        kinds.push(SegKind::Func(Box::new(Func { kind, params })));
        Ok(())
    }

    /// Function parameters in `[from, to)`, split at top-level commas. As in
    /// Jayway, a parameter starting with `{`, a digit, `"` or `-` is JSON,
    /// one starting with `$`/`@` is a path, anything else is dropped.
    fn params(&mut self, from: usize, to: usize) -> PResult<Vec<Param>> {
        let mut out = Vec::new();
        let mut pieces = Vec::new();
        let (mut depth, mut start, mut i) = (0i32, from, from);
        while i < to {
            let c = self.b[i];
            match c {
                b'\'' | b'"' => {
                    i = next_unescaped(self.b, i + 1, to, c).ok_or_else(|| {
                        (i, "unterminated string in function arguments".to_string())
                    })?;
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => {
                    pieces.push((start, i));
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        pieces.push((start, to));
        for (mut a, mut z) in pieces {
            while a < z && self.b[a].is_ascii_whitespace() {
                a += 1;
            }
            while z > a && self.b[z - 1].is_ascii_whitespace() {
                z -= 1;
            }
            if a == z {
                continue;
            }
            match self.b[a] {
                b'{' | b'"' | b'-' | b'0'..=b'9' => {
                    let v = parse_permissive_json(&self.s[a..z]).map_err(|(o, m)| (a + o, m))?;
                    out.push(Param::Json(v));
                }
                b'$' | b'@' => {
                    if self.b[z - 1] == b'.' {
                        return Err((z - 1, "path must not end with a '.' or '..'".into()));
                    }
                    let saved = self.pos;
                    let p = self.parse_path(a, z)?;
                    self.pos = saved;
                    out.push(Param::Path(p));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn bracket(&mut self, kinds: &mut Vec<SegKind>) -> PResult<()> {
        let open = self.pos;
        let generic = || {
            (
                open,
                "could not parse token, expected ?, ', 0-9 or * after '['".to_string(),
            )
        };
        let Some(j) = self.next_sig(open) else {
            return Err(generic());
        };
        match self.b[j] {
            b'\'' | b'"' => self.bracket_props(kinds, j),
            b'0'..=b'9' | b'-' | b':' => self.bracket_array(kinds),
            b'*' => {
                let Some(k) = self.next_sig(j).filter(|&k| self.b[k] == b']') else {
                    return Err((j + 1, "expected wildcard token to end with ']'".into()));
                };
                self.pos = k + 1;
                kinds.push(SegKind::Wildcard);
                Ok(())
            }
            b'?' => {
                let Some(paren) = self.next_sig(j) else {
                    return Err(generic());
                };
                if self.b[paren] != b'(' {
                    if matches!(self.b[paren], b']' | b',') {
                        return Err((open, "filter placeholders '[?]' are not supported".into()));
                    }
                    return Err(generic());
                }
                let close = matching_close(self.b, paren, self.end, b'(', b')', true)
                    .ok_or_else(|| (paren, "unbalanced parentheses in filter".to_string()))?;
                let Some(rb) = self.next_sig(close).filter(|&k| self.b[k] == b']') else {
                    return Err((close + 1, "expected ']' to close the filter".into()));
                };
                let pred = self.filter_expr(paren, close + 1)?;
                self.pos = rb + 1;
                kinds.push(SegKind::Filter(Box::new(pred)));
                Ok(())
            }
            _ => Err(generic()),
        }
    }

    /// `['a']`, `["a"]`, `['a', 'b']` (one quote style per bracket).
    fn bracket_props(&mut self, kinds: &mut Vec<SegKind>, first: usize) -> PResult<()> {
        let q = self.b[first];
        let mut props: Vec<Box<str>> = Vec::new();
        let mut i = first;
        loop {
            if self.b.get(i) != Some(&q) || i >= self.end {
                return Err((i.min(self.end), "expected a quoted property name".into()));
            }
            let close = next_unescaped(self.b, i + 1, self.end, q).ok_or_else(|| {
                (
                    i,
                    format!(
                        "property has not been closed - missing closing {}",
                        q as char
                    ),
                )
            })?;
            let name = unescape(&self.s[i + 1..close]).map_err(|m| (i, m))?;
            props.push(name.into());
            let Some(k) = self.next_sig(close) else {
                return Err((
                    close,
                    "property has not been closed - missing closing ]".into(),
                ));
            };
            match self.b[k] {
                b']' => {
                    self.pos = k + 1;
                    break;
                }
                b',' => {
                    let Some(n) = self.next_sig(k) else {
                        return Err((k, "found empty property".into()));
                    };
                    if self.b[n] == b']' || self.b[n] == b',' {
                        return Err((n, "found empty property".into()));
                    }
                    i = n;
                }
                _ => {
                    return Err((
                        k,
                        "properties must be separated by ',' and terminated by ']'".into(),
                    ))
                }
            }
        }
        if props.len() == 1 {
            kinds.push(SegKind::Prop(props.pop().unwrap_or_default()));
        } else {
            kinds.push(SegKind::Props(props.into_boxed_slice()));
        }
        Ok(())
    }

    /// `[1]`, `[-1]`, `[0,2]`, `[1:]`, `[:2]`, `[-2:]`, `[0:2]`, `[0:2:1]`.
    fn bracket_array(&mut self, kinds: &mut Vec<SegKind>) -> PResult<()> {
        let open = self.pos;
        let generic = || {
            (
                open,
                "could not parse token, expected ?, ', 0-9 or * after '['".to_string(),
            )
        };
        let close = (open + 1..self.end)
            .find(|&i| self.b[i] == b']')
            .ok_or_else(generic)?;
        let expr = self.s[open + 1..close].trim_matches(' ');
        if !expr
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b',' | b'-' | b':' | b' '))
        {
            return Err(generic());
        }
        let int = |t: &str| -> PResult<i32> {
            t.parse::<i32>()
                .map_err(|_| (open + 1, format!("invalid array index '{t}'")))
        };
        if expr.contains(':') {
            if expr.contains(' ') || expr.contains(',') {
                return Err((
                    open + 1,
                    format!("failed to parse slice operation '{expr}'"),
                ));
            }
            let mut parts: Vec<&str> = expr.split(':').collect();
            while parts.last() == Some(&"") {
                parts.pop();
            }
            let from = match parts.first() {
                Some(t) if !t.is_empty() => Some(int(t)?),
                _ => None,
            };
            let to = match parts.get(1) {
                Some(t) if !t.is_empty() => Some(int(t)?),
                _ => None,
            };
            if from.is_none() && to.is_none() {
                return Err((
                    open + 1,
                    format!("failed to parse slice operation '{expr}'"),
                ));
            }
            kinds.push(SegKind::Slice(from, to));
        } else {
            let idx = expr
                .split(',')
                .map(|t| int(t.trim_matches(' ')))
                .collect::<PResult<Vec<_>>>()?;
            if idx.len() == 1 {
                kinds.push(SegKind::Index(idx[0]));
            } else {
                kinds.push(SegKind::Indexes(idx.into_boxed_slice()));
            }
        }
        self.pos = close + 1;
        Ok(())
    }

    // --- filters -----------------------------------------------------------

    /// The predicate in `[begin, end)`: `( ... )` including the parentheses.
    fn filter_expr(&mut self, begin: usize, end: usize) -> PResult<Pred> {
        self.enter(begin)?;
        let saved_end = self.end;
        self.end = end;
        self.pos = begin;
        let pred = self.or()?;
        self.skip_ws();
        if self.pos < self.end {
            return Err((self.pos, "expected end of filter expression".into()));
        }
        self.end = saved_end;
        self.leave();
        Ok(pred)
    }

    fn eat(&mut self, tok: &[u8]) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.pos + tok.len() <= self.end && &self.b[self.pos..self.pos + tok.len()] == tok {
            self.pos += tok.len();
            true
        } else {
            self.pos = save;
            false
        }
    }

    fn or(&mut self) -> PResult<Pred> {
        let mut v = vec![self.and()?];
        while self.eat(b"||") {
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.pop().unwrap_or(Pred::Or(Vec::new()))
        } else {
            Pred::Or(v)
        })
    }

    fn and(&mut self) -> PResult<Pred> {
        let mut v = vec![self.operand()?];
        while self.eat(b"&&") {
            v.push(self.operand()?);
        }
        Ok(if v.len() == 1 {
            v.pop().unwrap_or(Pred::And(Vec::new()))
        } else {
            Pred::And(v)
        })
    }

    fn operand(&mut self) -> PResult<Pred> {
        self.skip_ws();
        let at = self.pos;
        self.enter(at)?;
        let r = self.operand_inner();
        self.leave();
        r
    }

    fn operand_inner(&mut self) -> PResult<Pred> {
        if self.cur() == Some(b'!') {
            let save = self.pos;
            self.pos += 1;
            self.skip_ws();
            if matches!(self.cur(), Some(b'$' | b'@')) {
                self.pos = save; // `!@.x`: negated existence, read as a value
            } else {
                return Ok(Pred::Not(Box::new(self.operand()?)));
            }
        }
        if self.cur() == Some(b'(') {
            self.pos += 1;
            let p = self.or()?;
            self.skip_ws();
            if self.cur() != Some(b')') {
                return Err((self.pos.min(self.end), "expected ')'".into()));
            }
            self.pos += 1;
            return Ok(p);
        }
        self.expression()
    }

    fn expression(&mut self) -> PResult<Pred> {
        self.skip_ws();
        let lpos = self.pos;
        let (left, should_exist) = self.value()?;
        let save = self.pos;
        match self.relop() {
            Some(op) => {
                let (right, _) = self.value()?;
                Ok(Pred::Cmp { left, op, right })
            }
            None => {
                self.pos = save;
                match left {
                    Operand::Path(path) => Ok(Pred::Exists { path, should_exist }),
                    Operand::Lit(_) => Err((lpos, "expected a path or a comparison".into())),
                }
            }
        }
    }

    fn relop(&mut self) -> Option<Op> {
        self.skip_ws();
        let begin = self.pos;
        if self.cur().is_some_and(is_relop_char) {
            while self.cur().is_some_and(is_relop_char) {
                self.pos += 1;
            }
        } else {
            while self.cur().is_some_and(|c| c != b' ') {
                self.pos += 1;
            }
        }
        op_from(&self.s[begin..self.pos])
    }

    /// A value: path (optionally `!`-prefixed) or literal. Returns the
    /// operand and, for paths, whether it should exist (no `!`).
    fn value(&mut self) -> PResult<(Operand, bool)> {
        self.skip_ws();
        match self.cur() {
            Some(b'!') => {
                let at = self.pos;
                self.pos += 1;
                self.skip_ws();
                if matches!(self.cur(), Some(b'$' | b'@')) {
                    Ok((Operand::Path(self.filter_path()?), false))
                } else {
                    Err((at, "unexpected character '!'".into()))
                }
            }
            Some(b'$' | b'@') => {
                let negated = self.prev_sig() == Some(b'!');
                Ok((Operand::Path(self.filter_path()?), !negated))
            }
            _ => Ok((Operand::Lit(self.literal()?), true)),
        }
    }

    fn prev_sig(&self) -> Option<u8> {
        let mut i = self.pos;
        while i > 0 {
            i -= 1;
            if self.b[i] != b' ' {
                return Some(self.b[i]);
            }
        }
        None
    }

    /// Jayway `FilterCompiler.readPath`: find where the path ends, then
    /// compile that substring as a path.
    fn filter_path(&mut self) -> PResult<Path> {
        let begin = self.pos;
        self.pos += 1;
        loop {
            if self.cur() == Some(b'[') {
                let close = matching_close(self.b, self.pos, self.end, b'[', b']', false)
                    .ok_or_else(|| {
                        (
                            self.pos,
                            "square brackets do not match in filter".to_string(),
                        )
                    })?;
                self.pos = close + 1;
            }
            let Some(c) = self.cur() else { break };
            if is_relop_char(c) || c == b' ' || (c == b')' && !self.closes_function(begin)) {
                break;
            }
            self.pos += 1;
        }
        let stop = self.pos;
        if self.b[stop - 1] == b'.' {
            return Err((stop - 1, "path must not end with a '.' or '..'".into()));
        }
        let path = self.parse_path(begin, stop)?;
        self.pos = stop;
        Ok(path)
    }

    /// The `)` at `pos` closes an empty-argument function call `.name()`.
    fn closes_function(&self, lower: usize) -> bool {
        let mut j = self.pos;
        loop {
            if j == 0 {
                return false;
            }
            j -= 1;
            if self.b[j] != b' ' {
                break;
            }
        }
        if self.b[j] != b'(' || j == 0 {
            return false;
        }
        let mut i = j - 1;
        while i > lower {
            if self.b[i] == b'.' {
                return true;
            }
            i -= 1;
        }
        false
    }

    fn literal(&mut self) -> PResult<Lit> {
        let start = self.pos;
        match self.cur() {
            Some(q @ (b'"' | b'\'')) => {
                let close = next_unescaped(self.b, start + 1, self.end, q).ok_or_else(|| {
                    (
                        start,
                        format!("string literal is missing its closing {}", q as char),
                    )
                })?;
                let v = unescape(&self.s[start + 1..close]).map_err(|m| (start, m))?;
                self.pos = close + 1;
                Ok(Lit::Str(v.into()))
            }
            Some(b'/') => self.regex_literal(),
            Some(b'[' | b'{') => self.json_literal(),
            Some(b't' | b'f') => {
                let word = if self.b[start] == b't' {
                    "true"
                } else {
                    "false"
                };
                if self.s[start..self.end].starts_with(word) {
                    self.pos += word.len();
                    Ok(Lit::Bool(word == "true"))
                } else {
                    Err((start, "expected boolean literal".into()))
                }
            }
            Some(b'n') => {
                if self.s[start..self.end].starts_with("null") {
                    self.pos += 4;
                    Ok(Lit::Null)
                } else {
                    Err((start, "expected <null> value".into()))
                }
            }
            _ => {
                while self
                    .cur()
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'e' | b'E'))
                {
                    self.pos += 1;
                }
                let text = &self.s[start..self.pos];
                if text.is_empty() {
                    return Err((start, "expected a value".into()));
                }
                let bd = parse_bigdecimal(text)
                    .ok_or_else(|| (start, format!("invalid number literal '{text}'")))?;
                let num = number_from_text(text)
                    .ok_or_else(|| (start, format!("number literal out of range '{text}'")))?;
                Ok(Lit::Num(LitNum {
                    num,
                    text: bd.to_java_string().into(),
                }))
            }
        }
    }

    fn regex_literal(&mut self) -> PResult<Lit> {
        let start = self.pos;
        let close = next_unescaped(self.b, start + 1, self.end, b'/').ok_or_else(|| {
            (
                start,
                "regex literal is missing its closing '/'".to_string(),
            )
        })?;
        let mut fe = close + 1;
        while fe < self.end && super::java_regex::FLAG_LETTERS.contains(&self.b[fe]) {
            fe += 1;
        }
        let re = compile_regex(&self.s[start + 1..close], &self.s[close + 1..fe])
            .map_err(|m| (start, m))?;
        self.pos = fe;
        Ok(Lit::Regex(Box::new(re)))
    }

    fn json_literal(&mut self) -> PResult<Lit> {
        let start = self.pos;
        let open = self.b[start];
        let close_ch = if open == b'[' { b']' } else { b'}' };
        let close = matching_close(self.b, start, self.end, open, close_ch, false)
            .ok_or_else(|| (start, "JSON literal is not closed".to_string()))?;
        let value =
            parse_permissive_json(&self.s[start..=close]).map_err(|(o, m)| (start + o, m))?;
        let items = match &value {
            Value::Array(a) => Some(
                a.iter()
                    .map(|v| to_lit_item(v, self.depth))
                    .collect::<Result<Vec<_>, ()>>(),
            ),
            _ => None,
        };
        self.pos = close + 1;
        Ok(Lit::Json(Box::new(LitJson { value, items })))
    }
}

/// Compile a Jayway `/pattern/flags` literal for full-string matching (Java
/// `Matcher.matches()`) with Java's `Pattern` semantics (see `java_regex`).
pub(crate) fn compile_regex(
    pattern: &str,
    flags: &str,
) -> Result<super::java_regex::JavaRegex, String> {
    super::java_regex::compile(pattern, flags, REGEX_SIZE_LIMIT, MAX_DEPTH)
}
