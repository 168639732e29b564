//! Unit tests for the lexer and parser pieces.

use serde_json::{json, Number, Value};

use super::lexer::{
    java_double_string, java_len, java_number_string, java_str_cmp, list_string, matching_close,
    next_unescaped, num_cmp, number_from_text, parse_bigdecimal, parse_permissive_json, unescape,
};
use super::parser::{
    compile_path_src, compile_regex, is_json_like, is_path_like, Op, Pred, SegKind,
};
use super::Filter;

fn path(src: &str) -> super::parser::Path {
    compile_path_src(src, 0).unwrap_or_else(|e| panic!("{src}: {e:?}"))
}

#[test]
fn unescape_follows_jayway_utils() {
    let cases = [
        ("plain", "plain"),
        (r"it\'s", "it's"),
        (r#"say \"hi\""#, "say \"hi\""),
        (r"a\\b", r"a\b"),
        (r"\n\t\r\b\f", "\n\t\r\u{8}\u{c}"),
        (r"\u00e9", "é"),
        (r"\ud83d\ude00", "😀"),
        (r"\x", "x"),
        ("trailing\\", "trailing\\"),
        (r"\ud83d", "\u{FFFD}"),
    ];
    for (raw, want) in cases {
        assert_eq!(unescape(raw).unwrap(), want, "{raw}");
    }
    assert!(unescape(r"\u12").is_err());
    assert!(unescape(r"\uzzzz").is_err());
}

#[test]
fn list_string_strips_one_pair_of_quotes() {
    assert_eq!(list_string("'x'"), "x");
    assert_eq!(list_string("\"x\""), "x");
    assert_eq!(list_string("'x\""), "'x\"");
    assert_eq!(list_string("'"), "'");
    assert_eq!(list_string(r"a\tb"), "a\tb");
}

#[test]
fn bigdecimal_text_matches_java() {
    let cases = [
        ("1", "1"),
        ("5.0", "5.0"),
        ("1.50", "1.50"),
        ("-0.5", "-0.5"),
        ("1e3", "1E+3"),
        ("1.0E10", "1.0E+10"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1E-7"),
        ("1.234E-5", "0.00001234"),
        ("007", "7"),
        (".5", "0.5"),
        ("5.", "5"),
        ("-0", "0"),
    ];
    for (lit, want) in cases {
        assert_eq!(
            parse_bigdecimal(lit).unwrap().to_java_string(),
            want,
            "{lit}"
        );
    }
    for bad in [
        "", "-", ".", "1.2.3", "1e", "e5", "1-2", "--1", "1e+", "abc",
    ] {
        assert!(parse_bigdecimal(bad).is_none(), "{bad}");
    }
}

#[test]
fn double_text_matches_java() {
    let cases = [
        (5.0, "5.0"),
        (5.5, "5.5"),
        (100.0, "100.0"),
        (0.001, "0.001"),
        (1e10, "1.0E+10"),
        (1.234e-5, "0.00001234"),
        (-2.5, "-2.5"),
        (1234567.0, "1234567.0"),
        (12345678.0, "12345678"), // "1.2345678E7" has scale 0
        (0.0, "0.0"),
    ];
    for (f, want) in cases {
        assert_eq!(java_double_string(f), want, "{f}");
    }
    assert_eq!(java_number_string(&Number::from(42)), "42");
    assert_eq!(java_number_string(&Number::from(-7)), "-7");
}

#[test]
fn number_helpers() {
    assert_eq!(number_from_text("12"), Some(Number::from(12)));
    assert_eq!(
        number_from_text("18446744073709551615"),
        Some(Number::from(u64::MAX))
    );
    assert!(number_from_text("1.5").unwrap().is_f64());
    assert!(number_from_text("1e400").is_none());
    use std::cmp::Ordering::*;
    let n = |v: Value| match v {
        Value::Number(n) => n,
        _ => unreachable!(),
    };
    assert_eq!(num_cmp(&n(json!(1)), &n(json!(1.0))), Equal);
    assert_eq!(num_cmp(&n(json!(-1)), &n(json!(u64::MAX))), Less);
    assert_eq!(num_cmp(&n(json!(2.5)), &n(json!(2))), Greater);
}

#[test]
fn java_string_order_and_length() {
    use std::cmp::Ordering::*;
    assert_eq!(java_str_cmp("a", "b"), Less);
    assert_eq!(java_str_cmp("10", "9"), Less);
    // U+FF61 sorts after a surrogate pair in UTF-16, before it in UTF-8.
    assert_eq!(java_str_cmp("\u{FF61}", "😀"), Greater);
    assert_eq!(java_len("😀"), 2);
    assert_eq!(java_len("Zoë"), 3);
}

#[test]
fn scanning_helpers() {
    let b = br#"a 'x\'y' "q" /r\/e/ (b(c)) end"#;
    assert_eq!(next_unescaped(b, 3, b.len(), b'\''), Some(7));
    let open = b.iter().position(|&c| c == b'(').unwrap();
    let close = matching_close(b, open, b.len(), b'(', b')', true).unwrap();
    assert_eq!(b[close], b')');
    assert_eq!(&b[close + 1..], b" end");
    // A ')' inside a string or a regex does not close.
    let s = br#"(a == ')' && b =~ /)/)"#;
    assert_eq!(
        matching_close(s, 0, s.len(), b'(', b')', true),
        Some(s.len() - 1)
    );
    assert_eq!(matching_close(b"(a", 0, 2, b'(', b')', true), None);
}

#[test]
fn permissive_json_literals() {
    assert_eq!(
        parse_permissive_json("['a', \"b\", 1, 2.5, true, null]").unwrap(),
        json!(["a", "b", 1, 2.5, true, null])
    );
    assert_eq!(
        parse_permissive_json("{a: 1, 'b': [x, y], \"c\": {}}").unwrap(),
        json!({"a": 1, "b": ["x", "y"], "c": {}})
    );
    assert_eq!(parse_permissive_json("[1, 2,]").unwrap(), json!([1, 2]));
    assert_eq!(
        parse_permissive_json("[-1, 1e3]").unwrap(),
        json!([-1, 1000.0])
    );
    assert_eq!(
        parse_permissive_json(r"['it\'s']").unwrap(),
        json!(["it's"])
    );
    for bad in ["[", "[1 2]", "{a 1}", "['x]", "[1]]", "{:1}"] {
        assert!(parse_permissive_json(bad).is_err(), "{bad}");
    }
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(parse_permissive_json(&deep).is_err());
}

#[test]
fn path_like_and_json_like_strings() {
    assert!(is_path_like("$.a", 0));
    assert!(is_path_like("  @ ", 0));
    assert!(!is_path_like("$100", 0));
    assert!(!is_path_like("a.b", 0));
    assert!(is_json_like("[1]"));
    assert!(is_json_like("{a: 1}"));
    assert!(!is_json_like("[1"));
    assert!(!is_json_like("x"));
}

#[test]
fn path_segments_and_definiteness() {
    let p = path("$.a['b'].c[0]");
    assert!(p.root_is_doc && p.definite && !p.inverted_fn);
    assert_eq!(p.segs.len(), 4);
    assert!(p.segs.iter().all(|s| s.upstream_definite));

    let p = path("$.a[*].b");
    assert!(!p.definite);
    assert!(p.segs[1].upstream_definite);
    assert!(!p.segs[2].upstream_definite);

    for (src, definite) in [
        ("$", true),
        ("@", true),
        ("$['a','b']", true),
        ("$['a','b'].c", false),
        ("$[1,2]", false),
        ("$[1:2]", false),
        ("$..a", false),
        ("$[?(@.a)]", false),
        ("$.a.length()", true),
        ("$.*", false),
    ] {
        assert_eq!(path(src).definite, definite, "{src}");
    }
    assert!(path("$..a.length()").inverted_fn);
    assert!(!path("@").root_is_doc);
}

#[test]
fn bracket_forms() {
    let kinds = |src: &str| {
        path(src)
            .segs
            .into_iter()
            .map(|s| s.kind)
            .collect::<Vec<_>>()
    };
    assert!(matches!(&kinds("$['a']")[..], [SegKind::Prop(a)] if &**a == "a"));
    assert!(matches!(&kinds("$[\"a b\"]")[..], [SegKind::Prop(a)] if &**a == "a b"));
    assert!(matches!(&kinds("$['a', 'b']")[..], [SegKind::Props(v)] if v.len() == 2));
    assert!(matches!(&kinds("$['it\\'s']")[..], [SegKind::Prop(a)] if &**a == "it's"));
    assert!(matches!(kinds("$[-1]")[..], [SegKind::Index(-1)]));
    assert!(matches!(&kinds("$[0, 2]")[..], [SegKind::Indexes(v)] if **v == [0, 2]));
    assert!(matches!(
        kinds("$[1:]")[..],
        [SegKind::Slice(Some(1), None)]
    ));
    assert!(matches!(
        kinds("$[:-2]")[..],
        [SegKind::Slice(None, Some(-2))]
    ));
    assert!(matches!(
        kinds("$[0:2:5]")[..],
        [SegKind::Slice(Some(0), Some(2))]
    ));
    assert!(matches!(
        kinds("$[1::3]")[..],
        [SegKind::Slice(Some(1), None)]
    ));
    assert!(matches!(kinds("$[ * ]")[..], [SegKind::Wildcard]));
    assert!(matches!(kinds("$.*")[..], [SegKind::Wildcard]));
    assert!(matches!(
        kinds("$..*")[..],
        [SegKind::Scan, SegKind::Wildcard]
    ));
    assert!(matches!(
        kinds("$..[0]")[..],
        [SegKind::Scan, SegKind::Index(0)]
    ));
    // Jayway reads a name right after a bracket without a dot.
    assert!(matches!(&kinds("$['a']b")[..], [SegKind::Prop(_), SegKind::Prop(b)] if &**b == "b"));
    // Dot names keep anything but `.`, `[`, `(` and blanks.
    assert!(matches!(&kinds("$.a-b$c:d")[..], [SegKind::Prop(a)] if &**a == "a-b$c:d"));
}

fn pred_of(src: &str) -> Pred {
    match path(src).segs.into_iter().next().map(|s| s.kind) {
        Some(SegKind::Filter(p)) => *p,
        other => panic!("{src}: {other:?}"),
    }
}

#[test]
fn filter_grammar() {
    assert!(matches!(
        pred_of("$[?(@.a)]"),
        Pred::Exists {
            should_exist: true,
            ..
        }
    ));
    assert!(matches!(
        pred_of("$[?(!@.a)]"),
        Pred::Exists {
            should_exist: false,
            ..
        }
    ));
    assert!(matches!(
        pred_of("$[?(! @.a)]"),
        Pred::Exists {
            should_exist: false,
            ..
        }
    ));
    assert!(matches!(pred_of("$[?(!(@.a))]"), Pred::Not(_)));
    assert!(
        matches!(pred_of("$[?(@.a == 1 && @.b || @.c)]"), Pred::Or(v) if v.len() == 2 && matches!(v[0], Pred::And(_)))
    );
    assert!(matches!(pred_of("$[?(@.a || @.b || @.c)]"), Pred::Or(v) if v.len() == 3));
    // `!` before a compared path does not negate (Jayway).
    assert!(matches!(
        pred_of("$[?(!@.a == 1)]"),
        Pred::Cmp { op: Op::Eq, .. }
    ));
    for (src, op) in [
        ("$[?(@.a == 1)]", Op::Eq),
        ("$[?(@.a != 1)]", Op::Ne),
        ("$[?(@.a === 1)]", Op::TsEq),
        ("$[?(@.a !== 1)]", Op::TsNe),
        ("$[?(@.a<1)]", Op::Lt),
        ("$[?(@.a <= 1)]", Op::Le),
        ("$[?(@.a>1)]", Op::Gt),
        ("$[?(@.a >= 1)]", Op::Ge),
        ("$[?(@.a =~ /x/i)]", Op::Regex),
        ("$[?(@.a in [1])]", Op::In),
        ("$[?(@.a NIN [1])]", Op::Nin),
        ("$[?(@.a contains 'x')]", Op::Contains),
        ("$[?(@.a size 1)]", Op::Size),
        ("$[?(@.a empty true)]", Op::Empty),
        ("$[?(@.a subsetof [1])]", Op::SubsetOf),
        ("$[?(@.a anyOf [1])]", Op::AnyOf),
        ("$[?(@.a noneof [1])]", Op::NoneOf),
        ("$[?(@.a all [1])]", Op::All),
        ("$[?(@.a exists true)]", Op::Exists),
    ] {
        assert!(
            matches!(pred_of(src), Pred::Cmp { op: o, .. } if o == op),
            "{src}"
        );
    }
}

#[test]
fn filter_paths_end_like_jayway() {
    // A path inside a filter runs up to a blank, `<>=~!` or a `)` that does
    // not close `.fn()`; `&` and `|` belong to the name when glued on.
    let p = pred_of("$[?(@.a&&@.b)]");
    match p {
        Pred::Exists { path, .. } => match &path.segs[0].kind {
            SegKind::Prop(n) => assert_eq!(&**n, "a&&@"),
            k => panic!("{k:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pred_of("$[?(@.list.length() > 1)]"),
        Pred::Cmp { op: Op::Gt, .. }
    ));
    assert!(matches!(
        pred_of("$[?(@['a b'] == 1)]"),
        Pred::Cmp { op: Op::Eq, .. }
    ));
}

#[test]
fn literals() {
    for src in [
        "$[?(@.a == 'x')]",
        "$[?(@.a == \"x\")]",
        "$[?(@.a == -1.5e3)]",
        "$[?(@.a == .5)]",
        "$[?(@.a == true)]",
        "$[?(@.a == false)]",
        "$[?(@.a == null)]",
        "$[?(@.a == [1, 'x', {b: 2}])]",
        "$[?(@.a == {'k': [1]})]",
        "$[?(@.a =~ /a\\/b/dixmsuU)]",
    ] {
        assert!(Filter::compile(src).is_ok(), "{src}");
    }
}

#[test]
fn regex_compilation() {
    let full = compile_regex("ab", "").unwrap();
    assert!(full.is_match("ab") && !full.is_match("xab") && !full.is_match("abx"));
    let ci = compile_regex("us.*support", "i").unwrap();
    assert!(ci.is_match("US Customer Support"));
    let alt = compile_regex("a|b", "").unwrap();
    assert!(alt.is_match("b") && !alt.is_match("ab"));
    let verbose = compile_regex("a b # comment", "x").unwrap();
    assert!(verbose.is_match("ab"));
    let slash = compile_regex(r"a\/b", "").unwrap();
    assert!(slash.is_match("a/b"));
    assert!(compile_regex("(", "").is_err());
    assert!(compile_regex(r"(a)\1", "").is_err());
    assert!(compile_regex(&"(".repeat(100), "").is_err());
    assert!(compile_regex("a{1000}{1000}", "").is_err()); // size limit
}

#[test]
fn implicit_root_and_positions() {
    assert!(Filter::compile("identity.name").is_ok());
    assert!(Filter::compile("[0]").is_ok());
    assert!(Filter::compile("*").is_ok());
    let e = Filter::compile("a..").unwrap_err();
    assert_eq!(e.position, 2);
    // Positions count chars, not bytes.
    let e = Filter::compile("$.ключ x").unwrap_err();
    assert_eq!(e.position, 6);
    let e = Filter::compile("$[?(@.é == 'ü' &&)]").unwrap_err();
    assert_eq!(e.position, 17);
    assert_eq!(e.to_string(), format!("{} at position 17", e.message));
}

#[test]
fn nesting_limit_is_an_error() {
    let ok = format!("$[?({}@.a{})]", "(".repeat(50), ")".repeat(50));
    assert!(Filter::compile(&ok).is_ok());
    let deep = format!("$[?({}@.a{})]", "(".repeat(5000), ")".repeat(5000));
    assert!(Filter::compile(&deep)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    let mut nested = String::from("@.a");
    for _ in 0..100 {
        nested = format!("@[?({nested})]");
    }
    nested.replace_range(0..1, "$");
    assert!(Filter::compile(&nested)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    let long = format!("${}", ".a".repeat(200));
    assert!(Filter::compile(&long)
        .unwrap_err()
        .message
        .contains("segments"));
}

/// A filter holds at most `MAX_REGEXES` regular expressions.
#[test]
fn regex_count_is_bounded() {
    let with = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("@.a{i} =~ /x{i}.*/")).collect();
        format!("$[?({})]", terms.join(" || "))
    };
    assert!(Filter::compile(&with(super::MAX_REGEXES)).is_ok());
    let e = Filter::compile(&with(super::MAX_REGEXES + 1)).unwrap_err();
    assert!(e.message.contains("at most 8"), "{}", e.message);
}

/// The event budget: each filter gets an equal share of what is left, at most one filter's own budget; what a
/// cheap filter leaves goes to the next; an expensive filter fails closed past its share with
/// `OverEventBudget`, and a cheap one after it still gets its verdict.
#[test]
fn event_budget_shares_fairly() {
    use super::{EvalError, EventBudget};
    let items: Vec<Value> = (0..300).map(|v| json!({ "v": v })).collect();
    let doc = json!({ "identity": { "id": "i" }, "x": items });
    let quadratic = Filter::compile("$.x[?(@.v in $.x[*].v)]").unwrap();
    let cheap = Filter::compile("$.identity.id").unwrap();

    // Alone, the quadratic filter takes ~90,000 steps and matches.
    let mut roomy = EventBudget::with_steps(1_000_000, 1);
    assert_eq!(quadratic.evaluate_in(&doc, &mut roomy), Ok(true));
    let used = 1_000_000 - roomy.remaining();
    assert!((90_000..200_000).contains(&used), "{used}");

    // Three of them and a cheap one in 120,000 steps: 30,000 each, all three over, the cheap one matches.
    let mut tight = EventBudget::with_steps(120_000, 4);
    for _ in 0..3 {
        assert!(matches!(
            quadratic.evaluate_in(&doc, &mut tight),
            Err(EvalError::OverEventBudget(_))
        ));
    }
    assert_eq!(cheap.evaluate_in(&doc, &mut tight), Ok(true));

    // Cheap filters first leave their share to the expensive one at the end (an equal share would be a quarter).
    let mut carry = EventBudget::with_steps(used + 100, 4);
    for _ in 0..3 {
        assert_eq!(cheap.evaluate_in(&doc, &mut carry), Ok(true));
    }
    assert_eq!(quadratic.evaluate_in(&doc, &mut carry), Ok(true));

    // A share is never more than one filter's own budget, however large the event's.
    let mut huge = EventBudget::with_steps(u64::MAX, 1);
    assert_eq!(quadratic.evaluate_in(&doc, &mut huge), Ok(true));
}
