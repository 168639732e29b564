//! Character-level helpers shared by the parser and the evaluator: string
//! unescaping as Jayway's `Utils.unescape` does it, Java `BigDecimal` /
//! `Double` number rendering (Jayway compares strings with numbers through
//! their Java text form), bracket/quote matching that skips string and regex
//! literals, and the permissive JSON reader used for `[..]` / `{..}` literals
//! (Jayway hands those to json-smart in `MODE_PERMISSIVE`).
//!
//! Everything here works on byte offsets into `&str`; the characters that
//! matter to the grammar are ASCII, so slicing at them is always on a char
//! boundary.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Maximum nesting inside a `[..]` / `{..}` JSON literal.
pub(crate) const MAX_JSON_DEPTH: usize = 64;

/// Index of the next `quote` at or after `from` that is not escaped by a
/// backslash (Jayway `CharacterIndex.nextIndexOfUnescaped`, which starts
/// looking one past the opening character: pass `open + 1`).
pub(crate) fn next_unescaped(b: &[u8], from: usize, end: usize, quote: u8) -> Option<usize> {
    let mut escaped = false;
    let mut i = from;
    while i < end {
        let c = b[i];
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == quote {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Index of the `close` matching the `open` at `start`, skipping quoted
/// strings and (optionally) `/regex/` literals. Only `open`/`close` are
/// counted, as in Jayway's `indexOfMatchingCloseChar`.
pub(crate) fn matching_close(
    b: &[u8],
    start: usize,
    end: usize,
    open: u8,
    close: u8,
    skip_regex: bool,
) -> Option<usize> {
    debug_assert_eq!(b.get(start), Some(&open));
    let mut depth = 1usize;
    let mut i = start + 1;
    while i < end {
        let c = b[i];
        if c == b'\'' || c == b'"' || (skip_regex && c == b'/') {
            i = next_unescaped(b, i + 1, end, c)? + 1;
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// Jayway `Utils.unescape`: `\" \' \\ \b \f \n \r \t \uXXXX`, any other
/// escaped character stands for itself, a trailing lone backslash is kept.
/// `\u` escapes are UTF-16 code units (surrogate pairs are combined; a lone
/// surrogate becomes U+FFFD). Borrows when there is nothing to unescape.
pub(crate) fn unescape(raw: &str) -> Result<Cow<'_, str>, String> {
    if !raw.contains('\\') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut units: Vec<u16> = Vec::new();
    let mut chars = raw.chars();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        if !units.is_empty() {
            out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{FFFD}')));
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut units, &mut out);
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            flush(&mut units, &mut out);
            out.push('\\');
            break;
        };
        if e == 'u' {
            let mut v: u32 = 0;
            for _ in 0..4 {
                let h = chars
                    .next()
                    .and_then(|h| h.to_digit(16))
                    .ok_or_else(|| "invalid \\u escape".to_string())?;
                v = v * 16 + h;
            }
            units.push(v as u16);
            continue;
        }
        flush(&mut units, &mut out);
        out.push(match e {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            other => other,
        });
    }
    flush(&mut units, &mut out);
    Ok(Cow::Owned(out))
}

/// What Jayway's `StringNode(text, escape = true)` does to a string that
/// ends up in a value list: strip one pair of matching surrounding quotes,
/// then unescape. Falls back to the raw text when unescaping fails.
pub(crate) fn list_string(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let inner = if b.len() > 1
        && ((b[0] == b'\'' && b[b.len() - 1] == b'\'') || (b[0] == b'"' && b[b.len() - 1] == b'"'))
    {
        &s[1..s.len() - 1]
    } else {
        s
    };
    unescape(inner).unwrap_or(Cow::Borrowed(inner))
}

/// Java `String.compareTo` (UTF-16 code unit order).
pub(crate) fn java_str_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java `String.length()` (UTF-16 code units).
pub(crate) fn java_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/// A decimal in `BigDecimal` form: sign, unscaled digits (no leading zeros,
/// `"0"` for zero) and scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BigDec {
    neg: bool,
    digits: String,
    scale: i64,
}

/// `new BigDecimal(text)`: `[-+]? digits [. digits] [(e|E) [-+]? digits]`
/// with at least one digit in the mantissa.
pub(crate) fn parse_bigdecimal(text: &str) -> Option<BigDec> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut neg = false;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        neg = b[i] == b'-';
        i += 1;
    }
    let mut digits = String::new();
    let mut frac = 0i64;
    let mut seen_digit = false;
    let mut seen_dot = false;
    while i < b.len() {
        match b[i] {
            c @ b'0'..=b'9' => {
                seen_digit = true;
                digits.push(c as char);
                if seen_dot {
                    frac += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if !seen_digit {
        return None;
    }
    let mut exp = 0i64;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            eneg = b[i] == b'-';
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = exp
                .saturating_mul(10)
                .saturating_add(i64::from(b[i] - b'0'));
            i += 1;
        }
        if i == start || exp > 999_999_999 {
            return None;
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    let digits = if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    };
    Some(BigDec {
        neg,
        digits,
        scale: frac - exp,
    })
}

impl BigDec {
    /// `BigDecimal.toString()`.
    pub(crate) fn to_java_string(&self) -> String {
        let mut out = String::new();
        if self.neg && self.digits != "0" {
            out.push('-');
        }
        let n = self.digits.len() as i64;
        if self.scale == 0 {
            out.push_str(&self.digits);
            return out;
        }
        let adjusted = -self.scale + (n - 1);
        if self.scale > 0 && adjusted >= -6 {
            if n > self.scale {
                let cut = (n - self.scale) as usize;
                out.push_str(&self.digits[..cut]);
                out.push('.');
                out.push_str(&self.digits[cut..]);
            } else {
                out.push_str("0.");
                for _ in 0..(self.scale - n) {
                    out.push('0');
                }
                out.push_str(&self.digits);
            }
            return out;
        }
        out.push_str(&self.digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&self.digits[1..]);
        }
        out.push('E');
        if adjusted >= 0 {
            out.push('+');
        }
        out.push_str(&adjusted.to_string());
        out
    }
}

/// Java text of a JSON number as Jayway sees it: the parsed Java `Number`'s
/// `toString()` run through `new BigDecimal(..).toString()`. Integers print
/// as digits; doubles go through `Double.toString` (plain for
/// `1e-3 <= |d| < 1e7`, computerized scientific otherwise).
pub(crate) fn java_number_string(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    java_double_string(f)
}

pub(crate) fn java_double_string(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        // Double.toString(±0.0) is "0.0"/"-0.0"; BigDecimal drops the sign.
        return "0.0".into();
    }
    // Shortest round-trip digits and decimal exponent from Rust's `{:e}`.
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let a = f.abs();
    let (unscaled, scale) = if (1e-3..1e7).contains(&a) {
        // Plain form: at least one fraction digit.
        let (int_part, frac_part) = if exp >= 0 {
            let e = exp as usize;
            if digits.len() > e + 1 {
                (digits[..e + 1].to_string(), digits[e + 1..].to_string())
            } else {
                let mut ip = digits.clone();
                ip.extend(std::iter::repeat_n('0', e + 1 - digits.len()));
                (ip, "0".to_string())
            }
        } else {
            let mut fp = "0".repeat((-exp - 1) as usize);
            fp.push_str(&digits);
            ("0".to_string(), fp)
        };
        let scale = frac_part.len() as i64;
        (format!("{int_part}{frac_part}"), scale)
    } else {
        let frac = if digits.len() > 1 {
            digits[1..].to_string()
        } else {
            "0".to_string()
        };
        let scale = frac.len() as i64 - exp;
        (format!("{}{}", &digits[..1], frac), scale)
    };
    let trimmed = unscaled.trim_start_matches('0');
    BigDec {
        neg: f < 0.0,
        digits: if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        },
        scale,
    }
    .to_java_string()
}

