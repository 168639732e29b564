//! Robustness properties of `crate::filter`: the parser and the
//! evaluator never panic, nesting is bounded, the deep scan stays linear.
//! Bounded to run in a few seconds.

use crate::filter::{validate, EvalError, EventBudget, Filter, FilterSet, Needs};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

/// Valid filters to mutate.
const CORPUS: &[&str] = &[
    "$",
    "$..id",
    "$.changes[0:2:1]",
    "$.changes[-1:]",
    "$['a','b'][0,1]",
    r#"$[?($.identity.name == "john.doe")]"#,
    "$.changes[?(@.attribute == 'department' && @.newValue in ['sales','engineering'])]",
    r#"$.changes[?(@.attribute == "department" && @.newValue =~ /US.*Support/i)]"#,
    "$[?($.warnings subsetof ['Account skipped','Invalid account'])]",
    "$[?($.warnings size 1)]",
    "$.identity.attributes[?(!@.alternateEmail)]",
    "$[?($.changes.length() >= 3)]",
    r#"$.concat($.a," ",$.b)"#,
    "$[?(!(@.a == 1) || (@.b != 'x' && @.c empty false))]",
    "$..[?(@.k nin [1, {a: 2}, 'x'])].v",
    r#"$[?(@.s == 'it\'s' && @.t == "q\"q")]"#,
];

/// Characters that matter to the grammar.
const ALPHABET: &[char] = &[
    '$', '@', '.', '[', ']', '(', ')', '?', '\'', '"', '!', '=', '<', '>', '~', '/', '&', '|', '*',
    ',', ':', '-', ' ', '0', '1', '9', 'a', 'e', 'i', 'n', '\\', '{', '}', 'é',
];

fn sample_doc() -> Value {
    json!({
        "identity": {"id": "x1", "name": "john.doe", "attributes": {"email": "a@b"}},
        "changes": [
            {"attribute": "department", "oldValue": "Sales", "newValue": "Marketing"},
            {"attribute": "manager", "newValue": {"id": "m", "name": "mary"}},
            {"attribute": "x", "newValue": [1, "1", null, true, [2]]}
        ],
        "warnings": ["Account skipped"], "a": "A", "b": 2.5, "c": "", "s": "it's", "t": "q\"q",
        "k": [1, 2], "v": null
    })
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "a",
            "x1",
            "$.a",
            "@",
            "[1]",
            "'q'",
            "é",
            "😀",
            "Account skipped"
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["a", "b", "k", "v", "id", "name", "changes", "x"]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

/// Random but well-formed filters built from grammar pieces.
fn arb_filter() -> impl Strategy<Value = String> {
    // (A bracket right after another bracket must not hold a blank: Jayway
    // reads `@[0]['a b']` in a filter as `@[0]['a`, an error.)
    let name = prop::sample::select(vec![
        "a", "b", "k", "v", "id", "name", "changes", "x", "['a-b']",
    ]);
    let seg = prop_oneof![
        name.clone().prop_map(|n| if n.starts_with('[') {
            n.to_string()
        } else {
            format!(".{n}")
        }),
        Just("[*]".to_string()),
        Just(".*".to_string()),
        (-3i32..4).prop_map(|i| format!("[{i}]")),
        (-3i32..4, -3i32..4).prop_map(|(a, b)| format!("[{a}:{b}]")),
        (0i32..3).prop_map(|a| format!("[:{a}]")),
        name.clone()
            .prop_map(|n| format!("..{}", n.trim_start_matches('.'))),
    ];
    let path = (
        prop::sample::select(vec!["$", "@"]),
        prop::collection::vec(seg, 0..4),
    )
        .prop_map(|(r, segs)| format!("{r}{}", segs.concat()));
    let lit = prop_oneof![
        Just("'x'".to_string()),
        Just("\"a\"".to_string()),
        Just("1".to_string()),
        Just("-2.5".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("['a', 1, null]".to_string()),
        Just("{'a': 1}".to_string()),
        Just("/a.*/i".to_string()),
    ];
    let op = prop::sample::select(vec![
        "==", "!=", "<", "<=", ">", ">=", "=~", "in", "nin", "contains", "subsetof", "anyof",
        "noneof", "size", "empty", "===", "!==", "all", "exists",
    ]);
    let atom = prop_oneof![
        path.clone(),
        path.clone().prop_map(|p| format!("!{p}")),
        (path.clone(), op, prop_oneof![lit, path.clone()])
            .prop_map(|(l, o, r)| format!("{l} {o} {r}")),
    ];
    let pred = atom.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.prop_map(|a| format!("({a})")),
        ]
    });
    (
        path,
        prop::collection::vec(pred, 0..3),
        prop::option::of(prop::sample::select(vec![".length()", ".sum()", ".max()"])),
    )
        .prop_map(|(p, preds, f)| {
            let mut s = p.replacen('@', "$", 1);
            for pr in preds {
                s.push_str(&format!("[?({pr})]"));
            }
            if let Some(f) = f {
                s.push_str(f);
            }
            s
        })
}

