//! The observability kit against the real thing: the Grafana dashboard (`deploy/grafana/trigger-relay.json`) and the
//! alert rules (`deploy/prometheus/alerts.yaml`, unit tests in `alerts_test.yaml`).
//!
//! - `promtool check rules` and `promtool test rules` pass, and every alert has a unit test where it fires and one
//!   where it stays quiet.
//! - The chart ships byte-identical copies of both files (`deploy/helm/trigger-relay/files/`).
//! - Every metric the dashboard and the rules use is registered in `src/` with the labels they use (the `process_*`
//!   family: what the `prometheus` crate's process collector, which `src/relay.rs` registers, exports), and the
//!   label values they match on exist; the dashboard is complete (descriptions, variables, data source).
//! - `trigger_relay_ready` is what `/readyz` answers at that moment: 0 while a sink is not connected, 1 once every
//!   sink is, 0 again while draining.
//! - Live: a real Prometheus (Debian's `prometheus`, started here on a free port) loads the rules and scrapes a real
//!   relay under load with one destination down (a webhook on a closed port). Every dashboard query is valid, the
//!   ones that can have data in this setup return it (the process and readiness panels with plausible values), the
//!   variables list the real label values, the relay's `/metrics` holds exactly the metrics the static check reads
//!   (`trigger_relay_*` from `src/`, `process_*` from the process collector), and the alerts for the failing
//!   destination become pending or firing while the others stay quiet.
//!
//! Prometheus and promtool come from Debian's `prometheus` package (`scripts/test` installs it); without them these
//! tests fail with the command to install them. `TRIGGER_RELAY_TEST_PROMETHEUS` / `TRIGGER_RELAY_TEST_PROMTOOL`
//! name other binaries.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;
use support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const INSTALL: &str = "install Debian's prometheus package: `apt-get install prometheus` (it provides \
                       /usr/bin/prometheus and /usr/bin/promtool; scripts/test installs it when missing)";

/// Labels the scrape adds to every series (job, instance; the chart's ServiceMonitor also namespace, pod, service,
/// container, endpoint): a query may use them on any metric.
const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
];

/// Metrics the kit uses that the relay does not export, with their labels and where they come from.
const EXTERNAL: &[(&str, &[&str], &str)] = &[("up", &[], "Prometheus itself, per scrape target")];

/// Dashboard queries that cannot have data in the live test, by a metric they use, and why. Each is still checked
/// to be valid PromQL against the live Prometheus.
const NO_DATA_LIVE: &[(&str, &str)] = &[
    (
        "trigger_relay_kafka_producer_queue_full_total",
        "no Kafka sink in the live test",
    ),
    (
        "trigger_relay_tls_handshake_failures_total",
        "no TLS listener in the live test",
    ),
    (
        "trigger_relay_tls_reloads_total",
        "no TLS listener in the live test",
    ),
    (
        "trigger_relay_connections_refused_total",
        "max_connections is not reached",
    ),
    (
        "trigger_relay_ingress_rate_limit_untracked_requests_total",
        "the rate-limit table does not fill",
    ),
];

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// A binary of Debian's prometheus package, or a failure that says how to install it.
fn tool(name: &str, env: &str) -> String {
    let bin = std::env::var(env).unwrap_or_else(|_| name.to_string());
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => bin,
        Ok(o) => panic!(
            "`{bin} --version` failed ({}): {}\nTo fix: {INSTALL}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {bin} ({e}): this test needs it. To fix: {INSTALL}"),
    }
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let bin = tool("promtool", "TRIGGER_RELAY_TEST_PROMTOOL");
    let out = Command::new(&bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}. To fix: {INSTALL}"));
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "`promtool {}` failed:\n{text}",
        args.join(" ")
    );
    text
}

// --- reading the kit ----------------------------------------------------------------------------------------------

/// One alert rule as written in alerts.yaml (read by indentation; the live test checks that Prometheus reads the
/// same alerts, and every expression read here is a query Prometheus accepts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Alert {
    name: String,
    expr: String,
}

fn alerts_in(text: &str) -> Vec<Alert> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut name: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if let Some(n) = t.strip_prefix("- alert: ") {
            name = Some(n.trim().to_string());
        } else if let Some(rest) = t.strip_prefix("expr: ") {
            let indent = line.len() - t.len();
            let expr = if rest.trim() == "|" {
                let mut body = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let ni = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && ni <= indent {
                        break;
                    }
                    body.push(next.trim());
                    i += 1;
                }
                body.join("\n").trim().to_string()
            } else {
                rest.trim().to_string()
            };
            let name = name.take().unwrap_or_else(|| {
                panic!("alerts.yaml: `expr:` without an `- alert:` before it: {expr}")
            });
            out.push(Alert { name, expr });
        }
        i += 1;
    }
    out
}

fn alerts() -> Vec<Alert> {
    let a = alerts_in(&read("deploy/prometheus/alerts.yaml"));
    assert!(
        a.len() >= 10,
        "alerts.yaml: read only {} alerts: {a:?}",
        a.len()
    );
    a
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/trigger-relay.json"))
        .unwrap_or_else(|e| panic!("deploy/grafana/trigger-relay.json is not JSON: {e}"))
}

/// (panel title, query) for every query of every panel, in order.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| {
                panic!("panel {:?}: a target without a PromQL `expr`", p["title"])
            });
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                expr.to_string(),
            ));
        }
    }
    out
}

