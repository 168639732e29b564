//! Filter engine throughput: compiled filters evaluated on real ISC example
//! payloads (embedded below), plus parse-payload+evaluate and compile cost.
//!
//! Run: `cargo bench --bench filters` (criterion prints time per evaluation
//! and evaluations/s as "thrpt").
//!
//! The `filter_set` group is the per-event work of the load bench's `filters` rows without HTTP: the payload of
//! `idn:identity-attributes-changed` (0.5–8 KB, the load bench's bodies) parsed, then a trigger's filters
//! evaluated as a set (`FilterSet`, which parses only what its filters read), for the 50 typical filters and
//! the 10 that share a path; `parse_only` is the whole parse alone, what every event cost before the set read
//! only its part.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use trigger_relay::filter::{EventBudget, Filter, FilterSet};

/// The relay binary's allocator (`src/main.rs`), so the per-event numbers are the relay's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use trigger_relay_testkit::payloads;

/// Native Change Account Updated example input (ISC docs), ~2.2 KB.
const NCAU: &str = r#"{
  "identity": {
    "manager": {"name": "Martena Heath", "id": "2c91808378eb9fa30178fb8caf90097f", "type": "IDENTITY", "email": "martena.heath@sample_email.com"},
    "name": "Ann English", "alias": "Ann.English", "id": "2c91808978eb9fab0178fb8ca6d308fb", "type": "IDENTITY", "email": "ann.english@sample_email.com"
  },
  "singleValueAttributeChanges": [{"newValue": "Call Center Representative", "name": "title", "oldValue": "Call Center Manager"}],
  "entitlementChanges": [{
    "removed": [{"owner": null, "name": "AccountsReceivable", "id": "d0470502d73d4c2e8c7543c712f518ca", "value": "CN=AccountsReceivable,OU=Groups,OU=Demo,DC=seri,DC=sailpointdemo,DC=com"}],
    "added": [{"owner": null, "name": "Accounts Payable", "id": "2c91808978eb9fab0178fb9482620b71", "value": "CN=AccountsPayable,OU=Groups,OU=Demo,DC=seri,DC=sailpointdemo,DC=com"}],
    "attributeName": "memberOf"
  }],
  "eventType": "ACCOUNT_UPDATED",
  "source": {
    "owner": {"name": "Aaron Andrew", "id": "2c9180867a7c46d0017a7ca099d50531", "type": "IDENTITY", "email": "aaron.andrew@sample_email.com"},
    "name": "Active Directory", "alias": "Active Directory [source]", "id": "2c91808a78efc63e0178fb8624b248c5", "type": "SOURCE",
    "governanceGroup": {"id": "fd0d1393-35fb-47d8-9809-0e385b73f25e", "name": "Active Directory Owners", "type": "GOVERNANCE_GROUP"}
  },
  "accountChangeTypes": ["ATTRIBUTES_CHANGED", "ENTITLEMENTS_ADDED", "ENTITLEMENTS_REMOVED"],
  "multiValueAttributeChanges": [{"removedValues": [], "addedValues": ["User Account is Disabled"], "name": "accountFlags"}],
  "account": {
    "name": "Ann.English", "id": "2c91808378eb9fa30178fb9481a30afa", "type": "ACCOUNT", "uuid": "{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}",
    "correlated": true, "nativeIdentity": "CN=Ann English,OU=Call Center,OU=AI,OU=Demo,DC=seri,DC=sailpointdemo,DC=com"
  },
  "_metadata": {"triggerType": "fireAndForget", "invocationId": "5e4f5d4b-7e4d-4d2a-9a2e-6b8f9c1d2e3f", "triggerId": "idn:native-change-account-updated"}
}"#;

/// Identity Attributes Changed input from ISC's "Filtering events" page.
const IAC: &str = r#"{
  "identity": {"id": "ee769173319b41d19ccec6cea52f237b", "name": "john.doe", "type": "IDENTITY"},
  "changes": [
    {"attribute": "department", "oldValue": "Sales", "newValue": "Marketing"},
    {"attribute": "manager",
     "oldValue": {"id": "ee769173319b41d19ccec6c235423237b", "name": "robert.brown", "type": "IDENTITY"},
     "newValue": {"id": "ee769173319b41d19ccec6c235423236c", "name": "mary.johnson", "type": "IDENTITY"}},
    {"attribute": "cloudLifecycleState", "oldValue": "active", "newValue": "terminated"}
  ]
}"#;

fn parse(s: &str) -> Value {
    serde_json::from_str(s).expect("bench payload")
}

