//! `isc sync`: make the tenant's HTTP subscriptions match what the relay routes.
//!
//! The desired state is one HTTP subscription per trigger the relay routes (an enabled subscription of the
//! relay names it), calling `<public_url>/events/<triggerId>` with the relay's newest ingress credential,
//! enabled. A subscription is the relay's when its description carries the marker `[trigger-relay:<instance>]`;
//! nothing else on the tenant is read twice, changed or deleted. The plan compares the two: **create** where a
//! routed trigger has none, **update** (PUT) where the URL, credential, filter, name or `enabled` differ,
//! **delete** where the relay no longer routes the trigger or a trigger has more than one, **keep** the rest.
//! Creates and updates go first and deletes last, so a rotation never leaves a trigger without a subscription.
//!
//! The tenant never returns a credential (ISC answers `null`), so the description also carries a fingerprint
//! of the credential (`cred:` and 8 hex digits of an HMAC-SHA256 keyed by the OAuth client secret): a rotated
//! token changes it, and the subscription is updated. Keyed, it lets nobody who can read the tenant's
//! subscriptions test guesses of a weak basic password.
//!
//! Filters (`push_filters`, off by default): when every enabled relay subscription of a trigger has a filter of
//! the form `$[?(P)]` (one filter on the root object, which Jayway evaluates on the payload itself: the result is
//! the payload when `P` holds, else empty), the tenant gets `$[?((P1) || (P2) || …)]`: non-empty exactly when
//! one of the relay's filters matches, so the tenant sends every event some subscription wants and no other. A
//! trigger with an unfiltered subscription, or a filter of another form, gets no tenant filter (the plan says
//! why).

use serde_json::{json, Value};

use super::config::{Credential, IscConfig};
use crate::config::Config;
use crate::filter::Filter;
use crate::model::Secret;

/// One of the relay's subscriptions, as the sync needs it.
#[derive(Debug, Clone)]
pub struct RelaySub {
    pub trigger_id: String,
    pub enabled: bool,
    pub filter: Option<String>,
}

impl RelaySub {
    /// From an ISC `Subscription` JSON (the relay's own API answers).
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            trigger_id: v["triggerId"].as_str()?.to_string(),
            enabled: v["enabled"].as_bool().unwrap_or(true),
            filter: v["filter"]
                .as_str()
                .map(str::to_string)
                .filter(|f| !f.trim().is_empty()),
        })
    }
}

/// The credential the tenant is to use.
#[derive(Clone)]
pub enum TenantAuth {
    Bearer(Secret),
    Basic { user: String, password: Secret },
}

