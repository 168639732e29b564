//! `/trigger-subscriptions`: list, read, create, replace (PUT), patch and delete, each write a compare-and-swap
//! on its trigger's record in the [`super::store`] that answers once this replica routes it; and the rules a
//! write keeps (ISC's 50 per trigger, names unique per trigger, `If-Match`, write-only secrets that stay with
//! their destination).

use std::collections::HashMap;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::collection::Spec;
use super::store::{self, StoreError};
use super::{apply_patch, bad_request, json_response, not_found, policy, ApiState, Resp};
use crate::config::{Config, MAX_SUBSCRIPTIONS_PER_TRIGGER};
use crate::error::ApiError;
use crate::model::Subscription;

impl ApiState {
    /// The API's view of a subscription: ISC's shape, `triggerName` from the catalog, secrets `null`.
    fn dto(&self, s: &Subscription) -> Value {
        let mut v = document(s);
        if let Value::Object(m) = &mut v {
            m.insert(
                "triggerName".into(),
                self.catalog
                    .get(&s.trigger_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default()
                    .into(),
            );
        }
        v
    }

    pub(super) fn config_subs(&self) -> &[Subscription] {
        &self.config.subscriptions
    }

    pub(super) fn all(&self) -> Vec<Subscription> {
        let mut all = self.config_subs().to_vec();
        all.extend(self.store.view().subscriptions().cloned());
        all
    }

    /// A subscription by id, and whether it is the config file's (read-only).
    fn find(&self, id: &str) -> Option<(Subscription, bool)> {
        if let Some(s) = self.config_subs().iter().find(|s| s.effective_id() == id) {
            return Some((s.clone(), true));
        }
        self.store
            .view()
            .subscriptions()
            .find(|s| s.effective_id() == id)
            .map(|s| (s.clone(), false))
    }

    /// On ISC's mounts only ISC's subscription types are listed: SailPoint's SDKs refuse a list holding any other
    /// `type` (their models' enum), so a KAFKA route would break every SDK user's list call. The relay's mount
    /// (`/relay/v1/trigger-subscriptions`) lists them all.
    pub(super) fn list_subscriptions(
        &self,
        query: &HashMap<String, String>,
        relay_types: bool,
    ) -> Result<Resp, ApiError> {
        let items = self
            .all()
            .iter()
            .filter(|s| relay_types || s.kind.is_isc())
            .map(|s| self.dto(s))
            .collect();
        Self::list(
            query,
            &Spec {
                filters: &[
                    ("id", &["eq", "in"]),
                    ("triggerId", &["eq"]),
                    ("type", &["eq", "le"]),
                ],
                sorters: &["triggerId", "triggerName"],
            },
            items,
        )
    }

    pub(super) fn get(&self, id: &str) -> Result<Resp, ApiError> {
        let (s, _) = self.find(id).ok_or_else(|| not_found(id))?;
        Ok(self.answer(StatusCode::OK, &s))
    }

    /// A subscription answer: the DTO and its `ETag`.
    fn answer(&self, status: StatusCode, s: &Subscription) -> Resp {
        let mut r = json_response(status, &self.dto(s));
        if let Ok(v) = HeaderValue::from_str(&store::etag(s)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r
    }

    /// `s` may join `stored` (the API's subscriptions of its trigger, without `s`): ISC's limit of subscriptions
    /// per trigger, and a name not yet used on the trigger.
    fn check_room(&self, s: &Subscription, stored: &[Subscription]) -> Result<(), ApiError> {
        let id = s.effective_id();
        let others: Vec<&Subscription> = self
            .config_subs()
            .iter()
            .chain(stored)
            .filter(|o| o.trigger_id == s.trigger_id && o.effective_id() != id)
            .collect();
        if others.len() >= MAX_SUBSCRIPTIONS_PER_TRIGGER {
            return Err(bad_request(format!(
                "`{}` already has {} subscriptions",
                s.trigger_id,
                others.len()
            ))
            .cause(format!(
                "ISC allows at most {MAX_SUBSCRIPTIONS_PER_TRIGGER} subscriptions per FIRE_AND_FORGET trigger"
            )));
        }
        if let Some(o) = others.iter().find(|o| o.name == s.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "`{}` already has a subscription named `{}`",
                    s.trigger_id, s.name
                ),
            )
            .cause(format!(
                "subscription `{}` has that name: choose another",
                o.effective_id()
            )));
        }
        Ok(())
    }

    /// Change the API's subscriptions of `trigger` by compare-and-swap on its record: `change` gets them fresh
    /// from the store (maybe more than once, after a conflict) and says which subscription the answer shows and
    /// whether it must be routable. Answers once this replica's routing table has the change.
    async fn commit(
        &self,
        trigger: &str,
        mut change: impl FnMut(&mut Vec<Subscription>) -> Result<(Subscription, bool), ApiError>,
    ) -> Result<Subscription, ApiError> {
        /// Rounds lost to other replicas before the write gives up with 409 (each round is one read and one
        /// write, a few milliseconds; with a handful of replicas writing one trigger at once this is ample).
        const ATTEMPTS: u32 = 32;
        let _turn = self.writes.lock().await;
        for attempt in 0..ATTEMPTS {
            let (expected, mut subs) = match self.store.read(trigger).await.map_err(store_error)? {
                Some(r) => (Some(r.revision), r.subscriptions),
                None => (None, Vec::new()),
            };
            let (changed, route) = change(&mut subs)?;
            if route {
                self.check_route(&changed).await?;
            }
            match self.store.write(trigger, expected, &subs).await {
                Ok(revision) => {
                    self.wait_routed(revision).await;
                    return Ok(changed);
                }
                Err(StoreError::Conflict(_)) => {
                    self.store_conflicts.inc();
                    // A little jitter, so two replicas that collided do not collide again in step.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8)
                        + u64::from(attempt.min(8));
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the subscriptions of `{trigger}` kept changing while this write was tried"),
        )
        .cause(format!(
            "{ATTEMPTS} concurrent writes from other replicas came first: send it again"
        )))
    }

    /// The subscription can be routed on this replica (its sink, cluster, connection exist).
    async fn check_route(&self, s: &Subscription) -> Result<(), ApiError> {
        let guard = self.builder.lock().await;
        let Some(builder) = guard.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down",
            ));
        };
        builder
            .route(s)
            .await
            .map(|_| ())
            .map_err(|m| bad_request("the subscription cannot be routed").cause(m))
    }

    /// The destination exists (the topic, the stream, the bus): asked of the broker before a write, so a typo is a
    /// 400 now rather than every event lost later. Disabled subscriptions are not checked (they may be created
    /// before their destination), and only a definite "missing" refuses.
    async fn check_destination(&self, s: &Subscription) -> Result<(), ApiError> {
        if !s.enabled {
            return Ok(());
        }
        let guard = self.builder.lock().await;
        let Some(builder) = guard.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down",
            ));
        };
        match builder.check_destination(s).await {
            Ok(()) => Ok(()),
            Err(crate::routes::Destination::Missing(m)) => Err(bad_request(
                "the subscription's destination does not exist or may not be used",
            )
            .cause(m)),
            // A check that cannot be made (the broker or AWS does not answer now) does not block the write: the
            // destination may well exist, and deliveries report what happens.
            Err(crate::routes::Destination::Unreachable(m)) => {
                tracing::warn!(subscription = %s.name, problem = %m, "the subscription's destination could not be checked; stored anyway");
                Ok(())
            }
        }
    }

    /// Read-your-writes: wait (a bounded time) until the routing table reflects `revision`.
    async fn wait_routed(&self, revision: u64) {
        let mut routed = self.routed.clone();
        let wait = routed.wait_for(|r| *r >= revision);
        if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            tracing::warn!(revision, "a stored change was not routed within 10 s; it is stored and will route when this replica applies it");
        }
    }

    fn read_only(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("subscription `{id}` is managed by the relay's config file"),
        )
        .cause("change it in the config file and restart; the API manages only the subscriptions it created")
    }

    pub(super) async fn create(&self, body: &[u8]) -> Result<Resp, ApiError> {
        let mut s = parse(body)?;
        s.id = Some(uuid::Uuid::new_v4().to_string());
        validate(&self.config, &s)?;
        self.check_destination(&s).await?;
        let trigger = s.trigger_id.clone();
        let created = self
            .commit(&trigger, |stored| {
                self.check_room(&s, stored)?;
                stored.push(s.clone());
                Ok((s.clone(), true))
            })
            .await?;
        Ok(self.answer(StatusCode::CREATED, &created))
    }

    /// Replace subscription `id` with what `make` builds from its current version (fresh from the store, so a
    /// PATCH applies to what is stored now), if `If-Match` still matches.
    async fn save(
        &self,
        id: &str,
        if_match: Option<&str>,
        make: impl Fn(&Subscription) -> Result<Subscription, ApiError>,
    ) -> Result<Resp, ApiError> {
        let (old, read_only) = self.find(id).ok_or_else(|| not_found(id))?;
        if read_only {
            return Err(Self::read_only(id));
        }
        // Checked on what the change makes of the version this replica holds (the write itself applies it to
        // the stored one, which names the same destination unless a concurrent write moved it).
        self.check_destination(&make(&old)?).await?;
        let saved = self
            .commit(&old.trigger_id, |stored| {
                let i = stored
                    .iter()
                    .position(|s| s.effective_id() == id)
                    .ok_or_else(|| not_found(id))?;
                check_if_match(if_match, &stored[i])?;
                let new = make(&stored[i])?;
                let rest: Vec<Subscription> = stored
                    .iter()
                    .filter(|s| s.effective_id() != id)
                    .cloned()
                    .collect();
                self.check_room(&new, &rest)?;
                stored[i] = new.clone();
                Ok((new, true))
            })
            .await?;
        Ok(self.answer(StatusCode::OK, &saved))
    }

    /// PUT: ISC's `SubscriptionPutRequest` has no required field and no `triggerId`; what it leaves out of
    /// `name`, `type` and `triggerId` stays, everything else is replaced.
    pub(super) async fn update(
        &self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<Resp, ApiError> {
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| bad_request("the body is not JSON").cause(e.to_string()))?;
        if !doc.is_object() {
            return Err(bad_request("the body must be a JSON object"));
        }
        self.save(id, if_match, |old| {
            let mut doc = doc.clone();
            if let Value::Object(m) = &mut doc {
                m.entry("triggerId")
                    .or_insert_with(|| old.trigger_id.clone().into());
                m.entry("name").or_insert_with(|| old.name.clone().into());
                m.entry("type").or_insert_with(|| old.kind.as_str().into());
            }
            replacement(&self.config, old, parse(doc.to_string().as_bytes())?)
        })
        .await
    }

    /// PATCH: the JSON Patch is applied and validated by [`apply_patch`]; here only what needs the server.
    pub(super) async fn patch(
        &self,
        id: &str,
        content_type: &str,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<Resp, ApiError> {
        if !content_type.starts_with("application/json-patch+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "PATCH takes a JSON Patch document",
            )
            .cause("set Content-Type: application/json-patch+json"));
        }
        self.save(id, if_match, |old| apply_patch(&self.config, old, body))
            .await
    }

    pub(super) async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Resp, ApiError> {
        let (old, read_only) = self.find(id).ok_or_else(|| not_found(id))?;
        if read_only {
            return Err(Self::read_only(id));
        }
        self.commit(&old.trigger_id, |stored| {
            let i = stored
                .iter()
                .position(|s| s.effective_id() == id)
                .ok_or_else(|| not_found(id))?;
            check_if_match(if_match, &stored[i])?;
            Ok((stored.remove(i), false))
        })
        .await?;
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }
}

