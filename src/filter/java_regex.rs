//! Java `java.util.regex.Pattern` semantics on the `regex` crate, for the
//! `=~ /pattern/flags` operator.
//!
//! # Why this module exists
//!
//! ISC evaluates filters with Jayway 2.9.0 on the JVM, so a filter's regex
//! means what `Pattern.compile(pattern, flags)` makes of it. The `regex`
//! crate's syntax is close to Java's but its defaults are not: `\d \w \s`,
//! `\p{Alpha}` and `(?i)` are Unicode-aware in Rust and ASCII-only in Java,
//! `.` stops only at `\n` in Rust and at every Java line terminator in Java,
//! `\v` is one character in Rust and a class in Java, and the inline flags
//! `(?u)`/`(?U)` mean different things. Passing the text through would give
//! other verdicts than ISC on ordinary filters (`/ü/i`, `\d+` on non-ASCII
//! digits).
//!
//! So the pattern is parsed into `regex-syntax`'s AST (the parser the
//! `regex` crate itself uses) and printed back as a Rust pattern that spells
//! out Java's meaning: ASCII classes, ASCII-only case folding (letters become
//! `[aA]`) unless Java's `UNICODE_CASE` (`u`) or `UNICODE_CHARACTER_CLASS`
//! (`U`) flag is on, Java's line terminators for `.`, and Jayway's flags `d
//! i m s u x U` (as flags after the closing `/` or inline) kept as state of
//! the printer, not handed to the crate. A construct the crate cannot express
//! with Java's meaning is refused when the filter is compiled, with a message
//! ([`translate_with`]'s errors), never evaluated differently.
//!
//! # Known differences (measured against Java 17 in `tests/fixtures/jayway`)
//!
//! * `^`/`$` under `m` see `\n`, `\r\n` and `\r` as line ends (the crate's
//!   CRLF mode) but not `\u0085`, `\u2028`, `\u2029` as Java does, and `$`
//!   without `m` does not match before a final line terminator (corpus pair
//!   `corner-00`). Under full-string matching (`Matcher.matches()`) this only
//!   shows when the pattern matches a line terminator after `$`.
//! * With `u`/`U`, case-insensitive matching uses Unicode simple case folding
//!   (Java compares `toUpperCase`/`toLowerCase` of each character); the
//!   corpus's samples (Kelvin sign, `ß`, long s, `ﬀ`) agree, others may not.
//! * Unicode property names are matched loosely by the crate
//!   (`\p{greek}`); Java wants its own spelling and refuses the pattern.
//! * Refused here, accepted by Java: look-around, backreferences, `\Q..\E`,
//!   possessive and nested quantifiers, POSIX `[[:alpha:]]` (Java reads it as
//!   a set of characters), inline `(?d)`, patterns over the size limit.

use regex::{Regex, RegexBuilder};
use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassPerlKind, ClassSet, ClassSetBinaryOpKind, ClassSetItem,
    ClassUnicodeKind, FlagsItemKind, GroupKind, HexLiteralKind, LiteralKind, RepetitionKind,
    RepetitionRange, SpecialLiteralKind,
};

/// Java's `.` without `DOTALL`: anything but its line terminators.
const DOT: &str = r"[^\n\r\x{85}\x{2028}\x{2029}]";
/// Java's `.` under `UNIX_LINES` (`d`): anything but `\n`.
const DOT_UNIX: &str = r"[^\n]";
/// Java's `\v` (vertical whitespace since Java 8).
const VSPACE: &str = r"\n\x0B\f\r\x{85}\x{2028}\x{2029}";

/// The flags in force at a point of the pattern (Java `Pattern` flags).
#[derive(Clone, Copy, Default)]
struct State {
    /// `i`: CASE_INSENSITIVE.
    ci: bool,
    /// `u`: UNICODE_CASE.
    ucase: bool,
    /// `U`: UNICODE_CHARACTER_CLASS (implies UNICODE_CASE).
    uclass: bool,
    /// `m`: MULTILINE.
    multi: bool,
    /// `s`: DOTALL.
    dotall: bool,
    /// `d`: UNIX_LINES.
    unix: bool,
}

impl State {
    fn ascii_ci(&self) -> bool {
        self.ci && !self.ucase && !self.uclass
    }

    fn unicode_ci(&self) -> bool {
        self.ci && (self.ucase || self.uclass)
    }

