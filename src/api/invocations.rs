//! `/trigger-invocations`: the statuses of recent invocations, and test invocations, which send an event
//! through the same enqueue path as the ingress ([`crate::pipeline::Delivery::enqueue`]) to the chosen
//! subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

use super::collection::Spec;
use super::{bad_request, json_response, ApiState, Resp};
use crate::catalog::TriggerType;
use crate::error::ApiError;
use crate::model::Subscription;
use crate::pipeline::{Delivery, Event};

impl ApiState {
    pub(super) fn list_statuses(&self, query: &HashMap<String, String>) -> Result<Resp, ApiError> {
        // Newest first; statuses from other replicas arrive in their own order, so sort by when each started.
        let mut kept = self.statuses.list();
        kept.sort_by_key(|s| std::cmp::Reverse(s.created));
        let items: Vec<Value> = kept.iter().map(|s| s.to_json()).collect();
        Self::list(
            query,
            &Spec {
                filters: &[("triggerId", &["eq"]), ("subscriptionId", &["eq"])],
                sorters: &["triggerId", "subscriptionName", "created", "completed"],
            },
            items,
        )
    }

    /// Send a test event through the real sink path to the chosen subscriptions (disabled ones too).
    pub(super) async fn test_invocation(&self, body: &[u8]) -> Result<Resp, ApiError> {
        let t: TestInvocation = serde_json::from_slice(body)
            .map_err(|e| bad_request("the test invocation is not valid").cause(e.to_string()))?;
        let info = self.catalog.get(&t.trigger_id).ok_or_else(|| {
            bad_request(format!("unknown trigger `{}`", t.trigger_id))
                .cause("use an id from GET /triggers")
        })?;
        if info.kind == TriggerType::RequestResponse {
            return Err(bad_request(format!(
                "`{}` is a REQUEST_RESPONSE trigger; trigger-relay relays FIRE_AND_FORGET triggers only",
                t.trigger_id
            )));
        }
        let named = |s: &Subscription| {
            t.subscription_ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|i| *i == s.effective_id()))
        };
        // Config-file subscriptions are the operator's, not the API caller's: tests reach them only when the
        // config says so. Naming one is refused (silently skipping it would look like a delivered test).
        if !self.config.api.test_config_subscriptions {
            if let Some(s) = self
                .config_subs()
                .iter()
                .find(|s| s.trigger_id == t.trigger_id && t.subscription_ids.is_some() && named(s))
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "subscription `{}` is managed by the relay's config file",
                        s.effective_id()
                    ),
                )
                .cause("test invocations reach config-file subscriptions only with api.test_config_subscriptions = true"));
            }
        }
        let candidates = if self.config.api.test_config_subscriptions {
            self.all()
        } else {
            self.store.view().subscriptions().cloned().collect()
        };
        let chosen: Vec<Subscription> = candidates
            .into_iter()
            .filter(|s| s.trigger_id == t.trigger_id)
            .filter(|s| named(s))
            .collect();
        // contentJson is kept with every status the test leaves: bounded like a kept input.
        let content_len = t
            .content_json
            .as_ref()
            .map_or(0, |c| serde_json::to_vec(c).map_or(0, |v| v.len()));
        if content_len > crate::status::MAX_KEPT_INPUT {
            return Err(bad_request(format!(
                "contentJson is {content_len} bytes; at most {} are accepted",
                crate::status::MAX_KEPT_INPUT
            )));
        }
        if chosen.is_empty() {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            return Ok(r);
        }
        let content = t.content_json.clone().unwrap_or_else(|| json!({}));
        let guard = self.builder.lock().await;
        let Some(builder) = guard.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down",
            ));
        };
        let mut out = Vec::new();
        for s in chosen {
            let invocation_id = uuid::Uuid::new_v4().to_string();
            let mut payload = match t.input.clone().or_else(|| info.example_input.clone()) {
                Some(Value::Object(m)) => m,
                Some(_) => return Err(bad_request("input must be a JSON object")),
                None => serde_json::Map::new(),
            };
            payload.insert(
                "_metadata".into(),
                json!({
                    "triggerType": info.kind.metadata_name(),
                    "invocationId": invocation_id,
                    "triggerId": info.id,
                }),
            );
            let bytes = Bytes::from(Value::Object(payload).to_string());
            if bytes.len() as u64 > self.config.ingress.max_body_bytes {
                return Err(bad_request(format!(
                    "the test event is {} bytes; the ingress accepts at most {} (ingress.max_body_bytes)",
                    bytes.len(),
                    self.config.ingress.max_body_bytes
                )));
            }
            let Some(entry) = builder
                .route(&s)
                .await
                .map_err(|m| bad_request("a subscription cannot be routed").cause(m))?
            else {
                continue;
            };
            let reservation = entry.queue.try_reserve(bytes.len()).map_err(|full| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the relay is at capacity; retry later",
                )
                .cause(full.to_string())
                .retry_after(1)
            })?;
            let mut event = Event::new(
                info.id.as_str().into(),
                Some(invocation_id.clone().into_boxed_str()),
                crate::error::TrackingId::new(),
                bytes,
                Instant::now(),
            );
            event.test = Some(content.clone());
            if !Delivery::enqueue(Arc::new(event), &entry, None, reservation) {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the relay is shutting down",
                ));
            }
            out.push(json!({
                "id": invocation_id,
                "triggerId": info.id,
                "secret": uuid::Uuid::new_v4().to_string(),
                "contentJson": content,
            }));
        }
        Ok(json_response(StatusCode::OK, &Value::Array(out)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestInvocation {
    trigger_id: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    content_json: Option<Value>,
    #[serde(default)]
    subscription_ids: Option<Vec<String>>,
}