/// A subscription as the API shows it, without `triggerName` (which needs the catalog): ISC's shape, the
/// effective id, secrets `null`; the relay's own fields only when set (ISC's clients know ISC's fields).
pub(super) fn document(s: &Subscription) -> Value {
    let mut v = serde_json::to_value(s.withheld()).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), s.effective_id().into());
        for k in ["kafkaConfig", "natsConfig", "ackMode", "deadLetter"] {
            if m.get(k) == Some(&Value::Null) {
                m.remove(k);
            }
        }
    }
    v
}

/// `If-Match` (absent: any version may be replaced, last write wins).
fn check_if_match(if_match: Option<&str>, current: &Subscription) -> Result<(), ApiError> {
    let Some(list) = if_match else {
        return Ok(());
    };
    let tag = store::etag(current);
    let matches = list
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag);
    if matches {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "the subscription changed since that version was read",
    )
    .cause(format!(
        "If-Match: {list}; the current ETag is {tag}: GET it again"
    )))
}

/// A store failure as the API answers it: an outage is 503 with `Retry-After`, naming the store.
fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::Unavailable { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the subscription store is unreachable; retry later",
        )
        .cause(e.to_string())
        .retry_after(1),
        StoreError::Conflict(_) => {
            ApiError::new(StatusCode::CONFLICT, "a concurrent write came first")
                .cause(e.to_string())
        }
        StoreError::Failed { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the change could not be saved",
        )
        .cause(e.to_string()),
    }
}