    fn set(&mut self, flag: char, on: bool) {
        match flag {
            'i' => self.ci = on,
            'u' => self.ucase = on,
            'U' => self.uclass = on,
            'm' => self.multi = on,
            's' => self.dotall = on,
            'd' => self.unix = on,
            _ => {}
        }
    }
}

/// A compiled Java pattern, for full-string matching.
///
/// Java's `.` spelled out as a class (`[^\n\r\x{85}\x{2028}\x{2029}]`) keeps
/// the crate off its fastest paths (a deep scan with `/.*@example\.com/` ran
/// 35% slower). So a pattern with such a `.` is compiled twice: `strict` with
/// the class, and `fast` with the crate's own `.` (anything but `\n`), which
/// means the same on every input without `\r`, NEL, LS or PS — nearly every
/// input. [`JavaRegex::is_match`] picks by one scan of the input.
#[derive(Debug, Clone)]
pub(crate) struct JavaRegex {
    strict: Regex,
    fast: Option<Regex>,
}

impl JavaRegex {
    /// Java's `Pattern.matcher(input).matches()`.
    pub(crate) fn is_match(&self, input: &str) -> bool {
        match &self.fast {
            Some(fast) if !has_line_terminator_but_lf(input) => fast.is_match(input),
            _ => self.strict.is_match(input),
        }
    }
}