/// The dashboard's variables, by name: (their `label_values(...)` query, if a query variable).
fn dashboard_variables(d: &Value) -> BTreeMap<String, Value> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// A variable's `label_values(selector, label)`, split.
fn label_values(def: &str) -> (String, String) {
    let inner = def
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("dashboard variable: not label_values(selector, label): {def}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("dashboard variable: not label_values(selector, label): {def}"));
    (selector.trim().to_string(), label.trim().to_string())
}

/// A query with its variables replaced: the real namespace and pod (or `.*`), `.*` for the rest, and Grafana's
/// intervals by durations that suit a 1 s scrape.
fn substitute(expr: &str, namespace: &str, pod: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$__range", "5m")
        .replace("$namespace", namespace)
        .replace("$pod", pod)
        .replace("$trigger", ".*")
        .replace("$sink", ".*")
}

// --- what the relay registers -------------------------------------------------------------------------------------

/// Every `trigger_relay_*` metric registered in `src/`, with its labels; histograms by their series names
/// (`_bucket` with `le`, `_sum`, `_count`). Plus the `process_*` family ([`process_metrics`]).
fn registered_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let name_re = Regex::new(r#""(trigger_relay_[a-z0-9_]+)""#).unwrap();
    let labels_re = Regex::new(r#"&\[\s*((?:"[a-z_]+"\s*,?\s*)*)\]"#).unwrap();
    let label_re = Regex::new(r#""([a-z_]+)""#).unwrap();
    let mut out = BTreeMap::new();
    for file in rust_files(&path("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for m in name_re.captures_iter(&text) {
            let whole = m.get(0).unwrap();
            let mut from = whole.start().saturating_sub(60);
            while !text.is_char_boundary(from) {
                from += 1;
            }
            let before = &text[from..whole.start()];
            if !before.contains("::new(") {
                continue; // a mention in a doc comment or a string, not a registration
            }
            let rest = &text[whole.end()..];
            let end = rest.find(")?").unwrap_or(rest.len());
            let labels: BTreeSet<String> = labels_re
                .captures(&rest[..end])
                .map(|c| {
                    label_re
                        .captures_iter(&c[1])
                        .map(|l| l[1].to_string())
                        .collect()
                })
                .unwrap_or_default();
            let name = m[1].to_string();
            if before.contains("HistogramOpts::new(") {
                let mut with_le = labels.clone();
                with_le.insert("le".into());
                out.insert(format!("{name}_bucket"), with_le);
                out.insert(format!("{name}_sum"), labels.clone());
                out.insert(format!("{name}_count"), labels);
            } else {
                out.insert(name, labels);
            }
        }
    }
    assert!(
        out.len() >= 25,
        "read only {} metric registrations from src/: {out:?}",
        out.len()
    );
    out.extend(process_metrics());
    out
}

/// The `process_*` metrics, when `src/relay.rs` registers the `prometheus` crate's process collector: read from
/// that collector itself (not listed here), so they are what the relay exports; the live test checks the relay's
/// `/metrics` against them. The collector reads `/proc`: Linux only.
fn process_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let relay = read("src/relay.rs");
    if !relay.contains("ProcessCollector::for_self()") {
        return BTreeMap::new();
    }
    #[cfg(target_os = "linux")]
    {
        let r = prometheus::Registry::new();
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .unwrap();
        let mut buf = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &r.gather(), &mut buf)
            .unwrap();
        let out = exposition_metrics(&String::from_utf8(buf).unwrap());
        for m in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                out.contains_key(m),
                "the process collector exports no {m}: {out:?}"
            );
        }
        out
    }
    #[cfg(not(target_os = "linux"))]
    BTreeMap::new()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// String literals in `src/`: the label values the relay can produce are among them.