/// Parse a subscription body; `path` errors name the field.
pub(super) fn parse(body: &[u8]) -> Result<Subscription, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let s: Subscription = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        bad_request("the subscription is not valid").cause(if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        })
    })?;
    Ok(s)
}

/// Every check the config applies to a subscription, then what only the API refuses (`policy`).
fn validate(config: &Config, s: &Subscription) -> Result<(), ApiError> {
    let mut causes: Vec<String> = config
        .check_subscription("", s)
        .into_iter()
        .map(|p| p.to_string().trim_start_matches('.').to_string())
        .collect();
    causes.extend(
        policy::check(config, s)
            .into_iter()
            .map(|(path, why)| format!("{path}: {why}")),
    );
    if causes.is_empty() {
        return Ok(());
    }
    let mut e = bad_request("the subscription is not valid");
    for c in causes {
        e = e.cause(c);
    }
    Err(e)
}

/// `new` in place of `old` (PUT, PATCH): same id and `triggerId`, write-only secrets kept, validated.
pub(super) fn replacement(
    config: &Config,
    old: &Subscription,
    mut new: Subscription,
) -> Result<Subscription, ApiError> {
    let id = old.effective_id();
    if new.id.as_deref().is_some_and(|n| n != id) {
        return Err(bad_request("the id cannot be changed").cause(format!("id: `{id}`")));
    }
    if new.trigger_id != old.trigger_id {
        return Err(bad_request("the triggerId cannot be changed")
            .cause(format!("triggerId: `{}`", old.trigger_id)));
    }
    new.id = Some(id);
    keep_secrets(&mut new, old)?;
    validate(config, &new)?;
    Ok(new)
}