fn mutate(src: &str, edits: &[(Index, u8, char)]) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for (at, kind, c) in edits {
        let i = at.index(chars.len() + 1);
        match kind {
            0 => chars.insert(i, *c),
            1 if i < chars.len() => {
                chars.remove(i);
            }
            2 if i < chars.len() => chars[i] = *c,
            _ => chars.truncate(i),
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn compile_never_panics_on_arbitrary_strings(s in any::<String>()) {
        let _ = Filter::compile(&s);
    }

    #[test]
    fn compile_never_panics_on_grammar_soup(chars in prop::collection::vec(prop::sample::select(ALPHABET), 0..40)) {
        let s: String = chars.into_iter().collect();
        if let Err(e) = Filter::compile(&s) {
            prop_assert!(e.position <= s.chars().count(), "{e} for {s:?}");
        }
    }

    #[test]
    fn mutated_filters_never_panic(
        which in 0..CORPUS.len(),
        edits in prop::collection::vec((any::<Index>(), 0u8..4, prop::sample::select(ALPHABET)), 1..5),
    ) {
        let s = mutate(CORPUS[which], &edits);
        let doc = sample_doc();
        match Filter::compile(&s) {
            Ok(f) => {
                let r = f.evaluate(&doc).unwrap_or(false);
                prop_assert_eq!(f.matches(&doc), r);
                let v = validate(&s, &doc);
                prop_assert!(v.is_valid_json_path);
                prop_assert_eq!(v.is_valid, r);
            }
            Err(e) => {
                prop_assert!(e.position <= s.chars().count(), "{} for {:?}", e, s);
                prop_assert_eq!(validate(&s, &doc), crate::filter::Validation {
                    is_valid: false, is_valid_json_path: false, is_path_exist: false });
            }
        }
    }

    #[test]
    fn generated_filters_compile_and_evaluate(expr in arb_filter(), doc in arb_json()) {
        let f = Filter::compile(&expr);
        prop_assert!(f.is_ok(), "{:?} for {}", f.err(), expr);
        let f = f.unwrap();
        let r = f.evaluate(&doc);
        prop_assert_eq!(f.matches(&doc), r.unwrap_or(false));
        let _ = validate(&expr, &doc);
    }

    /// The set evaluator against the per-filter evaluator (the oracle): generated filter sets with repeats
    /// and routes without a filter, on generated documents, the set on its projected parse of the document
    /// (`FilterSet::parse`), each filter alone on the whole. Each member's verdict must be its filter's own.
    #[test]
    fn a_filter_set_gives_each_member_its_own_verdict(
        pool in prop::collection::vec(arb_filter(), 1..6),
        picks in prop::collection::vec(prop::option::weighted(0.8, any::<Index>()), 1..24),
        doc in arb_json(),
    ) {
        let pool: Vec<Filter> = pool.iter().map(|e| Filter::compile(e).unwrap()).collect();
        let members: Vec<Option<&Filter>> = picks.iter().map(|p| p.map(|i| i.get(&pool))).collect();
        let mut set = FilterSet::new();
        for m in &members {
            set.push(*m);
        }
        prop_assert_eq!(set.len(), members.len());
        // On the part of the body the set reads (`needs.rs`), against each filter alone on the whole document.
        let body = serde_json::to_vec(&doc).unwrap();
        let projected = set.parse(&body).unwrap();
        let verdicts = set.evaluate(&projected, &mut EventBudget::with_steps(u64::MAX / 4, set.distinct()));
        // And the way the router asks (`evaluate_body`: the index on the borrowed parse where it decides all).
        let direct = set.evaluate_body(&body, &mut EventBudget::with_steps(u64::MAX / 4, set.distinct())).unwrap();
        for (i, m) in members.iter().enumerate() {
            prop_assert_eq!(verdicts.get(i).cloned(), m.map(|f| f.evaluate(&doc)), "member {} `{:?}`", i, m.map(Filter::source));
            prop_assert_eq!(direct.get(i).cloned(), m.map(|f| f.evaluate(&doc)), "member {} `{:?}` (evaluate_body)", i, m.map(Filter::source));
        }
    }

    /// The same, with sets built to hit the equality index (filters on one path with different literals,
    /// mirrored, next to look-alikes it must not take) on documents where that path holds strings, other
    /// types, or nothing.
    #[test]
    fn the_equality_index_gives_each_member_its_own_verdict(
        picks in prop::collection::vec((0..INDEXED.len(), prop::sample::select(LITERALS)), 1..20),
        doc in arb_indexed_doc(),
    ) {
        let members: Vec<Filter> = picks
            .iter()
            .map(|(shape, lit)| Filter::compile(&INDEXED[*shape].replace("V", lit)).unwrap())
            .collect();
        let mut set = FilterSet::new();
        for m in &members {
            set.push(Some(m));
        }
        let body = serde_json::to_vec(&doc).unwrap();
        let projected = set.parse(&body).unwrap();
        let verdicts = set.evaluate(&projected, &mut EventBudget::with_steps(u64::MAX / 4, set.distinct()));
        let direct = set.evaluate_body(&body, &mut EventBudget::with_steps(u64::MAX / 4, set.distinct())).unwrap();
        for (i, m) in members.iter().enumerate() {
            prop_assert_eq!(verdicts.get(i).cloned(), Some(m.evaluate(&doc)), "`{}` on {}", m.source(), doc);
            prop_assert_eq!(direct.get(i).cloned(), Some(m.evaluate(&doc)), "`{}` on {} (evaluate_body)", m.source(), doc);
        }
    }

    #[test]
    fn corpus_evaluates_on_arbitrary_json(which in 0..CORPUS.len(), doc in arb_json()) {
        let f = Filter::compile(CORPUS[which]).unwrap();
        let _ = f.evaluate(&doc);
        let _ = validate(CORPUS[which], &doc);
    }
}

/// Values whose text serde_json's whole parse reads differently from its grammar (a lone surrogate, numbers out
/// of range, `-0`, a long integer), or that the grammar refuses.
const EDGE_VALUES: &[&str] = &[
    r#""\ud800""#,
    r#""\ud83d\ude00""#,
    r#""a\u00e9\n""#,
    r#""\q""#,
    r#""Sales""#,
    "1e400",
    "-1e400",
    "1.5e3",
    "-0",
    "99999999999999999999",
    "-999999999999999999",
    "0.1",
    "01",
    "tru",
    "null",
    "[]",
    "{}",
];

/// Keys of generated texts: the names `arb_filter` reads, one of them escaped (`n\u0061me` is `name`).
const EDGE_KEYS: &[&str] = &[
    r#""a""#,
    r#""b""#,
    r#""k""#,
    r#""v""#,
    r#""id""#,
    r#""name""#,
    r#""changes""#,
    r#""x""#,
    r#""n\u0061me""#,
];

/// JSON texts built from [`EDGE_VALUES`], generated values and containers, some nested near or past serde_json's
/// 128 levels, with whitespace between tokens.
fn arb_json_text() -> impl Strategy<Value = String> {
    let leaf =
        prop_oneof![
            prop::sample::select(EDGE_VALUES).prop_map(str::to_string),
            arb_json().prop_map(|v| v.to_string()),
            prop::sample::select(&[95usize, 120, 125, 126, 127, 128, 130][..])
                .prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        ];
    let ws = prop::sample::select(&["", " ", "\n  "][..]);
    leaf.prop_recursive(4, 32, 5, move |inner| {
        prop_oneof![
            prop::collection::vec((inner.clone(), ws.clone()), 0..5).prop_map(|v| {
                let items: Vec<String> = v.into_iter().map(|(t, w)| format!("{w}{t}{w}")).collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((prop::sample::select(EDGE_KEYS), inner, ws.clone()), 0..5)
                .prop_map(|v| {
                    let items: Vec<String> = v
                        .into_iter()
                        .map(|(k, t, w)| format!("{w}{k}{w}:{w}{t}"))
                        .collect();
                    format!("{{{}}}", items.join(","))
                }),
        ]
    })
}

/// Stray pieces spliced into a text: each one breaks the grammar somewhere, or not.
const JSON_PIECES: &[&str] = &[
    "\"", "\\", "[", "]", "{", "}", ",", ":", " ", "\u{1}", "\u{feff}", "é", "0",
];

proptest! {
    // More cases than the others: a path that reads what no other path of the filter reads is rare among
    // generated filters, and that is the case the projection can get wrong.
    #![proptest_config(ProptestConfig {
        cases: 4096,
        max_global_rejects: 1 << 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Each generated filter on the part of a document it reads (`Needs::parse`) against itself on the whole
    /// document: ISC's example-like document half of the time, so paths find what they name.
    #[test]
    fn a_filter_gives_the_same_verdict_on_what_it_reads(
        expr in arb_filter(),
        doc in prop_oneof![Just(sample_doc()), arb_json()],
    ) {
        let f = Filter::compile(&expr).unwrap();
        // Only the filters whose projection leaves something out can get it wrong.
        prop_assume!(!Needs::of(&f).is_everything());
        let projected = Needs::of(&f).parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
        prop_assert_eq!(f.evaluate(&projected), f.evaluate(&doc), "`{}` on {} read as {}", expr, doc, projected);
    }

    /// The projection refuses exactly the texts serde_json's whole parse refuses, with its message, and where
    /// both read a text, a filter's verdict on what it reads is its verdict on the whole. The texts: generated
    /// ones (`arb_json_text`) or ISC's example-like document, with stray pieces spliced in now and then.
    #[test]
    fn the_projection_refuses_what_the_whole_parse_refuses(
        expr in arb_filter(),
        text in prop_oneof![Just(sample_doc().to_string()), arb_json_text()],
        edits in prop::collection::vec((any::<Index>(), prop::sample::select(JSON_PIECES)), 0..2),
    ) {
        let f = Filter::compile(&expr).unwrap();
        let needs = Needs::of(&f);
        prop_assume!(!needs.is_everything());
        let mut text = text;
        for (at, piece) in &edits {
            let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            text.insert_str(cuts[at.index(cuts.len())], piece);
        }
        let whole = serde_json::from_str::<Value>(&text);
        let projected = needs.parse(text.as_bytes());
        match (&whole, &projected) {
            (Err(w), Err(p)) => prop_assert_eq!(w.to_string(), p.to_string()),
            (Ok(w), Ok(p)) => prop_assert_eq!(f.evaluate(p), f.evaluate(w), "`{}` on {} read as {}", expr, text, p),
            _ => prop_assert!(false, "{} read as {:?}, whole: {:?}", text, projected, whole),
        }
    }
}

/// Filter shapes for the equality index (`V` is replaced by a literal).
const INDEXED: &[&str] = &[
    "$[?($.identity.name == 'V')]",
    "$[?(@.identity.name == 'V')]",
    "$[?('V' == $.identity.name)]",
    "$[?($.identity.name != 'V')]",
    "$[?($.identity.name == 'V' && $.identity.id)]",
    "$.changes[?(@.attribute == 'V')]",
    "$.changes[?('V' == @.attribute)]",
    "$.changes[?(@.attribute == 'V')].newValue",
    "$.changes[0][?(@.attribute == 'V')]",
    "$.changes[?($.identity.name == 'V')]",
    "$.changes[?(@.attribute in ['V', 'b'])]",
    "$.changes[?(@.attribute in ['V', 1])]",
    "$[?($.identity.name in ['V', 'x'])]",
    "$.changes[?(@.attribute == 'V' && @.newValue =~ /a.*/i)]",
    "$.changes[?(@.attribute in ['V'] && @.newValue == 'b' && !@.oldValue)]",
    "$.changes[?(@.attribute == 'V' && @.newValue empty false)]",
    "$.changes[?(@.attribute == 'V' && @.newValue in ['a', ['b']])]",
    "$.changes[?(@.newValue == 'a' && @.attribute == 'V')]",
    "$.changes[?(@.attribute == 'V' && $.identity.id)]",
    "$.changes[?(@.attribute == 'V' || @.newValue == 'a')]",
];
const LITERALS: &[&str] = &["a", "b", "A", "", "é", "1"];

/// Documents whose `identity.name` and `changes[*].attribute` (and `newValue`, `oldValue`) are strings from
/// [`LITERALS`], other types, or absent.
fn arb_indexed_doc() -> impl Strategy<Value = Value> {
    let text = prop::sample::select(LITERALS).prop_map(|s| json!(s));
    let value = prop_oneof![
        4 => text,
        1 => Just(json!(1)),
        1 => Just(json!(null)),
        1 => Just(json!(["a"])),
        1 => Just(json!({"a": 1})),
    ];
    let element = prop_oneof![
        6 => (prop::option::of(value.clone()), prop::option::of(value.clone()), prop::option::weighted(0.2, value.clone())).prop_map(|(a, n, o)| {
            let mut m = Map::new();
            if let Some(a) = a { m.insert("attribute".into(), a); }
            if let Some(n) = n { m.insert("newValue".into(), n); }
            if let Some(o) = o { m.insert("oldValue".into(), o); }
            Value::Object(m)
        }),
        1 => Just(json!("attribute")),
        1 => Just(json!(3)),
    ];
    let changes = prop_oneof![
        6 => prop::collection::vec(element, 0..5).prop_map(Value::Array),
        1 => Just(json!({"attribute": "a"})),
        1 => Just(json!("a")),
    ];
    (
        prop::option::of(value),
        prop::option::of(changes),
        any::<bool>(),
    )
        .prop_map(|(name, changes, id)| {
            let mut identity = Map::new();
            if let Some(n) = name {
                identity.insert("name".into(), n);
            }
            if id {
                identity.insert("id".into(), json!("x"));
            }
            let mut m = Map::new();
            m.insert("identity".into(), Value::Object(identity));
            if let Some(c) = changes {
                m.insert("changes".into(), c);
            }
            Value::Object(m)
        })
}

// --- deterministic robustness checks ---------------------------------------------

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let n = 10_000;
    let cases = [
        "[".repeat(n),
        format!("${}", "[".repeat(n)),
        format!("$[?({}@.a{})]", "(".repeat(n), ")".repeat(n)),
        format!("$[?({}", "(".repeat(n)),
        format!("$[?({}@.a)]", "!".repeat(n)),
        format!("$[?(@.a in {}{})]", "[".repeat(n), "]".repeat(n)),
        format!("$[?(@.a == {}{})]", "{'a':".repeat(n), "}".repeat(n)),
        format!("$.concat({}1{})", "[".repeat(n), "]".repeat(n)),
        format!("${}", "..a".repeat(n)),
        format!("${}", "[0]".repeat(n)),
        {
            let mut s = String::from("@.a");
            for _ in 0..2_000 {
                s = format!("@[?({s})]");
            }
            s.replacen('@', "$", 1)
        },
    ];
    for c in &cases {
        let r = Filter::compile(c);
        assert!(r.is_err(), "accepted a {}-byte nested expression", c.len());
    }
}

#[test]
fn deep_documents_do_not_overflow() {
    // serde_json refuses to parse more than 128 levels, but Values can be
    // built deeper by hand.
    let mut v = json!({"x": 1});
    for i in 0..1_000 {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"a": v, "s": "t"})
        };
    }
    for expr in [
        "$..x",
        "$..nothing",
        "$[?(@..x)]",
        "$..[?(@.x == 1)]",
        "$..*",
        "$[?(@..x size 1)]",
        "$[?(@ == @)]",
        "$[?(@.a == $.a)]",
        "$['a','s']",
        "$.concat($.a)",
        "$[?(@..a contains 1)]",
    ] {
        let f = Filter::compile(expr).unwrap();
        let _ = f.evaluate(&v);
        let _ = validate(expr, &v);
    }
    assert_eq!(Filter::compile("$..x").unwrap().evaluate(&v), Ok(true));
    assert_eq!(
        Filter::compile("$.concat($.a)").unwrap().evaluate(&v),
        Err(EvalError::TooDeep(128))
    );
    // Dropping a deep Value recurses (serde_json); 1000 levels stay well
    // within a test thread stack.
    drop(v);
}