impl TenantAuth {
    /// The newest credential of the kind `[isc] credential` names (the last one listed).
    pub fn from_config(config: &Config, isc: &IscConfig) -> Option<Self> {
        let auth = config.ingress.auth.as_ref()?;
        match isc.credential {
            Credential::Bearer => auth.bearer_tokens.last().cloned().map(Self::Bearer),
            Credential::Basic => auth.basic.last().map(|b| Self::Basic {
                user: b.username.clone(),
                password: b.password.clone(),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Bearer(_) => "BEARER_TOKEN",
            Self::Basic { .. } => "BASIC_AUTH",
        }
    }

    /// First 8 hex digits of an HMAC-SHA256 of the credential keyed by `key` (the OAuth client secret, which
    /// only the sync has): a rotated credential changes it, and whoever can read the tenant's subscriptions
    /// cannot test guesses of a weak basic password against it.
    pub fn fingerprint(&self, key: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
        let mut ctx = ring::hmac::Context::with_key(&key);
        match self {
            Self::Bearer(t) => {
                ctx.update(b"bearer\0");
                ctx.update(t.expose().as_bytes());
            }
            Self::Basic { user, password } => {
                ctx.update(b"basic\0");
                ctx.update(user.as_bytes());
                ctx.update(b"\0");
                ctx.update(password.expose().as_bytes());
            }
        }
        ctx.sign().as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The credential itself (never printed: hidden in every error the client shows).
    pub fn secret(&self) -> &str {
        match self {
            Self::Bearer(t) => t.expose(),
            Self::Basic { password, .. } => password.expose(),
        }
    }
}

/// What one trigger's managed subscription should be.
#[derive(Clone)]
pub struct Desired {
    pub trigger_id: String,
    pub name: String,
    pub description: String,
    pub url: String,
    pub auth: TenantAuth,
    pub filter: Option<String>,
    /// Why no filter is pushed, when `push_filters` is on and none is.
    pub filter_note: Option<String>,
    /// [`TenantAuth::fingerprint`] of `auth`, as the description carries it.
    pub fingerprint: String,
}

impl Desired {
    /// ISC's `SubscriptionPostRequest` / `SubscriptionPutRequest` body.
    pub fn body(&self, with_trigger: bool) -> Value {
        let auth = match &self.auth {
            TenantAuth::Bearer(t) => json!({
                "httpAuthenticationType": "BEARER_TOKEN",
                "bearerTokenAuthConfig": { "bearerToken": t.expose() },
            }),
            TenantAuth::Basic { user, password } => json!({
                "httpAuthenticationType": "BASIC_AUTH",
                "basicAuthConfig": { "userName": user, "password": password.expose() },
            }),
        };
        let mut http = json!({ "url": self.url, "httpDispatchMode": "SYNC" });
        if let (Some(h), Some(a)) = (http.as_object_mut(), auth.as_object()) {
            h.extend(a.clone());
        }
        let mut v = json!({
            "name": self.name,
            "description": self.description,
            "type": "HTTP",
            "httpConfig": http,
            "enabled": true,
        });
        if let Some(m) = v.as_object_mut() {
            if with_trigger {
                m.insert("triggerId".into(), json!(self.trigger_id));
            }
            if let Some(f) = &self.filter {
                m.insert("filter".into(), json!(f));
            }
        }
        v
    }
}

/// The marker in the description of every subscription this relay instance manages.
pub fn marker(instance: &str) -> String {
    format!("[trigger-relay:{instance}]")
}

/// Whether the tenant's subscription `s` is this instance's: HTTP, with an id, the marker in its description.
/// The one rule both commands use; anything else on the tenant is never changed, deleted or tested.
pub fn is_managed(s: &Value, instance: &str) -> bool {
    s["type"].as_str() == Some("HTTP")
        && s["id"].as_str().is_some_and(|i| !i.is_empty())
        && s["description"]
            .as_str()
            .is_some_and(|d| d.contains(&marker(instance)))
}

/// What the sync does to one subscription.
#[derive(Clone)]
pub enum Action {
    Create(Desired),
    Update {
        id: String,
        desired: Desired,
        why: Vec<String>,
    },
    Delete {
        id: String,
        trigger_id: String,
        why: String,
    },
    Keep {
        id: String,
        trigger_id: String,
        note: Option<String>,
    },
}

impl Action {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Update { .. } => "update",
            Self::Delete { .. } => "delete",
            Self::Keep { .. } => "keep",
        }
    }

    pub fn trigger_id(&self) -> &str {
        match self {
            Self::Create(d) | Self::Update { desired: d, .. } => &d.trigger_id,
            Self::Delete { trigger_id, .. } | Self::Keep { trigger_id, .. } => trigger_id,
        }
    }

    fn id(&self) -> &str {
        match self {
            Self::Create(_) => "-",
            Self::Update { id, .. } | Self::Delete { id, .. } | Self::Keep { id, .. } => id,
        }
    }

    fn why(&self) -> String {
        match self {
            Self::Create(d) => d
                .filter_note
                .clone()
                .unwrap_or_else(|| "the relay routes it; no managed subscription yet".into()),
            Self::Update { why, .. } => why.join("; "),
            Self::Delete { why, .. } => why.clone(),
            Self::Keep { note, .. } => note.clone().unwrap_or_else(|| "in step".into()),
        }
    }
}

/// The plan: actions in the order they are applied, and what is left alone.
pub struct Plan {
    pub actions: Vec<Action>,
    /// Subscriptions on the tenant that this relay instance does not manage (never touched).
    pub unmanaged: usize,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| !matches!(a, Action::Keep { .. }))
            .count()
    }

    /// The plan as a table (one row per action; never a credential).
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .actions
            .iter()
            .map(|a| {
                [
                    a.trigger_id().to_string(),
                    a.verb().to_string(),
                    a.id().to_string(),
                    a.why(),
                ]
            })
            .collect();
        let mut out = super::table(&["TRIGGER", "ACTION", "SUBSCRIPTION", "WHY"], &rows);
        out.push_str(&format!(
            "{} to create, {} to update, {} to delete, {} in step; {} unmanaged subscription(s) left alone\n",
            self.count("create"),
            self.count("update"),
            self.count("delete"),
            self.count("keep"),
            self.unmanaged
        ));
        out
    }

    fn count(&self, verb: &str) -> usize {
        self.actions.iter().filter(|a| a.verb() == verb).count()
    }
}

