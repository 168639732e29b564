//! The ingress's one pass over a request body: checks that it is one JSON object (RFC 8259 grammar) and reads
//! `_metadata.triggerId` and `_metadata.invocationId` on the way, without building a tree.
//!
//! Why not serde_json: this pass runs on every request, and serde_json's ignore path (`IgnoredAny` into a
//! borrowed struct) was the largest user-space cost of the relay (54% of its user-space instructions in the
//! blackhole bench, BENCHMARKS.md). Skipping strings is most of the work (80% of the bytes of ISC's examples),
//! and here it looks at sixteen bytes at a time (`wide`: SSE2 on x86-64, NEON on aarch64, no unsafe code here),
//! in loops on local variables: about 40% less per body than serde_json (`cargo bench --bench probe`). simd-json
//! (it builds a tape of the whole document first) and jiter were both slower than serde_json for this job.
//! serde_json is still used where it is the right tool: a key or an id that contains an escape is decoded by it,
//! and the differential tests (`probe/tests.rs`, `fuzz/fuzz_targets/json_probe.rs`) hold this pass to
//! serde_json's verdict on every input.
//!
//! What it accepts is what serde_json accepted before it: any JSON value inside the object (nesting is not
//! limited here: it costs one byte per level, and the body size is bounded), `_metadata` an object or `null`, the
//! two ids strings or `null`, no key of those two objects given twice. One difference is deliberate: serde's
//! derive also took `_metadata` as an array of its fields; this pass refuses it.

use std::borrow::Cow;
use std::fmt;

use wide::u8x16;

/// What `_metadata` says (a field is `None` when it is absent or `null`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub trigger_id: Option<Cow<'a, str>>,
    pub invocation_id: Option<Cow<'a, str>>,
}

/// Why a body is not accepted, and the byte offset where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for ProbeError {}

type Result<T> = std::result::Result<T, ProbeError>;

/// Check that `body` is one JSON object, and read its `_metadata` ids.
pub fn probe(body: &str) -> Result<Metadata<'_>> {
    let mut p = Parser {
        b: body.as_bytes(),
        src: body,
        i: 0,
        nest: Vec::new(),
    };
    let meta = p.root()?;
    p.ws();
    if p.i != p.b.len() {
        return p.fail("trailing characters after the object");
    }
    Ok(meta)
}

struct Parser<'a> {
    b: &'a [u8],
    src: &'a str,
    i: usize,
    /// Open containers of the value being skipped: `true` for an object.
    nest: Vec<bool>,
}

impl<'a> Parser<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T> {
        error(self.i, what)
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        self.i = skip_ws(self.b, self.i);
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(what)
        }
    }

    /// The root object: its `_metadata` member is read, every other member skipped.
    fn root(&mut self) -> Result<Metadata<'a>> {
        let mut meta = Metadata::default();
        let mut seen_meta = false;
        self.expect(b'{', "expected a JSON object")?;
        self.members(|p, key| {
            if key == "_metadata" {
                if seen_meta {
                    return p.fail("duplicate key `_metadata`");
                }
                seen_meta = true;
                meta = p.metadata()?;
                Ok(())
            } else {
                p.skip_value()
            }
        })?;
        Ok(meta)
    }

    /// `_metadata`: an object (its two ids read, other members skipped) or `null`.
    fn metadata(&mut self) -> Result<Metadata<'a>> {
        self.ws();
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(Metadata::default());
            }
            Some(b'{') => self.i += 1,
            _ => return self.fail("`_metadata` must be an object"),
        }
        let mut meta = Metadata::default();
        let (mut seen_trigger, mut seen_invocation) = (false, false);
        self.members(|p, key| {
            let (slot, seen) = match key.as_ref() {
                "triggerId" => (&mut meta.trigger_id, &mut seen_trigger),
                "invocationId" => (&mut meta.invocation_id, &mut seen_invocation),
                _ => return p.skip_value(),
            };
            if std::mem::replace(seen, true) {
                return p.fail("duplicate key in `_metadata`");
            }
            *slot = p.id()?;
            Ok(())
        })?;
        Ok(meta)
    }

    /// After an object's `{`: each member's key to `member`, which consumes its value; then the `}`.
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<()>,
    ) -> Result<()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.fail("expected a key");
            }
            let key = self.string_value()?;
            self.expect(b':', "expected `:` after a key")?;
            member(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    /// An id in `_metadata`: a string or `null`.
    fn id(&mut self) -> Result<Option<Cow<'a, str>>> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string_value().map(Some),
            Some(b'n') => self.literal(b"null").map(|_| None),
            _ => self.fail("`_metadata.triggerId` and `_metadata.invocationId` must be strings"),
        }
    }

    /// A string whose value is needed: borrowed when it has no escape, else decoded by serde_json (which also
    /// refuses a lone surrogate, as it did before this pass existed).
    fn string_value(&mut self) -> Result<Cow<'a, str>> {
        let start = self.i;
        let escaped = self.string()?;
        if !escaped {
            return Ok(Cow::Borrowed(&self.src[start + 1..self.i - 1]));
        }
        match serde_json::from_str::<String>(&self.src[start..self.i]) {
            Ok(s) => Ok(Cow::Owned(s)),
            Err(_) => Err(ProbeError {
                offset: start,
                what: "invalid escape in a string",
            }),
        }
    }

    /// Skip one string (at its opening quote); tells whether it had an escape.
    #[inline]
    fn string(&mut self) -> Result<bool> {
        let (end, escaped) = scan_string(self.b, self.i)?;
        self.i = end;
        Ok(escaped)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        self.i = scan_literal(self.b, self.i, word)?;
        Ok(())
    }

    /// Skip one value of any kind, iteratively (no recursion, whatever the nesting).
    fn skip_value(&mut self) -> Result<()> {
        self.nest.clear();
        let end = skip_value(self.b, self.i, &mut self.nest)?;
        self.i = end;
        Ok(())
    }
}