/// Does `s` hold a Java line terminator other than `\n` (`\r`, NEL, LS, PS)?
fn has_line_terminator_but_lf(s: &str) -> bool {
    // The bytes that can start one: `\r`, 0xC2 (NEL is C2 85), 0xE2 (LS, PS are E2 80 A8/A9).
    s.bytes().any(|b| matches!(b, b'\r' | 0xC2 | 0xE2))
        && s.chars()
            .any(|c| matches!(c, '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
}

/// Compile a Jayway `/pattern/flags` literal with Java's meaning, for
/// full-string matching (`Matcher.matches()`), with the given size limits.
pub(crate) fn compile(
    pattern: &str,
    flags: &str,
    size_limit: usize,
    nest_limit: u32,
) -> Result<JavaRegex, String> {
    let build = |fast_dot: bool| -> Result<(Regex, bool), String> {
        let (body, used_dot) = translate_with(pattern, flags, nest_limit, fast_dot)
            .map_err(|m| format!("invalid regex /{pattern}/: {m}"))?;
        let full = format!(r"\A(?:{body})\z");
        let re = RegexBuilder::new(&full)
            .size_limit(size_limit)
            .dfa_size_limit(2 * size_limit)
            .nest_limit(nest_limit.saturating_mul(4))
            .build()
            .map_err(|e| {
                format!(
                    "invalid regex /{pattern}/: {}",
                    e.to_string().lines().last().unwrap_or("")
                )
            })?;
        Ok((re, used_dot))
    };
    let (strict, used_dot) = build(false)?;
    let fast = if used_dot { Some(build(true)?.0) } else { None };
    Ok(JavaRegex { strict, fast })
}

/// Translate a Java pattern (with Jayway's flag letters) into an equivalent
/// `regex` crate pattern, or say why it cannot be; with `fast_dot`, Java's
/// default `.` becomes the crate's `.` (see [`JavaRegex`]). Also says whether
/// the pattern has such a `.`.
fn translate_with(
    pattern: &str,
    flags: &str,
    nest_limit: u32,
    fast_dot: bool,
) -> Result<(String, bool), String> {
    let mut st = State::default();
    let mut verbose = false;
    for c in flags.chars() {
        if c == 'x' {
            verbose = true;
        }
        st.set(c, true);
    }
    if pattern.contains('\\') && (pattern.contains("\\Q") || pattern.contains("\\E")) {
        return Err("\\Q...\\E quoting is not supported".into());
    }
    let ast = ast::parse::ParserBuilder::new()
        .ignore_whitespace(verbose)
        .nest_limit(nest_limit)
        .octal(false)
        .build()
        .parse(pattern)
        .map_err(|e| {
            let kind = e.kind().to_string();
            match e.kind() {
                ast::ErrorKind::UnsupportedLookAround => "look-around is not supported".to_string(),
                ast::ErrorKind::UnsupportedBackreference => {
                    "backreferences are not supported".to_string()
                }
                _ => kind,
            }
        })?;
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut p = Printer {
        out: &mut out,
        fast_dot,
        used_dot: false,
    };
    p.ast(&ast, &mut st)?;
    let used_dot = p.used_dot;
    Ok((out, used_dot))
}

struct Printer<'o> {
    out: &'o mut String,
    /// Print Java's default `.` as the crate's `.` (valid only for inputs without `\r`, NEL, LS, PS).
    fast_dot: bool,
    /// A default `.` was printed.
    used_dot: bool,
}

type Res = Result<(), String>;

impl Printer<'_> {
    fn ast(&mut self, ast: &Ast, st: &mut State) -> Res {
        match ast {
            Ast::Empty(_) => {}
            Ast::Flags(f) => apply_flags(&f.flags, st)?,
            Ast::Literal(l) => self.literal(l, st)?,
            Ast::Dot(_) => {
                let dot = if st.dotall {
                    "(?s:.)"
                } else if st.unix {
                    DOT_UNIX
                } else {
                    self.used_dot = true;
                    if self.fast_dot {
                        "."
                    } else {
                        DOT
                    }
                };
                self.out.push_str(dot);
            }
            Ast::Assertion(a) => self.assertion(a.kind.clone(), st)?,
            Ast::ClassUnicode(c) => self.unicode_class(c, st),
            Ast::ClassPerl(c) => self.perl_class(c.kind.clone(), c.negated, st),
            Ast::ClassBracketed(c) => self.bracketed(c, st)?,
            Ast::Repetition(r) => {
                if matches!(*r.ast, Ast::Repetition(_)) {
                    // Java reads `a*+` as possessive and `a{2}{3}` its own way.
                    return Err(
                        "a quantifier on a quantifier (possessive `*+`, `{n}{m}`) is not supported"
                            .into(),
                    );
                }
                self.ast(&r.ast, st)?;
                match &r.op.kind {
                    RepetitionKind::ZeroOrOne => self.out.push('?'),
                    RepetitionKind::ZeroOrMore => self.out.push('*'),
                    RepetitionKind::OneOrMore => self.out.push('+'),
                    RepetitionKind::Range(RepetitionRange::Exactly(n)) => {
                        self.out.push_str(&format!("{{{n}}}"))
                    }
                    RepetitionKind::Range(RepetitionRange::AtLeast(n)) => {
                        self.out.push_str(&format!("{{{n},}}"))
                    }
                    RepetitionKind::Range(RepetitionRange::Bounded(m, n)) => {
                        self.out.push_str(&format!("{{{m},{n}}}"))
                    }
                }
                if !r.greedy {
                    self.out.push('?');
                }
            }
            Ast::Group(g) => {
                // Flags set inside a group end with it (Java and Rust agree).
                let mut inner = *st;
                match &g.kind {
                    GroupKind::CaptureIndex(_) => {}
                    GroupKind::CaptureName { starts_with_p, .. } => {
                        if *starts_with_p {
                            return Err("(?P<name>...) is not Java syntax".into());
                        }
                    }
                    GroupKind::NonCapturing(flags) => apply_flags(flags, &mut inner)?,
                }
                self.out.push_str("(?:");
                self.ast(&g.ast, &mut inner)?;
                self.out.push(')');
            }
            Ast::Alternation(a) => {
                for (i, alt) in a.asts.iter().enumerate() {
                    if i > 0 {
                        self.out.push('|');
                    }
                    self.ast(alt, st)?;
                }
            }
            Ast::Concat(c) => {
                for a in &c.asts {
                    self.ast(a, st)?;
                }
            }
        }
        Ok(())
    }

    fn literal(&mut self, l: &ast::Literal, st: &State) -> Res {
        let c = literal_char(l)?;
        if c == '\u{b}'
            && matches!(
                l.kind,
                LiteralKind::Special(SpecialLiteralKind::VerticalTab)
            )
        {
            self.out.push('[');
            self.out.push_str(VSPACE);
            self.out.push(']');
            return Ok(());
        }
        if st.ascii_ci() && c.is_ascii_alphabetic() {
            self.out.push('[');
            self.out.push(c.to_ascii_lowercase());
            self.out.push(c.to_ascii_uppercase());
            self.out.push(']');
        } else if st.unicode_ci() {
            self.out.push_str("(?i:");
            push_escaped(self.out, c, false);
            self.out.push(')');
        } else {
            push_escaped(self.out, c, false);
        }
        Ok(())
    }

    fn assertion(&mut self, kind: AssertionKind, st: &State) -> Res {
        let s = match kind {
            // Java's multiline anchors see `\n`, `\r\n` and `\r` as line ends (and NEL, LS, PS); the crate's
            // CRLF mode sees the first three. Under `d` only `\n` is one, as in the crate's plain multiline.
            AssertionKind::StartLine if st.multi && st.unix => "(?m:^)",
            AssertionKind::EndLine if st.multi && st.unix => "(?m:$)",
            AssertionKind::StartLine if st.multi => "(?Rm:^)",
            AssertionKind::EndLine if st.multi => "(?Rm:$)",
            AssertionKind::StartLine | AssertionKind::StartText => r"\A",
            AssertionKind::EndLine | AssertionKind::EndText => r"\z",
            // Java 17's `\b` uses `Character.isLetterOrDigit` (Unicode) with
            // or without `U`; so does the crate's Unicode `\b`.
            AssertionKind::WordBoundary => r"\b",
            AssertionKind::NotWordBoundary => r"\B",
            // Java reads `\<` and `\>` as the characters themselves.
            AssertionKind::WordBoundaryStartAngle => r"<",
            AssertionKind::WordBoundaryEndAngle => r">",
            _ => return Err("\\b{...} word boundaries are not Java syntax".into()),
        };
        self.out.push_str(s);
        Ok(())
    }

    fn perl_class(&mut self, kind: ClassPerlKind, negated: bool, st: &State) {
        if st.uclass {
            let c = match kind {
                ClassPerlKind::Digit => 'd',
                ClassPerlKind::Space => 's',
                ClassPerlKind::Word => 'w',
            };
            self.out.push('\\');
            self.out
                .push(if negated { c.to_ascii_uppercase() } else { c });
            return;
        }
        let set = match kind {
            ClassPerlKind::Digit => "0-9",
            ClassPerlKind::Space => r"\t\n\x0B\f\r ",
            ClassPerlKind::Word => "0-9A-Za-z_",
        };
        self.out.push_str(if negated { "[^" } else { "[" });
        self.out.push_str(set);
        self.out.push(']');
    }

    fn unicode_class(&mut self, c: &ast::ClassUnicode, st: &State) {
        if let ClassUnicodeKind::Named(name) = &c.kind {
            if !st.uclass {
                if let Some(set) = posix_ascii(name, st.ci) {
                    self.out.push_str(if c.negated { "[^" } else { "[" });
                    self.out.push_str(set);
                    self.out.push(']');
                    return;
                }
            }
        }
        self.out.push_str(if c.negated { r"\P" } else { r"\p" });
        match &c.kind {
            ClassUnicodeKind::OneLetter(l) => self.out.push(*l),
            ClassUnicodeKind::Named(n) => {
                self.out.push('{');
                self.out.push_str(n);
                self.out.push('}');
            }
            ClassUnicodeKind::NamedValue { op, name, value } => {
                self.out.push('{');
                self.out.push_str(name);
                self.out.push_str(match op {
                    ast::ClassUnicodeOpKind::NotEqual => "!=",
                    _ => "=",
                });
                self.out.push_str(value);
                self.out.push('}');
            }
        }
    }

    fn bracketed(&mut self, c: &ast::ClassBracketed, st: &State) -> Res {
        let wrap = st.unicode_ci();
        if wrap {
            self.out.push_str("(?i:");
        }
        self.out.push_str(if c.negated { "[^" } else { "[" });
        self.set(&c.kind, st)?;
        self.out.push(']');
        if wrap {
            self.out.push(')');
        }
        Ok(())
    }

    fn set(&mut self, set: &ClassSet, st: &State) -> Res {
        match set {
            ClassSet::Item(item) => self.item(item, st),
            ClassSet::BinaryOp(op) => {
                if op.kind != ClassSetBinaryOpKind::Intersection {
                    return Err("'--' and '~~' in a character class are not Java syntax".into());
                }
                self.out.push('[');
                self.set(&op.lhs, st)?;
                self.out.push_str("]&&[");
                self.set(&op.rhs, st)?;
                self.out.push(']');
                Ok(())
            }
        }
    }

    fn item(&mut self, item: &ClassSetItem, st: &State) -> Res {
        match item {
            ClassSetItem::Empty(_) => {}
            ClassSetItem::Literal(l) => {
                if matches!(
                    l.kind,
                    LiteralKind::Special(SpecialLiteralKind::VerticalTab)
                ) {
                    self.out.push_str(VSPACE);
                } else {
                    let c = literal_char(l)?;
                    self.range(c, c, st);
                }
            }
            ClassSetItem::Range(r) => {
                let (a, b) = (literal_char(&r.start)?, literal_char(&r.end)?);
                self.range(a, b, st);
            }
            ClassSetItem::Ascii(_) => {
                return Err("[[:name:]] classes are not Java syntax; use \\p{Name}".into())
            }
            ClassSetItem::Unicode(u) => self.unicode_class(u, st),
            ClassSetItem::Perl(p) => self.perl_class(p.kind.clone(), p.negated, st),
            ClassSetItem::Bracketed(b) => {
                // A nested class inherits the outer one's case wrapping.
                self.out.push_str(if b.negated { "[^" } else { "[" });
                self.set(&b.kind, st)?;
                self.out.push(']');
            }
            ClassSetItem::Union(u) => {
                for i in &u.items {
                    self.item(i, st)?;
                }
            }
        }
        Ok(())
    }

    /// `a-b` inside a class, plus its ASCII case counterparts under ASCII
    /// case-insensitivity (Java's `CASE_INSENSITIVE` without `UNICODE_CASE`
    /// folds only `A-Z`/`a-z`).
    fn range(&mut self, a: char, b: char, st: &State) {
        self.push_range(a, b);
        if st.ascii_ci() {
            for (lo, hi, shift) in [('a', 'z', -32i32), ('A', 'Z', 32)] {
                let (s, e) = (a.max(lo), b.min(hi));
                if s <= e {
                    let m = |c: char| char::from_u32((c as i32 + shift) as u32).unwrap_or(c);
                    self.push_range(m(s), m(e));
                }
            }
        }
    }

    fn push_range(&mut self, a: char, b: char) {
        push_escaped(self.out, a, true);
        if b != a {
            self.out.push('-');
            push_escaped(self.out, b, true);
        }
    }
}