/// Numeric comparison of two JSON numbers (exact for integers).
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Ordering {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let x = a.as_f64().unwrap_or(0.0);
            let y = b.as_f64().unwrap_or(0.0);
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

fn int_of(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        Some(i128::from(i))
    } else {
        n.as_u64().map(i128::from)
    }
}

/// Parse a numeric literal into a JSON number (`i64`/`u64` when it is a
/// plain integer, `f64` otherwise).
pub(crate) fn number_from_text(text: &str) -> Option<Number> {
    let plain_int = !text.contains(['.', 'e', 'E']);
    if plain_int {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Number::from(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Some(Number::from(u));
        }
    }
    let t = text.strip_prefix('+').unwrap_or(text);
    t.parse::<f64>().ok().and_then(Number::from_f64)
}

// ---------------------------------------------------------------------------
// Permissive JSON (json-smart MODE_PERMISSIVE, the subset that matters)
// ---------------------------------------------------------------------------

/// Parse a JSON literal the way json-smart's permissive mode reads it:
/// single- or double-quoted strings, unquoted words (strings), numbers,
/// `true`/`false`/`null`, arrays and objects (keys quoted or bare), trailing
/// commas tolerated. On error returns the byte offset and a message.
pub(crate) fn parse_permissive_json(text: &str) -> Result<Value, (usize, String)> {
    let mut p = Pj {
        b: text.as_bytes(),
        s: text,
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err((p.i, "unexpected text after JSON literal".into()));
    }
    Ok(v)
}

