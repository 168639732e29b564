//! The whole-config checks: every error found, each with its key path. Each sink kind checks its own tables and
//! its subscriptions' config (`crate::sinks::SinkKind`); `[api]` is checked in `api.rs`.

use std::collections::HashSet;

use super::*;
use crate::catalog::TriggerType;
use crate::model::SubscriptionType;

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Errors(Vec::new());
        if let Some(m) = self
            .cloudevents
            .source
            .as_deref()
            .and_then(crate::envelope::check_source)
        {
            errors.push("cloudevents.source", m);
        }
        for (key, m) in self.tracing.check() {
            errors.push(format!("tracing.{key}"), m);
        }
        if let Some(isc) = &self.isc {
            for (key, m) in isc.check(self.ingress.auth.as_ref()) {
                errors.push(format!("isc.{key}"), m);
            }
        }
        let d = &self.delivery;
        if d.ack_timeout_ms == 0 || d.ack_timeout_ms >= ISC_RESPONSE_LIMIT_MS {
            errors.push(
                "delivery.ack_timeout_ms",
                format!(
                    "must be between 1 and {} (ISC stops waiting for an answer after 10 s)",
                    ISC_RESPONSE_LIMIT_MS - 1
                ),
            );
        }
        if d.delivery_timeout_ms < d.ack_timeout_ms {
            errors.push(
                "delivery.delivery_timeout_ms",
                "must be at least delivery.ack_timeout_ms",
            );
        }
        if d.shutdown_grace_ms == 0 {
            errors.push("delivery.shutdown_grace_ms", "must be greater than 0");
        }
        if self.ingress.max_body_bytes == 0 || self.ingress.max_body_bytes > 64 * 1024 * 1024 {
            errors.push(
                "ingress.max_body_bytes",
                "must be between 1 and 67108864 (64 MiB)",
            );
        }
        if self.ingress.body_read_timeout_ms == 0 {
            errors.push("ingress.body_read_timeout_ms", "must be greater than 0");
        }
        for (name, limits, tls) in [
            ("ingress", &self.ingress.limits, &self.ingress.tls),
            ("admin", &self.admin.limits, &self.admin.tls),
        ] {
            validate_listener(name, limits, tls.as_ref(), &mut errors);
        }
        let needed = self
            .ingress
            .body_read_timeout_ms
            .saturating_add(d.ack_timeout_ms);
        if self.ingress.limits.request_timeout_ms < needed {
            errors.push(
                "ingress.limits.request_timeout_ms",
                format!("must be at least ingress.body_read_timeout_ms + delivery.ack_timeout_ms ({needed})"),
            );
        }
        let rl = &self.ingress.rate_limit;
        if rl.per_ip_requests == Some(0) {
            errors.push(
                "ingress.rate_limit.per_ip_requests",
                "must be greater than 0 (leave it out to turn the limit off)",
            );
        }
        if rl.per_credential_requests == Some(0) {
            errors.push(
                "ingress.rate_limit.per_credential_requests",
                "must be greater than 0 (leave it out to turn the limit off)",
            );
        } else if rl.per_credential_requests.is_some()
            && self.ingress.auth.as_ref().is_some_and(|a| a.none)
        {
            errors.push(
                "ingress.rate_limit.per_credential_requests",
                "needs credentials: with `ingress.auth.none = true` there is none to count requests by",
            );
        }
        if rl.window_ms == 0 || rl.window_ms > MAX_RATE_WINDOW_MS {
            errors.push(
                "ingress.rate_limit.window_ms",
                format!("must be between 1 and {MAX_RATE_WINDOW_MS} (an hour)"),
            );
        }
        if rl.max_tracked_keys == 0 || rl.max_tracked_keys > MAX_TRACKED_KEYS {
            errors.push(
                "ingress.rate_limit.max_tracked_keys",
                format!("must be between 1 and {MAX_TRACKED_KEYS}"),
            );
        }
        if self.ingress.listen == self.admin.listen && self.ingress.listen.port() != 0 {
            errors.push("admin.listen", "must differ from ingress.listen");
        }
        match &self.ingress.auth {
            None => errors.push(
                "ingress.auth",
                "missing: list the credentials ISC sends (`basic = [{ username, password }]`, \
                 `bearer_tokens = [...]`), or write `none = true` to accept unauthenticated requests",
            ),
            Some(a) => {
                let has_creds = !a.basic.is_empty() || !a.bearer_tokens.is_empty();
                if a.none && has_creds {
                    errors.push("ingress.auth.none", "`none = true` cannot be combined with credentials");
                }
                if !a.none && !has_creds {
                    errors.push(
                        "ingress.auth",
                        "no credentials: add `basic` or `bearer_tokens`, or write `none = true`",
                    );
                }
                for (i, b) in a.basic.iter().enumerate() {
                    if b.username.is_empty() || b.username.contains(':') {
                        errors.push(
                            format!("ingress.auth.basic[{i}].username"),
                            "must be non-empty and contain no ':'",
                        );
                    }
                    if b.password.expose().is_empty() {
                        errors.push(format!("ingress.auth.basic[{i}].password"), "must not be empty");
                    }
                }
                for (i, t) in a.bearer_tokens.iter().enumerate() {
                    if t.expose().is_empty() || t.expose().chars().any(|c| c.is_whitespace()) {
                        errors.push(
                            format!("ingress.auth.bearer_tokens[{i}]"),
                            "must be non-empty and contain no white space",
                        );
                    } else if t.expose().len() < MIN_TOKEN_LEN {
                        errors.push(
                            format!("ingress.auth.bearer_tokens[{i}]"),
                            format!("must be at least {MIN_TOKEN_LEN} bytes (generate one with `openssl rand -hex 32`)"),
                        );
                    }
                }
            }
        }
        for kind in crate::sinks::KINDS {
            kind.check_tables(&self.sink_settings(), &mut errors);
        }
        // An event that can never fit in a queue would be answered 503 forever.
        let max_body = self.ingress.max_body_bytes;
        for kind in crate::sinks::KINDS {
            let overhead = kind.event_overhead_bytes() as u64;
            let need = match overhead {
                0 => format!("ingress.max_body_bytes ({max_body})"),
                o => format!(
                    "{} (ingress.max_body_bytes {max_body} + {o}, what each event costs this kind besides its body)",
                    max_body + o
                ),
            };
            for (path, q) in kind.queues(&self.sink_settings()) {
                if q.max_bytes < max_body + overhead {
                    errors.push(
                        format!("{path}.max_bytes"),
                        format!("must be at least {need}, or the largest events never fit"),
                    );
                }
            }
        }
        api::check(self, &mut errors);
        let catalog = self.catalog_checked(&mut errors);
        let mut per_trigger: std::collections::HashMap<&str, usize> = Default::default();
        for s in &self.subscriptions {
            *per_trigger.entry(s.trigger_id.as_str()).or_default() += 1;
        }
        for (t, n) in per_trigger {
            if n > MAX_SUBSCRIPTIONS_PER_TRIGGER {
                errors.push(
                    "subscriptions",
                    format!("{n} subscriptions for `{t}`: ISC allows at most {MAX_SUBSCRIPTIONS_PER_TRIGGER} per trigger"),
                );
            }
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, s) in self.subscriptions.iter().enumerate() {
            let path = format!("subscriptions[{i}]");
            self.validate_subscription(&path, s, &catalog, &mut errors);
            if !names.insert(s.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("`{}` is used by another subscription", s.name),
                );
            }
            // A derived id repeats only when the name does, which is reported above.
            if !ids.insert(s.effective_id()) && s.id.is_some() {
                errors.push(format!("{path}.id"), "is used by another subscription");
            }
        }
        if errors.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors.0))
        }
    }

    /// Check one subscription as the config would (the API's POST, PUT and PATCH); paths start at `path`.
    pub fn check_subscription(&self, path: &str, s: &Subscription) -> Vec<ConfigError> {
        let mut errors = Errors(Vec::new());
        let catalog = self.catalog_checked(&mut errors);
        self.validate_subscription(path, s, &catalog, &mut errors);
        errors.0
    }

    fn validate_subscription(
        &self,
        path: &str,
        s: &Subscription,
        catalog: &Catalog,
        errors: &mut Errors,
    ) {
        if s.name.trim().is_empty() {
            errors.push(format!("{path}.name"), "must not be empty");
        }
        let wraps = crate::sinks::kind_of(s.kind).is_some_and(|k| k.wraps_cloudevents());
        for (key, m) in crate::envelope::check(s, wraps) {
            errors.push(format!("{path}.{key}"), m);
        }
        if !iso8601_duration(&s.response_deadline) {
            errors.push(
                format!("{path}.responseDeadline"),
                format!(
                    "`{}` is not an ISO-8601 duration such as PT1H",
                    s.response_deadline
                ),
            );
        }
        match catalog.get(&s.trigger_id) {
            None => errors.push(
                format!("{path}.triggerId"),
                format!(
                    "unknown trigger `{}`: use an id from `GET /beta/triggers` or add it under [[catalog.triggers]]",
                    s.trigger_id
                ),
            ),
            Some(t) if t.kind == TriggerType::RequestResponse => errors.push(
                format!("{path}.triggerId"),
                format!(
                    "`{}` is a REQUEST_RESPONSE trigger; trigger-relay relays FIRE_AND_FORGET triggers only",
                    s.trigger_id
                ),
            ),
            Some(_) => {}
        }
        if let Some(f) = &s.filter {
            if let Err(e) = crate::filter::Filter::compile(f) {
                errors.push(
                    format!("{path}.filter"),
                    format!("invalid JSONPath filter: {e}"),
                );
            }
        }
        // A config field that does not go with the type: the relay's kinds, and the types that run inside ISC.
        let isc_only = [
            (
                "inlineConfig",
                s.inline_config.is_some(),
                SubscriptionType::Inline,
            ),
            (
                "scriptConfig",
                s.script_config.is_some(),
                SubscriptionType::Script,
            ),
            (
                "workflowConfig",
                s.workflow_config.is_some(),
                SubscriptionType::Workflow,
            ),
        ];
        let configs = crate::sinks::KINDS
            .iter()
            .filter_map(|k| {
                k.config_field(s)
                    .map(|(key, present)| (key, present, k.subscription_type()))
            })
            .chain(isc_only);
        for (key, present, kind) in configs {
            if present && kind != s.kind {
                errors.push(
                    format!("{path}.{key}"),
                    format!("does not go with type {}", s.kind.as_str()),
                );
            }
        }
        let kind = crate::sinks::kind_of(s.kind);
        if let Some(dl) = &s.dead_letter {
            crate::sinks::dead_letter::check(
                &self.sinks,
                &format!("{path}.deadLetter"),
                s,
                dl,
                errors,
            );
            if kind.is_some_and(|k| !k.can_fail()) {
                errors.push(
                    format!("{path}.deadLetter"),
                    format!(
                        "{} subscriptions cannot fail; remove deadLetter",
                        s.kind.as_str()
                    ),
                );
            }
        }
        match kind {
            Some(k) => k.check_subscription(&self.sink_settings(), path, s, errors),
            None => errors.push(
                format!("{path}.type"),
                format!(
                    "type {} runs inside ISC and cannot be relayed; use HTTP, EVENTBRIDGE, KAFKA, NATS or STDOUT",
                    s.kind.as_str()
                ),
            ),
        }
    }
}