/// The character a literal stands for, refusing escapes Java does not have.
fn literal_char(l: &ast::Literal) -> Result<char, String> {
    match &l.kind {
        LiteralKind::HexFixed(HexLiteralKind::UnicodeLong) => {
            Err("\\U........ escapes are not Java syntax".into())
        }
        LiteralKind::HexBrace(HexLiteralKind::UnicodeShort | HexLiteralKind::UnicodeLong) => {
            Err("\\u{...} escapes are not Java syntax; use \\x{...}".into())
        }
        LiteralKind::Octal => Err("octal escapes are not supported".into()),
        _ => Ok(l.c),
    }
}

/// Apply `(?flags)` / `(?flags:...)`. Java's `u` and `U` (UNICODE_CASE,
/// UNICODE_CHARACTER_CLASS) reach the AST as the crate's Unicode and
/// swap-greed flags; they are read with Java's meaning.
fn apply_flags(flags: &ast::Flags, st: &mut State) -> Res {
    let mut on = true;
    for item in &flags.items {
        let c = match &item.kind {
            FlagsItemKind::Negation => {
                on = false;
                continue;
            }
            FlagsItemKind::Flag(f) => match f {
                ast::Flag::CaseInsensitive => 'i',
                ast::Flag::MultiLine => 'm',
                ast::Flag::DotMatchesNewLine => 's',
                ast::Flag::SwapGreed => 'U',
                ast::Flag::Unicode => 'u',
                ast::Flag::IgnoreWhitespace => 'x',
                ast::Flag::CRLF => return Err("inline flag 'R' is not Java syntax".into()),
            },
        };
        st.set(c, on);
    }
    Ok(())
}

