//! The ingress's one pass over a request body: checks that it is one JSON object (RFC 8259 grammar) and reads
//! `_metadata.triggerId` and `_metadata.invocationId` on the way, without building a tree.
//!
//! Why not serde_json: this pass runs on every request, and serde_json's ignore path (`IgnoredAny` into a
//! borrowed struct) was the largest user-space cost of the relay (54% of its user-space instructions in the
//! blackhole bench, BENCHMARKS.md). The scanning itself is `crate::json` (shared with the filters' projection):
//! about 40% less per body than serde_json (`cargo bench --bench probe`). serde_json is still used where it is
//! the right tool: a key or an id that contains an escape is decoded by it,
//! and the differential tests (`probe/tests.rs`, `fuzz/fuzz_targets/json_probe.rs`) hold this pass to
//! serde_json's verdict on every input.
//!
//! What it accepts is what serde_json accepted before it: any JSON value inside the object (nesting is not
//! limited here: it costs one byte per level, and the body size is bounded), `_metadata` an object or `null`, the
//! two ids strings or `null`, no key of those two objects given twice. One difference is deliberate: serde's
//! derive also took `_metadata` as an array of its fields; this pass refuses it.

use std::borrow::Cow;

use crate::json::{scan_literal, skip_ws, Grammar};

/// What `_metadata` says (a field is `None` when it is absent or `null`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub trigger_id: Option<Cow<'a, str>>,
    pub invocation_id: Option<Cow<'a, str>>,
}

/// Why a body is not accepted, and the byte offset where that was found.
pub use crate::json::ScanError as ProbeError;

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
        crate::json::error(self.i, what)
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

    /// A string whose value is needed (`crate::json::string_value`: serde_json decodes it when it has an
    /// escape, and refuses a lone surrogate, as it did before this pass existed).
    fn string_value(&mut self) -> Result<Cow<'a, str>> {
        let (s, end) = crate::json::string_value(self.src, self.i)?;
        self.i = end;
        Ok(s)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        self.i = scan_literal(self.b, self.i, word)?;
        Ok(())
    }

    /// Skip one value of any kind, iteratively (no recursion, whatever the nesting).
    fn skip_value(&mut self) -> Result<()> {
        self.nest.clear();
        let end = crate::json::skip_value(self.b, self.i, &mut self.nest, &mut Grammar)?;
        self.i = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