fn validate_listener(name: &str, l: &ListenerLimits, tls: Option<&TlsConfig>, errors: &mut Errors) {
    if l.max_connections == 0 || l.max_connections > 1_000_000 {
        errors.push(
            format!("{name}.limits.max_connections"),
            "must be between 1 and 1000000",
        );
    }
    if l.max_concurrent_streams == 0 || l.max_concurrent_streams > 1000 {
        errors.push(
            format!("{name}.limits.max_concurrent_streams"),
            "must be between 1 and 1000",
        );
    }
    // hyper's HTTP/1.1 read buffer cannot be smaller than 8 KiB.
    if !(8192..=1024 * 1024).contains(&l.max_header_bytes) {
        errors.push(
            format!("{name}.limits.max_header_bytes"),
            "must be between 8192 and 1048576",
        );
    }
    for (key, v) in [
        ("header_read_timeout_ms", l.header_read_timeout_ms),
        ("idle_timeout_ms", l.idle_timeout_ms),
        ("request_timeout_ms", l.request_timeout_ms),
    ] {
        if v == 0 {
            errors.push(format!("{name}.limits.{key}"), "must be greater than 0");
        }
    }
    if let Some(t) = tls {
        for (key, p) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
            if p.as_os_str().is_empty() {
                errors.push(format!("{name}.tls.{key}"), "must name a PEM file");
            }
        }
    }
}

/// ISO-8601 durations as ISC takes them: `P[nY][nM][nW][nD][T[nH][nM][n[.n]S]]`, at least one part.
pub fn iso8601_duration(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    fn parts(s: &str, units: &[char], fraction_last: bool) -> Option<usize> {
        let mut n = 0;
        let mut number = String::new();
        let mut next_unit = 0;
        for c in s.chars() {
            if c.is_ascii_digit() || (c == '.' && fraction_last && !number.is_empty()) {
                number.push(c);
                continue;
            }
            let at = units[next_unit..].iter().position(|u| *u == c)? + next_unit;
            if number.is_empty() || (number.contains('.') && at != units.len() - 1) {
                return None;
            }
            number.clear();
            next_unit = at + 1;
            n += 1;
        }
        number.is_empty().then_some(n)
    }
    let Some(d) = parts(date, &['Y', 'M', 'W', 'D'], false) else {
        return false;
    };
    match time {
        None => d > 0,
        Some(t) => matches!(parts(t, &['H', 'M', 'S'], true), Some(n) if n > 0),
    }
}