/// Java's POSIX character classes (`\p{Alpha}` and co.), which are ASCII-only
/// unless `UNICODE_CHARACTER_CLASS` is set. Under case-insensitivity Java
/// lets `\p{Lower}`/`\p{Upper}` match either case.
fn posix_ascii(name: &str, ci: bool) -> Option<&'static str> {
    Some(match name {
        "Lower" | "Upper" if ci => "a-zA-Z",
        "Lower" => "a-z",
        "Upper" => "A-Z",
        "ASCII" => r"\x00-\x7F",
        "Alpha" => "a-zA-Z",
        "Digit" => "0-9",
        "Alnum" => "a-zA-Z0-9",
        "Punct" => r"!-/:-@\[-`{-~",
        "Graph" => "!-~",
        "Print" => " -~",
        "Blank" => r" \t",
        "Cntrl" => r"\x00-\x1F\x7F",
        "XDigit" => "0-9a-fA-F",
        "Space" => r"\t\n\x0B\f\r ",
        _ => return None,
    })
}

fn push_escaped(out: &mut String, c: char, in_class: bool) {
    let special = if in_class {
        matches!(c, '[' | ']' | '\\' | '-' | '^' | '&' | '~')
    } else {
        regex_syntax::is_meta_character(c)
    };
    if special {
        out.push('\\');
        out.push(c);
    } else if c.is_control() || c.is_whitespace() || c == '#' {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    } else {
        out.push(c);
    }
}