/// The triggers the relay routes (an enabled subscription names them), sorted, once each.
pub fn routed_triggers(routes: &[RelaySub]) -> Vec<&str> {
    let mut triggers: Vec<&str> = routes
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.trigger_id.as_str())
        .collect();
    triggers.sort_unstable();
    triggers.dedup();
    triggers
}

/// The subscription each routed trigger should have.
pub fn desired(routes: &[RelaySub], isc: &IscConfig, auth: &TenantAuth) -> Vec<Desired> {
    let triggers = routed_triggers(routes);
    let public = isc.public_url.trim_end_matches('/');
    let fingerprint = auth.fingerprint(isc.client_secret.expose());
    triggers
        .into_iter()
        .map(|t| {
            let (filter, filter_note) = if isc.push_filters {
                match joined_filter(routes.iter().filter(|s| s.enabled && s.trigger_id == t)) {
                    Ok(f) => (Some(f), None),
                    Err(why) => (None, Some(format!("no tenant filter: {why}"))),
                }
            } else {
                (None, None)
            };
            Desired {
                trigger_id: t.to_string(),
                name: format!("trigger-relay {t}"),
                description: format!(
                    "Sends {t} to trigger-relay; managed by `trigger-relay isc sync`, changes here are overwritten. {} cred:{fingerprint}",
                    marker(&isc.instance)
                ),
                url: format!("{public}/events/{t}"),
                auth: auth.clone(),
                filter,
                filter_note,
                fingerprint: fingerprint.clone(),
            }
        })
        .collect()
}

/// The one tenant filter equivalent to the OR of `subs`' filters, or why there is none (module doc).
pub fn joined_filter<'a>(subs: impl Iterator<Item = &'a RelaySub>) -> Result<String, String> {
    let mut preds: Vec<String> = Vec::new();
    for s in subs {
        let Some(f) = &s.filter else {
            return Err(
                "a relay subscription of this trigger has no filter (it wants every event)".into(),
            );
        };
        let compiled =
            Filter::compile(f).map_err(|e| format!("a relay filter does not compile: {e}"))?;
        let p = compiled
            .root_predicate()
            .ok_or_else(|| format!("`{f}` is not of the form $[?(…)] (one filter on the payload), so no OR of it is exact"))?;
        if !preds.iter().any(|q| q == p) {
            preds.push(p.to_string());
        }
    }
    let joined = match preds.as_slice() {
        [] => return Err("no enabled relay subscription".into()),
        [one] => format!("$[?({one})]"),
        many => format!(
            "$[?({})]",
            many.iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(" || ")
        ),
    };
    Filter::compile(&joined).map_err(|e| format!("the joined filter does not compile ({e})"))?;
    Ok(joined)
}

/// Compare the tenant's subscriptions with what should be.
pub fn plan(want: &[Desired], tenant: &[Value], instance: &str) -> Plan {
    let managed: Vec<&Value> = tenant.iter().filter(|s| is_managed(s, instance)).collect();
    let unmanaged = tenant.len() - managed.len();
    let mut first = Vec::new();
    let mut deletes = Vec::new();
    for d in want {
        let mut mine = managed
            .iter()
            .filter(|s| s["triggerId"].as_str() == Some(d.trigger_id.as_str()));
        match mine.next() {
            None => first.push(Action::Create(d.clone())),
            Some(s) => {
                let id = s["id"].as_str().unwrap_or_default().to_string();
                let why = differences(d, s);
                if why.is_empty() {
                    first.push(Action::Keep {
                        id,
                        trigger_id: d.trigger_id.clone(),
                        note: d.filter_note.clone(),
                    });
                } else {
                    first.push(Action::Update {
                        id,
                        desired: d.clone(),
                        why,
                    });
                }
            }
        }
        for extra in mine {
            deletes.push(Action::Delete {
                id: extra["id"].as_str().unwrap_or_default().to_string(),
                trigger_id: d.trigger_id.clone(),
                why:
                    "a second managed subscription of the trigger (it would send each event twice)"
                        .into(),
            });
        }
    }
    for s in &managed {
        let t = s["triggerId"].as_str().unwrap_or_default();
        if !want.iter().any(|d| d.trigger_id == t) {
            deletes.push(Action::Delete {
                id: s["id"].as_str().unwrap_or_default().to_string(),
                trigger_id: t.to_string(),
                why: "the relay no longer routes this trigger".into(),
            });
        }
    }
    first.extend(deletes);
    Plan {
        actions: first,
        unmanaged,
    }
}