fn bench_eval(c: &mut Criterion) {
    let ncau = parse(NCAU);
    let iac = parse(IAC);
    let cases: &[(&str, &str, &Value, bool)] = &[
        (
            "root_predicate_match",
            r#"$[?($.identity.id == "2c91808978eb9fab0178fb8ca6d308fb")]"#,
            &ncau,
            true,
        ),
        ("root_predicate_miss", r#"$[?($.identity.id == "x")]"#, &ncau, false),
        (
            "array_predicate_and",
            r#"$.changes[?(@.attribute == "cloudLifecycleState" && @.newValue == "terminated")]"#,
            &iac,
            true,
        ),
        (
            "array_predicate_and_regex_i",
            r#"$.changes[?(@.attribute == "department" && @.newValue =~ /mark.*/i)]"#,
            &iac,
            true,
        ),
        (
            "array_predicate_in",
            "$.changes[?(@.attribute == 'department' && @.newValue in ['sales','engineering','Marketing'])]",
            &iac,
            true,
        ),
        ("root_in_list", "$[?('ENTITLEMENTS_ADDED' in $.accountChangeTypes)]", &ncau, true),
        (
            "root_anyof",
            "$[?($.accountChangeTypes anyof ['ENTITLEMENTS_REMOVED', 'X'])]",
            &ncau,
            true,
        ),
        ("deep_scan_regex", r"$..[?(@.email =~ /.*@example\.com/)]", &ncau, false),
        ("deep_scan_name", "$..governanceGroup", &ncau, true),
    ];
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(1));
    for (name, expr, doc, expected) in cases {
        let f = Filter::compile(expr).expect("bench filter");
        assert_eq!(f.matches(doc), *expected, "{name}");
        g.bench_function(*name, |b| b.iter(|| black_box(&f).matches(black_box(doc))));
    }
    g.finish();

    let mut g = c.benchmark_group("parse_and_evaluate");
    g.throughput(Throughput::Bytes(NCAU.len() as u64));
    let f = Filter::compile(r#"$[?($.identity.id == "2c91808978eb9fab0178fb8ca6d308fb")]"#)
        .expect("bench filter");
    g.bench_function("ncau_2kb_root_predicate", |b| {
        b.iter(|| {
            let doc: Value = serde_json::from_str(black_box(NCAU)).expect("payload");
            f.matches(&doc)
        })
    });
    g.finish();

    // Worst case: a filter whose nested scans exhaust the step budget.
    let mut chain = serde_json::json!({"k": 1});
    for _ in 0..400 {
        chain = serde_json::json!({ "a": chain });
    }
    let runaway = Filter::compile("$..[?(@..[?(@..k)])]").expect("bench filter");
    assert!(runaway.evaluate(&chain).is_err());
    let mut g = c.benchmark_group("worst_case");
    g.sample_size(10);
    g.bench_function("step_budget_exhausted", |b| {
        b.iter(|| runaway.evaluate(black_box(&chain)))
    });
    g.finish();

    let bodies = {
        let p = payloads::Payloads::new(&["idn:identity-attributes-changed"]);
        (0..p.len()).map(|_| p.next().1).collect::<Vec<_>>()
    };
    let set_of = |filters: &[String]| {
        let mut set = FilterSet::new();
        for f in filters {
            set.push(Some(&Filter::compile(f).expect("bench filter")));
        }
        set
    };
    // What the router runs (`evaluate_body`), or the projection to a `Value` and the evaluator on it (the way
    // every set went before the borrowed parse, and sets with a filter outside the index still go).
    let per_event = |set: &FilterSet, router: bool| {
        let mut matched = 0;
        for body in &bodies {
            let mut budget = EventBudget::new(set.distinct());
            let doc;
            let verdicts = if router {
                set.evaluate_body(black_box(body), &mut budget)
                    .expect("payload")
            } else {
                doc = set.parse(black_box(body)).expect("payload");
                set.evaluate(&doc, &mut budget)
            };
            matched += (0..set.len())
                .filter(|&i| matches!(verdicts.get(i), Some(Ok(true))))
                .count();
        }
        matched
    };
    let mut g = c.benchmark_group("filter_set");
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function("parse_only", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|body| serde_json::from_slice::<Value>(black_box(body)).is_ok() as usize)
                .sum::<usize>()
        })
    });
    let typical = set_of(&payloads::typical_filters());
    g.bench_function("typical_50", |b| b.iter(|| per_event(&typical, true)));
    g.bench_function("typical_50_projected", |b| {
        b.iter(|| per_event(&typical, false))
    });
    let shared = set_of(&payloads::shared_path_filters());
    g.bench_function("shared_path_10", |b| b.iter(|| per_event(&shared, true)));
    g.bench_function("shared_path_10_projected", |b| {
        b.iter(|| per_event(&shared, false))
    });
    g.finish();

    let mut g = c.benchmark_group("compile");
    g.bench_function("array_predicate_in_regex", |b| {
        b.iter(|| {
            Filter::compile(black_box(
                "$.changes[?(@.attribute == 'department' && (@.newValue in ['sales','eng'] || @.newValue =~ /US.*Support/i))]",
            ))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_eval
}
criterion_main!(benches);