/// Every ASCII flag letter Jayway's parser takes after a pattern's closing
/// `/` (`PatternFlag`): `d i x m s u U`.
pub(crate) const FLAG_LETTERS: &[u8] = b"dixmsuU";

#[cfg(test)]
mod tests {
    use super::*;

    /// (pattern, flags, input, Java `Pattern.compile(p, f).matcher(i).matches()`)
    fn check(cases: &[(&str, &str, &str, bool)]) {
        let mut failures = Vec::new();
        for &(p, f, input, want) in cases {
            match compile(p, f, 1 << 20, 64) {
                Ok(re) if re.is_match(input) == want => {}
                Ok(re) => failures.push(format!("/{p}/{f} on {input:?}: want {want} ({re:?})")),
                Err(e) => failures.push(format!("/{p}/{f}: {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn java_semantics() {
        check(&[
            // ASCII-only case folding unless u/U.
            ("ü", "i", "Ü", false),
            ("ü", "iu", "Ü", true),
            ("ü", "iU", "Ü", true),
            ("(?iu)ü", "", "Ü", true),
            ("ω.*", "i", "Ωmega", false),
            ("abc", "i", "ABC", true),
            ("[a-c]+", "i", "ABC", true),
            ("[^a-c]", "i", "B", false),
            ("[x-ü]", "i", "Y", true),
            ("(?i)a(?-i)b", "", "Ab", true),
            ("(?i)a(?-i)b", "", "AB", false),
            ("(?i:a)b", "", "AB", false),
            ("a|(?i)b", "", "B", true),
            // ASCII classes unless U.
            (r"\d", "", "٣", false),
            (r"\d", "U", "٣", true),
            (r"\w", "", "é", false),
            (r"\w", "U", "é", true),
            (r"\s", "", "\u{a0}", false),
            (r"\p{Alpha}", "", "é", false),
            (r"\p{Alpha}", "", "e", true),
            (r"\p{Lower}", "i", "E", true),
            (r"\p{L}", "", "é", true),
            (r"[\d_]+", "", "1_2", true),
            (r"[^\d]", "", "٣", true),
            // `.` and Java's line terminators.
            (".", "", "\u{85}", false),
            ("a.c", "", "abc", true),
            ("a.c", "", "a\u{2028}c", false),
            (".*@x", "", "a\rb@x", false),
            (".*@x", "", "ab@x", true),
            (".", "", "\r", false),
            (".", "s", "\u{85}", true),
            (".", "d", "\r", true),
            (".", "d", "\n", false),
            (r"a\vb", "", "a\u{2028}b", true),
            // Full-string match, anchors.
            ("ab", "", "xab", false),
            ("^ab$", "", "ab", true),
            ("a$", "", "a\n", false),
            (r"a$\rb", "m", "a\rb", true),
            (r"a$\rb", "md", "a\rb", false),
            (r"a$\r\nb", "m", "a\r\nb", true),
            (r"\<a\>", "", "<a>", true),
            ("a b # c", "x", "ab", true),
            (r"a\ b", "x", "a b", true),
            ("us.*support", "i", "US Support", true),
            (r"a\/b", "", "a/b", true),
            (r"[a-z&&[^aeiou]]+", "", "bcd", true),
            (r"[a-z&&[^aeiou]]+", "", "bad", false),
            ("a+?b*?", "", "aab", true),
            ("#", "", "#", true),
        ]);
    }

    #[test]
    fn refused() {
        for (p, f) in [
            ("(?=a)", ""),
            (r"(a)\1", ""),
            (r"\Qa\E", ""),
            ("[[:alpha:]]", ""),
            (r"\u{41}", ""),
            (r"\U00000041", ""),
            ("(?P<n>a)", ""),
            ("(?R)a", ""),
            ("[a--b]", ""),
            (r"\b{start}", ""),
            ("a*+", ""),
            ("a{2}{2}", ""),
            ("[ ]", "x"),
            ("(", ""),
            (&"(".repeat(100), ""),
            ("a{1000}{1000}", ""),
        ] {
            assert!(compile(p, f, 1 << 20, 64).is_err(), "/{p}/{f} accepted");
        }
    }
}