/// How the tenant's subscription `s` differs from `d`, in words (empty: in step).
fn differences(d: &Desired, s: &Value) -> Vec<String> {
    let mut why = Vec::new();
    let http = &s["httpConfig"];
    if http["url"].as_str() != Some(d.url.as_str()) {
        why.push(format!(
            "url {} → {}",
            http["url"].as_str().unwrap_or("(none)"),
            d.url
        ));
    }
    if http["httpAuthenticationType"].as_str() != Some(d.auth.kind()) {
        why.push(format!(
            "authentication {} → {}",
            http["httpAuthenticationType"].as_str().unwrap_or("(none)"),
            d.auth.kind()
        ));
    } else if !s["description"]
        .as_str()
        .is_some_and(|x| x.contains(&format!("cred:{}", d.fingerprint)))
    {
        why.push("credential rotated".into());
    }
    if s["enabled"].as_bool() == Some(false) {
        why.push("disabled on the tenant".into());
    }
    let filter = s["filter"].as_str().filter(|f| !f.is_empty());
    if filter != d.filter.as_deref() {
        why.push(match &d.filter {
            Some(_) => "tenant filter set".into(),
            None => "tenant filter removed".into(),
        });
    }
    if s["name"].as_str() != Some(d.name.as_str()) {
        why.push("name".into());
    }
    if why.is_empty() && s["description"].as_str() != Some(d.description.as_str()) {
        why.push("description".into());
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(filter: Option<&str>) -> RelaySub {
        RelaySub {
            trigger_id: "idn:identity-created".into(),
            enabled: true,
            filter: filter.map(str::to_string),
        }
    }

    /// `filters` joined: `Ok(expected)` or `Err(a part of why not)`.
    fn check(filters: &[Option<&str>], expected: Result<&str, &str>) {
        let subs: Vec<RelaySub> = filters.iter().map(|f| sub(*f)).collect();
        match (joined_filter(subs.iter()), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{filters:?}"),
            (Err(why), Err(part)) => assert!(why.contains(part), "{filters:?}: {why}"),
            (got, want) => panic!("{filters:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn tenant_filters_are_joined_only_where_exact() {
        check(
            &[Some("$[?(@.attributes.department == \"Sales\")]")],
            Ok("$[?(@.attributes.department == \"Sales\")]"),
        );
        check(
            &[
                Some("$[?(@.a == 1)]"),
                Some("$[?(@.b =~ /x.*/)]"),
                Some("$[?(@.a == 1)]"),
            ],
            Ok("$[?((@.a == 1) || (@.b =~ /x.*/))]"),
        );
        check(&[Some("$[?(@.a == 1)]"), None], Err("has no filter"));
        check(
            &[Some("$.changes[?(@.attribute == \"email\")]")],
            Err("not of the form"),
        );
        check(&[Some("$[?(@.a)][?(@.b)]")], Err("not of the form"));
        check(&[Some("$[?(@.a == ')]')]")], Ok("$[?(@.a == ')]')]"));
        check(&[Some("$[?(@.a ==)]")], Err("does not compile"));
    }

    /// The joined filter matches exactly the payloads one of its parts matches (the catalog's examples, and
    /// variations of one).
    #[test]
    fn a_joined_filter_matches_what_one_of_its_parts_matches() {
        let sets: &[&[&str]] = &[
            &[
                "$[?(@.identity.name == \"john.doe\")]",
                "$[?(@.attributes.department == \"Sales\")]",
            ],
            &[
                "$[?(@._metadata.triggerId =~ /idn:identity.*/)]",
                "$[?(@.source.name in [\"HR\", \"AD\"])]",
            ],
            &[
                "$[?(!(@.identity))]",
                "$[?(@.identity.type == \"IDENTITY\" && @.attributes)]",
            ],
            &[
                "$[?($.identity.name contains \"john\")]",
                "$[?(@.missing.deep.path > 3)]",
            ],
        ];
        let catalog = crate::catalog::Catalog::builtin();
        let mut docs: Vec<serde_json::Value> = catalog
            .all()
            .iter()
            .filter_map(|t| catalog.example_invocation(&t.id, "id"))
            .collect();
        docs.push(json!({"attributes": {"department": "Sales"}}));
        docs.push(json!({"identity": {"name": "john.doe", "type": "IDENTITY"}, "attributes": {}}));
        docs.push(json!({"source": {"name": "AD"}}));
        for set in sets {
            let subs: Vec<RelaySub> = set.iter().map(|f| sub(Some(f))).collect();
            let joined = Filter::compile(&joined_filter(subs.iter()).unwrap()).unwrap();
            let parts: Vec<Filter> = set.iter().map(|f| Filter::compile(f).unwrap()).collect();
            let mut matched = 0;
            for d in &docs {
                let any = parts.iter().any(|p| p.matches(d));
                matched += usize::from(any);
                assert_eq!(joined.matches(d), any, "{set:?} on {d}");
            }
            assert!(
                matched > 0,
                "{set:?} matches no document: the check would say nothing"
            );
        }
    }

    fn isc(push_filters: bool) -> IscConfig {
        toml::from_str::<IscConfig>(&format!(
            "tenant_url = \"https://t.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             public_url = \"https://relay.example/\"\npush_filters = {push_filters}\n"
        ))
        .unwrap()
    }

    /// The plan for relay `routes` against `tenant`: `(trigger, verb, why contains)` per action, in order.
    fn check_plan(
        routes: &[RelaySub],
        tenant: &[Value],
        auth: &TenantAuth,
        want: &[(&str, &str, &str)],
    ) {
        let want_state = desired(routes, &isc(false), auth);
        let plan = plan(&want_state, tenant, "default");
        let got: Vec<(String, &str, String)> = plan
            .actions
            .iter()
            .map(|a| (a.trigger_id().to_string(), a.verb(), a.why()))
            .collect();
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((t, v, why), (wt, wv, wwhy)) in got.iter().zip(want) {
            assert_eq!((t.as_str(), *v), (*wt, *wv), "{got:?}");
            assert!(why.contains(wwhy), "{t} {v}: {why:?} lacks {wwhy:?}");
        }
    }

    #[test]
    fn the_plan_creates_updates_keeps_and_deletes_only_its_own() {
        let basic = TenantAuth::Basic {
            user: "isc".into(),
            password: Secret::new("pw-0123456789"),
        };
        let routes = [
            RelaySub {
                trigger_id: "idn:a".into(),
                enabled: true,
                filter: None,
            },
            RelaySub {
                trigger_id: "idn:b".into(),
                enabled: true,
                filter: None,
            },
            RelaySub {
                trigger_id: "idn:c".into(),
                enabled: true,
                filter: None,
            },
            RelaySub {
                trigger_id: "idn:off".into(),
                enabled: false,
                filter: None,
            },
        ];
        let want = desired(&routes, &isc(false), &basic);
        let body = want[0].body(true);
        assert_eq!(body["httpConfig"]["httpAuthenticationType"], "BASIC_AUTH");
        assert_eq!(
            body["httpConfig"]["basicAuthConfig"],
            json!({"userName": "isc", "password": "pw-0123456789"})
        );
        assert_eq!(
            body["httpConfig"]["url"],
            "https://relay.example/events/idn:a"
        );
        let managed = |id: &str, t: &str, d: &Desired| {
            let mut v = d.body(true);
            v["id"] = json!(id);
            v["triggerId"] = json!(t);
            v["httpConfig"]["basicAuthConfig"]["password"] = Value::Null;
            v
        };
        let keep = managed("1", "idn:b", &want[1]);
        let mut rotated = managed("2", "idn:c", &want[2]);
        rotated["description"] = json!(want[2]
            .description
            .replace(&want[2].fingerprint, "00000000"));
        let twin = managed("3", "idn:c", &want[2]);
        let gone = managed("4", "idn:old", &want[2]);
        let mut other_instance = managed("5", "idn:old", &want[2]);
        other_instance["description"] = json!("[trigger-relay:staging]");
        let mut not_http = managed("6", "idn:a", &want[0]);
        not_http["type"] = json!("EVENTBRIDGE");
        check_plan(
            &routes,
            &[keep, rotated, twin, gone, other_instance, not_http],
            &basic,
            &[
                ("idn:a", "create", "no managed subscription"),
                ("idn:b", "keep", "in step"),
                ("idn:c", "update", "credential rotated"),
                ("idn:c", "delete", "second managed subscription"),
                ("idn:old", "delete", "no longer routes"),
            ],
        );
    }
}
