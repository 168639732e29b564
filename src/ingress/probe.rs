//! The ingress's one pass over a request body: checks that it is one JSON object (RFC 8259 grammar) and reads
//! `_metadata.triggerId` and `_metadata.invocationId` on the way, without building a tree.
//!
//! Why not serde_json: this pass runs on every request, and serde_json's ignore path (`IgnoredAny` into a
//! borrowed struct) was the largest user-space cost of the relay (about 30% of its user-space cycles in the
//! blackhole bench, BENCHMARKS.md). Skipping strings is most of the work, and here it looks at eight bytes at a
//! time. simd-json (it builds a tape of the whole document first) and jiter were both slower than serde_json for
//! this job. serde_json is still used where it is the right tool: a key or an id that contains an escape is
//! decoded by it, and the differential tests (`tests/probe.rs`, `fuzz/fuzz_targets/json_probe.rs`) hold this
//! pass to serde_json's verdict on every input.
//!
//! What it accepts is what serde_json accepted before it: any JSON value inside the object (nesting is not
//! limited here: it costs one bit per level, and the body size is), `_metadata` an object or `null`, the two ids
//! strings or `null`, no key of those two objects given twice.

use std::borrow::Cow;
use std::fmt;

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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that is zero; exact for the lowest such byte (borrows only flag bytes above
/// a true match), which is the only one used.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGHS
}

impl<'a> Parser<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T> {
        Err(ProbeError {
            offset: self.i,
            what,
        })
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
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
        const QUOTE: u64 = ONES * b'"' as u64;
        const BACKSLASH: u64 = ONES * b'\\' as u64;
        const SPACE: u64 = ONES * 0x20;
        let b = self.b;
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time to the next `"`, `\` or control character (the body is valid UTF-8, so
            // bytes >= 0x80 are never a match).
            while let Some(chunk) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                let hits = zero_bytes(w ^ QUOTE)
                    | zero_bytes(w ^ BACKSLASH)
                    | (w.wrapping_sub(SPACE) & !w & HIGHS);
                if hits != 0 {
                    i += (hits.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                None => {
                    self.i = i;
                    return self.fail("unterminated string");
                }
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                self.i = i;
                                return self.fail("invalid \\u escape");
                            }
                            i += 6;
                        }
                        _ => {
                            self.i = i;
                            return self.fail("invalid escape");
                        }
                    }
                }
                Some(&c) if c < 0x20 => {
                    self.i = i;
                    return self.fail("control character in a string");
                }
                Some(_) => i += 1,
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.fail("expected a value")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return self.fail("invalid number (leading zero)");
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.fail("invalid number (no digit after `.`)");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number (no digit in the exponent)");
            }
        }
        Ok(())
    }

    /// Skip one value of any kind, iteratively (no recursion, whatever the nesting).
    fn skip_value(&mut self) -> Result<()> {
        self.nest.clear();
        loop {
            // A value.
            self.ws();
            match self.peek() {
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        self.nest.push(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        self.nest.push(false);
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return self.fail("expected a value"),
            }
            // After a value: close what ends here, up to the next value or the end of the outermost one.
            loop {
                let Some(&object) = self.nest.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.i += 1;
                        self.nest.pop();
                    }
                    Some(b']') if !object => {
                        self.i += 1;
                        self.nest.pop();
                    }
                    _ if object => return self.fail("expected `,` or `}`"),
                    _ => return self.fail("expected `,` or `]`"),
                }
            }
        }
    }

    /// A key being skipped and its `:`.
    fn key(&mut self) -> Result<()> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.fail("expected a key");
        }
        self.string()?;
        self.expect(b':', "expected `:` after a key")
    }
}