fn source_literals() -> BTreeSet<String> {
    let lit = Regex::new(r#""([a-z_]+)""#).unwrap();
    let mut out = BTreeSet::new();
    for file in rust_files(&path("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        out.extend(lit.captures_iter(&text).map(|c| c[1].to_string()));
    }
    out
}

/// One label matcher of a selector: (label, operator, value).
type Matcher = (String, String, String);

/// What one PromQL expression uses: metric selectors (name, label matchers) and grouping labels.
#[derive(Debug, Default)]
struct Uses {
    selectors: Vec<(String, Vec<Matcher>)>,
    grouping: BTreeSet<String>,
}

const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "increase",
    "irate",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "histogram_quantile",
    "vector",
    "label_values",
    "le",
    "abs",
    "clamp_min",
    "topk",
];

fn promql_uses(expr: &str) -> Uses {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let grouping = Regex::new(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)").unwrap();
    let ranges = Regex::new(r"\[[^\]]*\]").unwrap();
    let blocks = Regex::new(r"\{[^}]*\}").unwrap();
    let ident = Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    let matcher =
        Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)""#).unwrap();
    // Blank (same length, so positions stay those of `expr`) what holds no metric names: string literals, grouping
    // clauses, range and offset durations.
    let blank = |s: &str, re: &Regex| {
        re.replace_all(s, |c: &regex::Captures| " ".repeat(c[0].len()))
            .into_owned()
    };
    let mut u = Uses::default();
    let no_strings = blank(expr, &strings);
    for g in grouping.captures_iter(&no_strings) {
        u.grouping.extend(
            g[1].split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    let bare = blank(&blank(&no_strings, &grouping), &ranges);
    let inside: Vec<(usize, usize)> = blocks
        .find_iter(&bare)
        .map(|m| (m.start(), m.end()))
        .collect();
    for m in ident.find_iter(&bare) {
        let before = bare[..m.start()].chars().next_back();
        let part_of_number =
            before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        if PROMQL_WORDS.contains(&m.as_str())
            || part_of_number
            || inside.iter().any(|(a, b)| m.start() > *a && m.start() < *b)
        {
            continue;
        }
        let after = bare[m.end()..].trim_start();
        if after.starts_with('(') {
            continue; // a function
        }
        let mut ms = Vec::new();
        if after.starts_with('{') {
            let open = m.end() + (bare[m.end()..].len() - after.len());
            let (_, close) = *inside.iter().find(|(a, _)| *a == open).unwrap();
            for c in matcher.captures_iter(&expr[open..close]) {
                ms.push((c[1].to_string(), c[2].to_string(), c[3].to_string()));
            }
        }
        u.selectors.push((m.as_str().to_string(), ms));
    }
    u
}

/// Every metric and label `expr` uses exists (registered in src/, the process collector's, or the scrape's); label
/// values it matches on literally are ones the relay writes. Problems are appended to `errors`.
fn check_uses(
    what: &str,
    expr: &str,
    registered: &BTreeMap<String, BTreeSet<String>>,
    literals: &BTreeSet<String>,
    errors: &mut Vec<String>,
) {
    let u = promql_uses(expr);
    if u.selectors.is_empty() {
        errors.push(format!("{what}: no metric found in `{expr}`"));
    }
    let mut labels_here: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for (metric, matchers) in &u.selectors {
        let known: BTreeSet<String> = match registered.get(metric) {
            Some(l) => l.clone(),
            None => match EXTERNAL.iter().find(|(n, _, _)| n == metric) {
                Some((_, l, _)) => l.iter().map(|s| s.to_string()).collect(),
                None => {
                    errors.push(format!(
                        "{what}: metric `{metric}` is not registered in src/ (renamed or removed?) in `{expr}`"
                    ));
                    continue;
                }
            },
        };
        labels_here.extend(known.iter().cloned());
        for (label, op, value) in matchers {
            if !known.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                errors.push(format!(
                    "{what}: `{metric}` has no label `{label}` (it has {known:?}) in `{expr}`"
                ));
            }
            // Literal values of the relay's enumerated labels must be ones it writes.
            let enumerated = ["reason", "result", "scope", "listener", "stage"];
            if enumerated.contains(&label.as_str()) && (op == "=" || op == "=~") {
                for v in value.split('|') {
                    if !v.is_empty() && !literals.contains(v) {
                        errors.push(format!(
                            "{what}: `{metric}{{{label}{op}\"{value}\"}}`: the relay never writes {label}=\"{v}\""
                        ));
                    }
                }
            }
        }
    }
    for g in &u.grouping {
        if !labels_here.contains(g) {
            errors.push(format!(
                "{what}: groups by `{g}`, which no metric of `{expr}` has"
            ));
        }
    }
}

// --- tests --------------------------------------------------------------------------------------------------------

/// `promtool check rules` accepts alerts.yaml, `promtool test rules` passes, and every alert has at least one unit
/// test where it fires and one where it stays quiet (`exp_alerts: []`).
#[test]
fn promtool_checks_the_rules_and_unit_tests_every_alert_firing_and_quiet() {
    let dir = path("deploy/prometheus");
    let check = promtool(&["check", "rules", "alerts.yaml"], &dir);
    let names: Vec<String> = alerts().into_iter().map(|a| a.name).collect();
    assert!(
        check.contains(&format!("SUCCESS: {} rules found", names.len())),
        "promtool check rules:\n{check}"
    );
    let test = promtool(&["test", "rules", "alerts_test.yaml"], &dir);
    assert!(test.contains("SUCCESS"), "promtool test rules:\n{test}");
    println!("{check}{test}");

    // Coverage: for each `alertname:` in alert_rule_test, is the expectation empty (quiet) or not (fires)?
    let text = read("deploy/prometheus/alerts_test.yaml");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut fires: BTreeMap<&str, usize> = BTreeMap::new();
    let mut quiet: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.strip_prefix("alertname: ") else {
            continue;
        };
        let exp = lines[i + 1..]
            .iter()
            .find(|l| l.starts_with("exp_alerts:"))
            .unwrap_or_else(|| panic!("alerts_test.yaml: no exp_alerts after alertname {name}"));
        if exp.trim_end() == "exp_alerts: []" {
            *quiet.entry(name).or_default() += 1;
        } else {
            *fires.entry(name).or_default() += 1;
        }
    }
    for n in &names {
        assert!(
            fires.contains_key(n.as_str()),
            "alerts_test.yaml has no case where {n} fires"
        );
        assert!(
            quiet.contains_key(n.as_str()),
            "alerts_test.yaml has no case where {n} stays quiet (exp_alerts: [])"
        );
    }
    for n in fires.keys().chain(quiet.keys()) {
        assert!(
            names.iter().any(|a| a == n),
            "alerts_test.yaml tests {n}, which alerts.yaml does not define"
        );
    }
}

