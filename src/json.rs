//! JSON scanning without building anything: the grammar of RFC 8259 walked over a body's bytes, sixteen bytes at a
//! time inside strings. Shared by the two passes that must not build a tree of what they skip: the ingress's
//! body probe (`ingress/probe.rs`: one JSON object, its `_metadata` read) and the filters' projection
//! (`filter/needs.rs`: only the members a trigger's filters can reach are built).
//!
//! Why not serde_json: its ignore path (`IgnoredAny`) was the largest user-space cost of the relay (BENCHMARKS.md,
//! the probe), and its checked skip (`deserialize_any` into a visitor that keeps nothing) was about a third of a
//! filtered event's cost (BENCHMARKS.md, "Eighth look"). Skipping strings is most of the work (80% of the bytes
//! of ISC's examples), and here it looks at sixteen bytes at a time (`wide`: SSE2 on x86-64, NEON on aarch64, no
//! unsafe code), in loops on local variables. simd-json (it builds a tape of the whole document first) and jiter
//! were both slower than serde_json for the probe's job.
//!
//! What a skip checks is the grammar (what serde_json's `IgnoredAny` checks). A caller that must refuse what
//! serde_json's *whole* parse refuses (a lone surrogate, a number out of range, nesting past 128) passes a
//! [`Check`] that looks at the escaped strings, the numbers and the depth on the way: those are rare, so they
//! cost nothing on the common path.

use std::borrow::Cow;
use std::fmt;

use wide::u8x16;

/// Why a body is not accepted, and the byte offset where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for ScanError {}

pub(crate) type Result<T> = std::result::Result<T, ScanError>;

/// What a skip checks beyond the grammar: called with each string that has an escape (quotes included), each
/// number's text, and the nesting depth of each container opened (counted from where the skip started).
pub(crate) trait Check {
    fn escaped(&mut self, text: &[u8]) -> Result<()>;
    fn number(&mut self, text: &[u8]) -> Result<()>;
    fn nested(&mut self, depth: usize) -> Result<()>;
}

/// The grammar only (serde_json's `IgnoredAny`): what the ingress's probe checks.
pub(crate) struct Grammar;

impl Check for Grammar {
    #[inline(always)]
    fn escaped(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }

    #[inline(always)]
    fn number(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }

    #[inline(always)]
    fn nested(&mut self, _: usize) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn error<T>(offset: usize, what: &'static str) -> Result<T> {
    Err(ScanError { offset, what })
}

#[inline(always)]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string at `b[start]` (its opening quote): the index after its closing quote, and whether it had an escape.
/// The hot loop of both passes: sixteen bytes per step (one SSE2 or NEON compare per class), locals only.
#[inline(always)]
pub(crate) fn scan_string(b: &[u8], start: usize) -> Result<(usize, bool)> {
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
pub(crate) fn scan_number(b: &[u8], mut i: usize) -> Result<usize> {
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

/// The string at `src[i]` (its opening quote) as its value, and the index after it: borrowed when it has no
/// escape, else decoded by serde_json (which refuses a lone surrogate, as its whole parse does).
pub(crate) fn string_value(src: &str, i: usize) -> Result<(Cow<'_, str>, usize)> {
    let (end, escaped) = scan_string(src.as_bytes(), i)?;
    if !escaped {
        return Ok((Cow::Borrowed(&src[i + 1..end - 1]), end));
    }
    match serde_json::from_str::<String>(&src[i..end]) {
        Ok(s) => Ok((Cow::Owned(s), end)),
        Err(_) => error(i, "invalid escape in a string"),
    }
}

#[inline]
pub(crate) fn scan_literal(b: &[u8], i: usize, word: &'static [u8]) -> Result<usize> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        error(i, "expected a value")
    }
}

/// A string being skipped at `b[i]`, its escapes shown to `check`: the index after it.
#[inline(always)]
fn skip_string(b: &[u8], i: usize, check: &mut impl Check) -> Result<usize> {
    let (end, escaped) = scan_string(b, i)?;
    if escaped {
        check.escaped(&b[i..end])?;
    }
    Ok(end)
}

/// A key being skipped and its `:`, from `b[i]` (whitespace first): the index after the `:`.
#[inline(always)]
fn scan_key(b: &[u8], i: usize, check: &mut impl Check) -> Result<usize> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'"') {
        return error(i, "expected a key");
    }
    let i = skip_string(b, i, check)?;
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b':') {
        return error(i, "expected `:` after a key");
    }
    Ok(i + 1)
}

/// One value of any kind from `b[i]` (whitespace first), iteratively (no recursion, whatever the nesting): the
/// index after it. `nest` holds the open containers (`true` for an object); it comes in empty.
pub(crate) fn skip_value(
    b: &[u8],
    mut i: usize,
    nest: &mut Vec<bool>,
    check: &mut impl Check,
) -> Result<usize> {
    loop {
        // A value.
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'"') => i = skip_string(b, i, check)?,
            Some(b'{') => {
                check.nested(nest.len() + 1)?;
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    nest.push(true);
                    i = scan_key(b, i, check)?;
                    continue;
                }
            }
            Some(b'[') => {
                check.nested(nest.len() + 1)?;
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
            Some(b'-' | b'0'..=b'9') => {
                let end = scan_number(b, i)?;
                check.number(&b[i..end])?;
                i = end;
            }
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
                        i = scan_key(b, i, check)?;
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