struct Pj<'s> {
    s: &'s str,
    b: &'s [u8],
    i: usize,
}

impl Pj<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, (usize, String)> {
        if depth >= MAX_JSON_DEPTH {
            return Err((
                self.i,
                format!("JSON literal nested deeper than {MAX_JSON_DEPTH}"),
            ));
        }
        match self.b.get(self.i) {
            None => Err((self.i, "expected a JSON value".into())),
            Some(b'[') => {
                self.i += 1;
                let mut arr = Vec::new();
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Array(arr));
                        }
                        None => return Err((self.i, "unterminated JSON array".into())),
                        _ => {}
                    }
                    arr.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return Err((self.i, "expected ',' or ']' in JSON array".into())),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut map = Map::new();
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Object(map));
                        }
                        None => return Err((self.i, "unterminated JSON object".into())),
                        _ => {}
                    }
                    let key = match self.b[self.i] {
                        q @ (b'"' | b'\'') => self.string(q)?,
                        _ => self.word().to_string(),
                    };
                    if key.is_empty() {
                        return Err((self.i, "expected an object key".into()));
                    }
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err((self.i, "expected ':' in JSON object".into()));
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    map.insert(key, v);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err((self.i, "expected ',' or '}' in JSON object".into())),
                    }
                }
            }
            Some(&q @ (b'"' | b'\'')) => self.string(q).map(Value::String),
            Some(_) => {
                let start = self.i;
                let w = self.word();
                if w.is_empty() {
                    return Err((start, "expected a JSON value".into()));
                }
                Ok(match w {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => match looks_numeric(w).then(|| number_from_text(w)).flatten() {
                        Some(n) => Value::Number(n),
                        None => Value::String(w.to_string()),
                    },
                })
            }
        }
    }

    fn word(&mut self) -> &str {
        let start = self.i;
        while self.i < self.b.len()
            && !matches!(
                self.b[self.i],
                b',' | b':'
                    | b']'
                    | b'}'
                    | b'['
                    | b'{'
                    | b'"'
                    | b'\''
                    | b' '
                    | b'\t'
                    | b'\n'
                    | b'\r'
            )
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn string(&mut self, q: u8) -> Result<String, (usize, String)> {
        let start = self.i;
        let close = next_unescaped(self.b, self.i + 1, self.b.len(), q)
            .ok_or((start, "unterminated string in JSON literal".to_string()))?;
        let raw = &self.s[self.i + 1..close];
        self.i = close + 1;
        unescape(raw).map(Cow::into_owned).map_err(|m| (start, m))
    }
}

fn looks_numeric(w: &str) -> bool {
    let b = w.as_bytes();
    let first = if b[0] == b'-' { b.get(1) } else { b.first() };
    matches!(first, Some(c) if c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
}