fn error<T>(offset: usize, what: &'static str) -> Result<T> {
    Err(ProbeError { offset, what })
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string at `b[start]` (its opening quote): the index after its closing quote, and whether it had an escape.
/// The hot loop of the probe: sixteen bytes per step (one SSE2 or NEON compare per class), locals only.
#[inline(always)]
fn scan_string(b: &[u8], start: usize) -> Result<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        // To the next `"`, `\` or control character (the body is valid UTF-8: bytes >= 0x80 never match). The
        // last 15 bytes of the body go one at a time, through the match below.
        while let Some(chunk) = b.get(i..i + 16) {
            let hits = special(chunk.try_into().expect("16 bytes"));
            if hits != 0 {
                i += hits.trailing_zeros() as usize;
                break;
            }
            i += 16;
        }
        match b.get(i) {
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = b.get(i + 2..i + 6);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return error(i, "invalid \\u escape");
                        }
                        i += 6;
                    }
                    _ => return error(i, "invalid escape"),
                }
            }
            Some(&c) if c < 0x20 => return error(i, "control character in a string"),
            Some(_) => i += 1,
            None => return error(i, "unterminated string"),
        }
    }
}

/// One bit per byte of `chunk` (lowest bit first) that ends a run of plain string content: `"`, `\` or a
/// control character (below 0x20: `min(c, 0x1f) == c`).
#[inline(always)]
fn special(chunk: [u8; 16]) -> u32 {
    let v = u8x16::new(chunk);
    let quote = v.simd_eq(u8x16::splat(b'"'));
    let backslash = v.simd_eq(u8x16::splat(b'\\'));
    let control = v.min(u8x16::splat(0x1f)).simd_eq(v);
    (quote | backslash | control).to_bitmask()
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `b[i]`: the index after it.
#[inline]
fn scan_number(b: &[u8], mut i: usize) -> Result<usize> {
    let digits = |mut i: usize| {
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => {
            i += 1;
            if let Some(b'0'..=b'9') = b.get(i) {
                return error(i, "invalid number (leading zero)");
            }
        }
        Some(b'1'..=b'9') => i = digits(i + 1),
        _ => return error(i, "invalid number"),
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return error(end, "invalid number (no digit after `.`)");
        }
        i = end;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return error(end, "invalid number (no digit in the exponent)");
        }
        i = end;
    }
    Ok(i)
}

#[inline]
fn scan_literal(b: &[u8], i: usize, word: &'static [u8]) -> Result<usize> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        error(i, "expected a value")
    }
}

/// A key being skipped and its `:`, from `b[i]` (whitespace first): the index after the `:`.
#[inline(always)]
fn scan_key(b: &[u8], i: usize) -> Result<usize> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'"') {
        return error(i, "expected a key");
    }
    let (i, _) = scan_string(b, i)?;
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b':') {
        return error(i, "expected `:` after a key");
    }
    Ok(i + 1)
}

/// One value of any kind from `b[i]` (whitespace first), iteratively: the index after it. `nest` holds the open
/// containers (`true` for an object); it comes in empty.
fn skip_value(b: &[u8], mut i: usize, nest: &mut Vec<bool>) -> Result<usize> {
    loop {
        // A value.
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'"') => i = scan_string(b, i)?.0,
            Some(b'{') => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    nest.push(true);
                    i = scan_key(b, i)?;
                    continue;
                }
            }
            Some(b'[') => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    nest.push(false);
                    continue;
                }
            }
            Some(b't') => i = scan_literal(b, i, b"true")?,
            Some(b'f') => i = scan_literal(b, i, b"false")?,
            Some(b'n') => i = scan_literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = scan_number(b, i)?,
            _ => return error(i, "expected a value"),
        }
        // After a value: close what ends here, up to the next value or the end of the outermost one.
        loop {
            let Some(&object) = nest.last() else {
                return Ok(i);
            };
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => {
                    i += 1;
                    if object {
                        i = scan_key(b, i)?;
                    }
                    break;
                }
                Some(b'}') if object => {
                    i += 1;
                    nest.pop();
                }
                Some(b']') if !object => {
                    i += 1;
                    nest.pop();
                }
                _ if object => return error(i, "expected `,` or `}`"),
                _ => return error(i, "expected `,` or `]`"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