fn large_doc(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "name": format!("n{i}"), "tags": ["a", "b"], "sub": {"k": i % 7}}))
        .collect();
    let mut m = Map::new();
    m.insert("items".into(), Value::Array(items));
    m.insert("meta".into(), json!({"count": n}));
    Value::Object(m)
}

#[test]
fn deep_scan_is_linear_on_a_large_document() {
    // 20k items, ~180k nodes. Evaluation counts its steps and gives up with
    // TooExpensive past a fixed budget (2M): finishing with Ok proves the
    // scans below do a bounded, linear amount of work (a quadratic scan would
    // need ~10^10 steps).
    let doc = large_doc(20_000);
    let cases = [
        ("$..nothing", false),
        ("$..k", true),
        ("$..[?(@.k == 6)]", true),
        ("$..[?(@.k == 7)]", false),
        ("$[?(@..name contains 'n19999')]", true),
        ("$[?(@..id size 20000)]", true),
        ("$.items[?(@.sub.k == 3 && @.tags contains 'b')]", true),
        ("$..*", true),
    ];
    for (expr, expected) in cases {
        let f = Filter::compile(expr).unwrap();
        assert_eq!(f.evaluate(&doc), Ok(expected), "{expr}");
    }
    let v = validate("$..[?(@.k == 6)]", &doc);
    assert!(v.is_valid && v.is_valid_json_path && v.is_path_exist);
}

#[test]
fn runaway_evaluation_hits_the_budget() {
    // Nested scans multiply (n * depth^2 here): bounded by the step budget.
    let mut doc = json!({"k": 1});
    for _ in 0..400 {
        let mut m = Map::new();
        m.insert("a".into(), doc);
        doc = Value::Object(m);
    }
    let f = Filter::compile("$..[?(@..[?(@..k)])]").unwrap();
    assert_eq!(f.evaluate(&doc), Err(EvalError::TooExpensive(2_000_000)));
    assert!(!f.matches(&doc));
}