/// The chart ships the dashboard and the rules from its own directory (Helm reads no file outside it): those copies
/// must be the files in deploy/grafana and deploy/prometheus, byte for byte.
#[test]
fn chart_ships_byte_identical_copies_of_the_dashboard_and_the_rules() {
    for (source, copy) in [
        (
            "deploy/prometheus/alerts.yaml",
            "deploy/helm/trigger-relay/files/prometheus-alerts.yaml",
        ),
        (
            "deploy/grafana/trigger-relay.json",
            "deploy/helm/trigger-relay/files/grafana-dashboard.json",
        ),
    ] {
        assert!(
            read(source) == read(copy),
            "{copy} differs from {source}. Edit {source}, then copy it: `cp {source} {copy}`"
        );
    }
}

/// Every metric the dashboard and the alerts use is registered in src/ with the labels they use (or is named in
/// EXTERNAL with its source), and the dashboard reads well: every panel has a title and a description, queries
/// the `${datasource}` variable, and every variable a query uses is defined.
#[test]
fn dashboard_and_alerts_use_only_registered_metrics_and_labels_and_every_panel_is_described() {
    let registered = registered_metrics();
    let literals = source_literals();
    let d = dashboard();
    let mut errors = Vec::new();

    for (title, expr) in dashboard_queries(&d) {
        check_uses(
            &format!("dashboard panel {title:?}"),
            &expr,
            &registered,
            &literals,
            &mut errors,
        );
    }
    for a in alerts() {
        check_uses(
            &format!("alert {}", a.name),
            &a.expr,
            &registered,
            &literals,
            &mut errors,
        );
    }
    let vars = dashboard_variables(&d);
    for (name, v) in &vars {
        let Some(def) = v["definition"].as_str() else {
            continue;
        };
        let (selector, label) = label_values(def);
        let what = format!("dashboard variable {name}");
        check_uses(&what, &selector, &registered, &literals, &mut errors);
        let metric = promql_uses(&selector).selectors[0].0.clone();
        let has = registered.get(&metric).is_some_and(|l| l.contains(&label));
        if !has && !TARGET_LABELS.contains(&label.as_str()) {
            errors.push(format!("{what}: `{metric}` has no label `{label}`"));
        }
    }

    // Variables: namespace, pod, trigger, sink (multi-value, All = .*) and the data source.
    for name in ["namespace", "pod", "trigger", "sink"] {
        match vars.get(name) {
            None => errors.push(format!("dashboard: no `{name}` variable")),
            Some(v) => {
                if v["allValue"] != ".*" || v["includeAll"] != true {
                    errors.push(format!(
                        "dashboard variable {name}: needs includeAll with allValue \".*\""
                    ));
                }
            }
        }
    }
    if vars.get("datasource").map(|v| v["type"].clone()) != Some(Value::from("datasource")) {
        errors.push("dashboard: no `datasource` variable of type datasource".into());
    }
    let var_use = Regex::new(r"\$(__)?([a-z_]+)").unwrap();
    let mut ids = BTreeSet::new();
    let mut panel_count = 0;
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap_or_default();
        if !ids.insert(p["id"].as_u64().expect("panel id")) {
            errors.push(format!("dashboard: panel id {} used twice", p["id"]));
        }
        let g = &p["gridPos"];
        if g["x"].as_u64().unwrap_or(99) + g["w"].as_u64().unwrap_or(99) > 24 {
            errors.push(format!(
                "dashboard panel {title:?}: gridPos beyond 24 columns"
            ));
        }
        if p["type"] == "row" {
            continue;
        }
        panel_count += 1;
        if title.len() < 5 {
            errors.push(format!(
                "dashboard: a panel without a real title: {title:?}"
            ));
        }
        let desc = p["description"].as_str().unwrap_or_default();
        if desc.len() < 80 {
            errors.push(format!(
                "dashboard panel {title:?}: its description should say what it means and what to do: {desc:?}"
            ));
        }
        if p["datasource"]["uid"] != "${datasource}" {
            errors.push(format!(
                "dashboard panel {title:?}: not on the ${{datasource}} variable"
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            errors.push(format!("dashboard panel {title:?}: no query"));
        }
        let refs: BTreeSet<_> = targets.iter().map(|t| t["refId"].to_string()).collect();
        if refs.len() != targets.len() {
            errors.push(format!("dashboard panel {title:?}: refIds repeat"));
        }
        for t in &targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            for c in var_use.captures_iter(expr) {
                let builtin = c.get(1).is_some();
                let name = &c[2];
                let ok = if builtin {
                    ["rate_interval", "range"].contains(&name)
                } else {
                    vars.contains_key(name)
                };
                if !ok {
                    errors.push(format!(
                        "dashboard panel {title:?}: uses ${name}, which is not defined"
                    ));
                }
            }
            for needed in ["namespace", "pod"] {
                if !expr.contains(&format!("{needed}=~\"${needed}\"")) {
                    errors.push(format!(
                        "dashboard panel {title:?}: a query ignores the ${needed} variable: {expr}"
                    ));
                }
            }
        }
    }
    assert!(panel_count >= 25, "dashboard: only {panel_count} panels");
    // The issue's list, one panel at least each (by the metric it shows).
    let all: String = dashboard_queries(&d)
        .into_iter()
        .map(|(_, e)| e)
        .collect::<Vec<_>>()
        .join("\n");
    for m in [
        "trigger_relay_ingress_requests_total",
        "trigger_relay_ingress_shed_requests_total",
        "trigger_relay_ingress_rate_limited_requests_total",
        "trigger_relay_queue_depth_events",
        "trigger_relay_queue_depth_bytes",
        "trigger_relay_queue_capacity_events",
        "trigger_relay_queue_capacity_bytes",
        "trigger_relay_sink_events_sent_total",
        "trigger_relay_sink_events_failed_total",
        "trigger_relay_dead_letter_events_total",
        "trigger_relay_sink_publish_latency_seconds_bucket",
        "trigger_relay_sink_connected",
        "trigger_relay_filter_evaluations_total",
        "trigger_relay_connections_open",
        "trigger_relay_tls_handshake_failures_total",
        "trigger_relay_api_requests_total",
        "trigger_relay_ready",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        if !all.contains(m) {
            errors.push(format!("dashboard: no panel shows {m}"));
        }
    }
    // Every metric registered in src/ appears on the dashboard, so a new metric gets a panel (or a reason here).
    // The process collector's family is the library's: the dashboard shows those listed above (not
    // process_virtual_memory_bytes, address space rather than memory used, nor process_threads).
    for m in registered
        .keys()
        .filter(|m| m.starts_with("trigger_relay_"))
    {
        let base = m
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        if !all.contains(base) {
            errors.push(format!("dashboard: metric {m} has no panel"));
        }
    }
    // Runbook: every alert links to a section of deploy/README.md that exists.
    let readme = read("deploy/README.md");
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let rules = read("deploy/prometheus/alerts.yaml");
    for a in alerts() {
        let want = format!(
            "runbook_url: \"https://github.com/trigger-relay/trigger-relay/blob/main/deploy/README.md#{}\"",
            a.name.to_lowercase()
        );
        if !rules.contains(&want) {
            errors.push(format!("alert {}: no `{want}`", a.name));
        }
        if !anchors.contains(&a.name.to_lowercase()) {
            errors.push(format!(
                "alert {}: deploy/README.md has no runbook section `#### {}`",
                a.name, a.name
            ));
        }
        for key in ["summary: ", "description: "] {
            let section = rules
                .split("- alert: ")
                .find(|s| s.starts_with(&format!("{}\n", a.name)))
                .unwrap();
            if !section.contains(key) {
                errors.push(format!("alert {}: no {key}annotation", a.name));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} problem(s):\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
}

// --- the live test ------------------------------------------------------------------------------------------------

/// A Prometheus server owned by the test, on a free loopback port, with its own config and storage.
struct Prometheus {
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(admin: SocketAddr, namespace: &str, pod: &str) -> Self {
        let bin = tool("prometheus", "TRIGGER_RELAY_TEST_PROMETHEUS");
        let dir = tempfile::tempdir().unwrap();
        let rules = path("deploy/prometheus/alerts.yaml");
        let config = format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "{rules}"
scrape_configs:
  - job_name: trigger-relay
    static_configs:
      - targets: ["{admin}"]
        labels:
          namespace: "{namespace}"
          pod: "{pod}"
"#,
            rules = rules.display()
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}. To fix: {INSTALL}"));
        Self {
            addr,
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path_and_query: &str) -> Value {
        let r = request("GET", self.addr, path_and_query, &[], "").await;
        serde_json::from_slice(&r.body).unwrap_or_else(|e| {
            panic!(
                "Prometheus answered {} to {path_and_query} with non-JSON ({e}): {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        })
    }

    /// An instant query: Ok(result vector) or Err(Prometheus's error).
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let v = self
            .get(&format!("/api/v1/query?query={}", enc(promql)))
            .await;
        if v["status"] == "success" {
            Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
        } else {
            Err(format!("{}: {}", v["errorType"], v["error"]))
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let up = tokio::net::TcpStream::connect(self.addr).await.is_ok()
                && request("GET", self.addr, "/-/ready", &[], "").await.status == 200;
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready on {} within 60 s:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Alerts as Prometheus reports them: (alertname, state, labels).
async fn active_alerts(p: &Prometheus) -> Vec<(String, String, BTreeMap<String, String>)> {
    let v = p.get("/api/v1/alerts").await;
    v["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let labels: BTreeMap<String, String> = a["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            (
                labels["alertname"].clone(),
                a["state"].as_str().unwrap_or_default().to_string(),
                labels,
            )
        })
        .collect()
}

/// The relay's `/metrics` samples: series name -> label names seen.
async fn scraped_metrics(admin: SocketAddr) -> BTreeMap<String, BTreeSet<String>> {
    let r = request("GET", admin, "/metrics", &[], "").await;
    exposition_metrics(&String::from_utf8_lossy(&r.body))
}

/// Samples of a Prometheus text exposition: series name -> label names seen.
fn exposition_metrics(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*""#).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..line.rfind('}').unwrap()]),
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let set = out.entry(name.to_string()).or_default();
        set.extend(label.captures_iter(labels).map(|c| c[1].to_string()));
    }
    out
}

const NAMESPACE: &str = "monitoring-test";
const POD: &str = "relay-0";
const GOOD: &str = "idn:identity-created";
const FAILING: &str = "idn:identity-attributes-changed";
/// The Triggers API token of the live test (32 bytes or more, as the config requires of tokens).
const TOKEN: &str = "monitoring-token-0123456789abcdef";

/// A real Prometheus scrapes a real relay under load whose webhook destination is down; the dashboard's queries and
/// the alerts are checked through Prometheus's HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_prometheus_scrapes_a_relay_with_a_failing_destination_dashboard_queries_answer_and_alerts_fire(
) {
    // Fail first, and clearly, when the server is missing.
    tool("prometheus", "TRIGGER_RELAY_TEST_PROMETHEUS");
    let store = tempfile::tempdir().unwrap();
    // A destination that is down: a loopback port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let unrouted = ga_fire_and_forget()
        .into_iter()
        .find(|t| t != GOOD && t != FAILING)
        .unwrap();
    let relay = start(&format!(
        r#"
{LOOPBACK_HOOKS}
[ingress.limits]
header_read_timeout_ms = 500
[ingress.rate_limit]
per_ip_requests = 50
window_ms = 1000
[delivery]
ack_timeout_ms = 1000
delivery_timeout_ms = 2000
[sinks.http.queue]
max_events = 10
[api]
enabled = true
store_path = "{store}"
{}{}{}"#,
        admin_token("ops", TOKEN),
        subscription("good", GOOD, "DISCARD", "filter = \"$.identity.id\""),
        http_subscription("down webhook", FAILING, &format!("http://{closed}/hook")),
        store = store.path().join("api.json").display()
    ))
    .await;
    wait_ready(&relay).await;
    let admin = relay.admin_addr();
    let ingress = relay.ingress_addr();

    let mut prom = Prometheus::start(admin, NAMESPACE, POD);
    prom.wait_ready().await;

    // Load until the test ends: about 34 requests/s from 127.0.0.1 (under the per-IP limit of 50/s): accepted
    // events to DISCARD, events to the dead webhook (its queue of 10 fills: ISC gets 503s), an unrouted trigger and
    // a malformed request; and 60/s from 127.0.0.2, over the limit: 429s.
    let load = tokio::spawn(async move {
        let other = Some("127.0.0.2".parse().unwrap());
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u64;
        loop {
            tick.tick().await;
            n += 1;
            let id = format!("inv-{n}");
            let good = example_body(GOOD, &id);
            let failing = example_body(FAILING, &id);
            let _ = request_to(ingress, &format!("/events/{GOOD}"), good).await;
            let _ = request_to(ingress, &format!("/events/{FAILING}"), failing.clone()).await;
            let _ = request_to(ingress, &format!("/events/{FAILING}"), failing).await;
            if n.is_multiple_of(5) {
                let _ = request_to(
                    ingress,
                    &format!("/events/{unrouted}"),
                    example_body(&unrouted, &id),
                )
                .await;
                let _ = request_to(ingress, &format!("/events/{GOOD}"), b"not json".to_vec()).await;
            }
            for i in 0..6 {
                let _ = request_from(
                    other,
                    "POST",
                    ingress,
                    &format!("/events/{GOOD}"),
                    &[("content-type", "application/json")],
                    example_body(GOOD, &format!("{id}-other-{i}")),
                )
                .await;
            }
        }
    });
    // A connection that sends nothing is closed by header_read_timeout_ms: a connection timeout.
    {
        use tokio::io::AsyncReadExt;
        let mut idle = tokio::net::TcpStream::connect(ingress).await.unwrap();
        let mut buf = [0u8; 256];
        let closed_by_relay = tokio::time::timeout(Duration::from_secs(10), async {
            while idle.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
        })
        .await;
        assert!(
            closed_by_relay.is_ok(),
            "the relay did not close an idle connection"
        );
    }
    // The Triggers API answers on the admin listener.
    let r = request(
        "GET",
        admin,
        "/beta/triggers?limit=1",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // One failed authentication, so the auth-failure query has a series.
    let r = request(
        "GET",
        admin,
        "/beta/triggers?limit=1",
        &[("authorization", "Bearer not-a-token")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);

    // Prometheus read the same alerts as the static checks, and evaluates them without errors.
    let want_alerts: BTreeSet<Alert> = alerts().into_iter().collect();
    let mut got_alerts = BTreeSet::new();
    let rules = prom.get("/api/v1/rules").await;
    for g in rules["data"]["groups"].as_array().expect("rule groups") {
        for r in g["rules"].as_array().unwrap() {
            got_alerts.insert(Alert {
                name: r["name"].as_str().unwrap().to_string(),
                expr: r["query"].as_str().unwrap().to_string(),
            });
        }
    }
    let names = |s: &BTreeSet<Alert>| s.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&got_alerts),
        names(&want_alerts),
        "Prometheus loaded other alerts than alerts.yaml holds"
    );

    // Every dashboard query is valid, and those that can have data here get it.
    let d = dashboard();
    let queries = dashboard_queries(&d);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut missing: Vec<String>;
    loop {
        missing = Vec::new();
        for (title, expr) in &queries {
            let q = substitute(expr, NAMESPACE, POD);
            match prom.query(&q).await {
                Err(e) => panic!("dashboard panel {title:?}: Prometheus refuses `{q}`: {e}"),
                Ok(result) => {
                    let exempt = NO_DATA_LIVE.iter().any(|(m, _)| expr.contains(m));
                    if result.is_empty() && !exempt {
                        missing.push(format!("{title:?}: `{q}`"));
                    }
                }
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        missing.is_empty(),
        "dashboard queries with no data after 120 s of load:\n  {}\nrelay metrics:\n{}",
        missing.join("\n  "),
        String::from_utf8_lossy(&request("GET", admin, "/metrics", &[], "").await.body)
    );
    println!(
        "{} dashboard queries valid; all return data except those on: {:?}",
        queries.len(),
        NO_DATA_LIVE
    );
    // The process panels (the relay's own process_* metrics, kept to relay targets by trigger_relay_ready) and the
    // readiness panels show this relay, with plausible values. The relay runs in this test's process, and the
    // process collector counts CPU in whole seconds: burn 3 CPU-seconds here so that the CPU panel must see them.
    let burn = tokio::task::spawn_blocking(|| {
        let until = Instant::now() + Duration::from_secs(3);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        x
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut process_queries;
    loop {
        process_queries = 0;
        let mut wrong = Vec::new();
        for (title, expr) in &queries {
            let (what, ok): (&str, fn(f64) -> bool) = if expr.contains("process_") {
                ("above 0", |v| v > 0.0)
            } else if expr.contains("trigger_relay_ready") && expr.contains("== 0") {
                ("0 (no pod not ready)", |v| v == 0.0)
            } else if expr.contains("trigger_relay_ready") {
                ("1 (ready)", |v| v == 1.0)
            } else {
                continue;
            };
            process_queries += usize::from(expr.contains("process_"));
            let q = substitute(expr, NAMESPACE, POD);
            let result = prom.query(&q).await.unwrap();
            let values: Vec<f64> = result
                .iter()
                .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
                .collect();
            if !(values.len() == 1 && ok(values[0])) {
                wrong.push(format!(
                    "dashboard panel {title:?}: `{q}` should be one series, {what}; it is {result:?}"
                ));
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within 30 s:\n  {}",
            wrong.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    burn.await.unwrap();
    assert!(
        process_queries >= 5,
        "the dashboard should show CPU, memory, file descriptors and uptime from process_* ({process_queries} queries)"
    );
    // Every alert expression is valid too, as a query.
    for a in &want_alerts {
        if let Err(e) = prom.query(&a.expr).await {
            panic!("alert {}: Prometheus refuses its expr: {e}", a.name);
        }
    }
    // The variables list the real label values.
    for (name, want) in [
        ("namespace", NAMESPACE),
        ("pod", POD),
        ("trigger", GOOD),
        ("sink", "http"),
    ] {
        let def = dashboard_variables(&d)[name]["definition"]
            .as_str()
            .unwrap()
            .to_string();
        let (selector, label) = label_values(&def);
        let selector = substitute(&selector, NAMESPACE, POD);
        let v = prom
            .get(&format!(
                "/api/v1/label/{label}/values?match%5B%5D={}",
                enc(&selector)
            ))
            .await;
        let values: Vec<&str> = v["data"]
            .as_array()
            .unwrap_or_else(|| panic!("variable {name}: {v}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            values.contains(&want),
            "variable {name} ({def}) lists {values:?}, not {want}"
        );
    }

    // The alerts for the dead webhook: events failing (firing: no `for`), the sink stalled, its queue nearly
    // full, 503s to ISC for its trigger, and 429s (pending: their `for` is minutes). The others stay quiet.
    let expect: &[(&str, &[&str], (&str, &str))] = &[
        ("TriggerRelayEventsFailing", &["firing"], ("sink", "http")),
        (
            "TriggerRelaySinkStalled",
            &["pending", "firing"],
            ("sink", "http"),
        ),
        (
            "TriggerRelayQueueNearlyFull",
            &["pending", "firing"],
            ("sink", "http"),
        ),
        (
            "TriggerRelayAnswering503",
            &["pending", "firing"],
            ("trigger", FAILING),
        ),
        (
            "TriggerRelayRateLimiting",
            &["pending", "firing"],
            ("scope", "ip"),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    loop {
        for (name, state, labels) in active_alerts(&prom).await {
            for (want, states, (k, v)) in expect {
                if name == *want
                    && states.contains(&state.as_str())
                    && labels.get(*k).map(String::as_str) == Some(*v)
                {
                    seen.insert(*want);
                }
            }
        }
        if seen.len() == expect.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within 90 s, only {seen:?} of {:?} became pending/firing; Prometheus reports {:?}",
            expect.iter().map(|e| e.0).collect::<Vec<_>>(),
            active_alerts(&prom).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let quiet: Vec<_> = active_alerts(&prom)
        .await
        .into_iter()
        .filter(|(n, _, _)| !expect.iter().any(|e| e.0 == n.as_str()))
        .collect();
    assert!(
        quiet.is_empty(),
        "alerts active that the scenario does not call for: {quiet:?}"
    );
    let rules = prom.get("/api/v1/rules").await;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(
                r["health"], "ok",
                "rule {} does not evaluate: {}",
                r["name"], r["lastError"]
            );
        }
    }
    load.abort();

    // The relay's real /metrics agrees with what the static drift check reads: the registrations in src/ and the
    // process collector's metrics, which the relay exports all of.
    let registered = registered_metrics();
    let scraped = scraped_metrics(admin).await;
    for (name, labels) in &scraped {
        let want = registered.get(name).unwrap_or_else(|| {
            panic!("/metrics has {name}, which the drift check does not know (not registered in src/, not the process collector's)")
        });
        assert_eq!(
            labels, want,
            "{name}: /metrics labels differ from the registration the drift check read"
        );
    }
    let process: Vec<&String> = registered
        .keys()
        .filter(|m| m.starts_with("process_"))
        .collect();
    assert!(
        !process.is_empty(),
        "the drift check found no process collector registered in src/relay.rs"
    );
    for m in process {
        assert!(
            scraped.contains_key(m),
            "the drift check accepts {m}, but the relay's /metrics does not have it"
        );
    }
    let ready = ready_gauge(admin).await;
    assert_eq!(
        ready, 1.0,
        "trigger_relay_ready of a relay whose /readyz answers 200"
    );
}

/// The value of `trigger_relay_ready` on the relay's `/metrics`; fails when it is not there.
async fn ready_gauge(admin: SocketAddr) -> f64 {
    let r = request("GET", admin, "/metrics", &[], "").await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("trigger_relay_ready "))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(
        values.len(),
        1,
        "/metrics should have one trigger_relay_ready sample:\n{text}"
    );
    values[0]
}

/// `/readyz`'s status and the `trigger_relay_ready` gauge, asserted to agree, and why /readyz says what it says.
async fn readiness(admin: SocketAddr) -> (u16, f64, String) {
    let r = request("GET", admin, "/readyz", &[], "").await;
    let gauge = ready_gauge(admin).await;
    let why = String::from_utf8_lossy(&r.body).into_owned();
    let want = if r.status == 200 { 1.0 } else { 0.0 };
    assert_eq!(
        gauge, want,
        "/readyz answers {} ({why:?}) but trigger_relay_ready is {gauge}",
        r.status
    );
    (r.status, gauge, why)
}

/// `trigger_relay_ready` is computed at each scrape from what `/readyz` would answer: 0 while a sink has not
/// reached its destination, 1 once every sink has, and 0 again while the relay drains after a shutdown (which the
/// per-sink `trigger_relay_sink_connected` cannot show: the NotReady alert is on this gauge for that reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_gauge_is_what_readyz_answers_waiting_ready_and_draining() {
    // Waiting: a Kafka sink whose broker does not exist never connects.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let waiting = start(&format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
shutdown_grace_ms = 200
{}"#,
        kafka_route(&nowhere, "to nowhere", GOOD, "monitoring-ready")
    ))
    .await;
    for _ in 0..3 {
        let (status, gauge, why) = readiness(waiting.admin_addr()).await;
        assert_eq!(
            (status, gauge),
            (503, 0.0),
            "a sink that never connected: {why}"
        );
        assert!(why.contains("waiting for sinks: kafka.main"), "{why}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    waiting.wait().await;

    // Ready, then draining: an event for a webhook that is down keeps the relay draining (retrying it) for the
    // shutdown grace, while the admin listener still answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let relay = start(&format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
shutdown_grace_ms = 6000
{}"#,
        http_subscription("down webhook", FAILING, &format!("http://{closed}/hook"))
    ))
    .await;
    wait_ready(&relay).await;
    let admin = relay.admin_addr();
    let (status, gauge, why) = readiness(admin).await;
    assert_eq!((status, gauge), (200, 1.0), "{why}");
    let r = request_to(
        relay.ingress_addr(),
        &format!("/events/{FAILING}"),
        example_body(FAILING, "inv-drain"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    relay.shutdown();
    eventually(
        "/readyz 503 after shutdown",
        Duration::from_secs(5),
        || async { request("GET", admin, "/readyz", &[], "").await.status == 503 },
    )
    .await;
    let (status, gauge, why) = readiness(admin).await;
    assert_eq!((status, gauge), (503, 0.0), "draining: {why}");
    assert!(why.contains("draining"), "{why}");
    relay.wait().await;
}

/// POST one JSON body to the ingress.
async fn request_to(addr: SocketAddr, path: &str, body: Vec<u8>) -> Response {
    request(
        "POST",
        addr,
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// The PromQL reader finds what a query uses (it guards the drift check, so it is tested too).
#[test]
fn promql_reader_finds_metrics_matchers_and_grouping_labels() {
    let u = promql_uses(
        r#"sum without (instance, pod) (increase(trigger_relay_sink_events_failed_total{reason=~"a|b", pod=~"$pod"}[5m]) > 0)
           or (up{job=~".*x.*"} unless up offset 5m) / on (sink) histogram_quantile(0.99, sum by (sink, le) (rate(x_bucket[$__rate_interval])))"#,
    );
    let names: Vec<&str> = u.selectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "trigger_relay_sink_events_failed_total",
            "up",
            "up",
            "x_bucket"
        ]
    );
    assert_eq!(
        u.selectors[0].1,
        [
            ("reason".to_string(), "=~".to_string(), "a|b".to_string()),
            ("pod".to_string(), "=~".to_string(), "$pod".to_string())
        ]
    );
    assert_eq!(
        u.grouping,
        ["instance", "le", "pod", "sink"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let mut errors = Vec::new();
    let registered = registered_metrics();
    check_uses(
        "probe",
        r#"sum by (subscription) (rate(trigger_relay_sink_events_sent_total{colour="x"}[1m])) + trigger_relay_renamed_total"#,
        &registered,
        &source_literals(),
        &mut errors,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("no label `colour`"), "{errors:?}");
    assert!(
        errors[1].contains("trigger_relay_renamed_total"),
        "{errors:?}"
    );
}