/// Scheme, host (lower case) and port of a webhook URL: where its credential goes.
fn destination(url: &str) -> Option<(String, String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, uri.host()?.to_ascii_lowercase(), port))
}

/// Secrets are write-only: a PUT or PATCH that leaves one out keeps the stored one, but only while it still goes
/// where it went — same scheme, host, port and authentication type (and user name for BASIC_AUTH). A change of
/// destination drops it, and a request that leaves it out then is refused naming the field, so a `manage` caller
/// cannot send another team's webhook secret to a host of its choice.
fn keep_secrets(new: &mut Subscription, old: &Subscription) -> Result<(), ApiError> {
    let (Some(n), Some(o)) = (new.http_config.as_mut(), old.http_config.as_ref()) else {
        return Ok(());
    };
    let (from, to) = (destination(&o.url), destination(&n.url));
    let kind = |c: &crate::model::HttpConfig| {
        c.http_authentication_type
            .clone()
            .unwrap_or_else(|| "NO_AUTH".into())
    };
    let (old_kind, new_kind) = (kind(o), kind(n));
    let same_place = to.is_some() && to == from;
    let same_auth = old_kind == new_kind;
    let moved = || {
        let show = |d: &Option<(String, String, u16)>| {
            d.as_ref()
                .map_or_else(|| "?".to_string(), |(s, h, p)| format!("{s}://{h}:{p}"))
        };
        format!(
            "the stored credential is kept only while the destination and authentication type stay the same \
             ({} {old_kind} → {} {new_kind}): send it again",
            show(&from),
            show(&to),
        )
    };
    // A secret the new authentication type does not use is simply not carried over.
    let (basic, bearer) = (new_kind == "BASIC_AUTH", new_kind == "BEARER_TOKEN");
    if let (Some(nb), Some(ob)) = (n.basic_auth_config.as_mut(), o.basic_auth_config.as_ref()) {
        if basic && nb.password.is_none() && ob.password.is_some() {
            if same_place && same_auth && nb.user_name == ob.user_name {
                nb.password = ob.password.clone();
            } else if nb.user_name != ob.user_name {
                return Err(bad_request("the subscription is not valid").cause(format!(
                    "httpConfig.basicAuthConfig.password: the stored password belongs to user `{}`: send the password of `{}`",
                    ob.user_name, nb.user_name
                )));
            } else {
                return Err(bad_request("the subscription is not valid")
                    .cause(format!("httpConfig.basicAuthConfig.password: {}", moved())));
            }
        }
    }
    if let (Some(nb), Some(ob)) = (
        n.bearer_token_auth_config.as_mut(),
        o.bearer_token_auth_config.as_ref(),
    ) {
        if bearer && nb.bearer_token.is_none() && ob.bearer_token.is_some() {
            if same_place && same_auth {
                nb.bearer_token = ob.bearer_token.clone();
            } else {
                return Err(bad_request("the subscription is not valid").cause(format!(
                    "httpConfig.bearerTokenAuthConfig.bearerToken: {}",
                    moved()
                )));
            }
        }
    }
    Ok(())
}
