//! The Triggers management API over HTTP, on both mounts (`/beta/...` and `/.../v1`): OAuth client
//! credentials, scopes, rate limit, ISC's collection parameters, the subscription lifecycle (POST, GET, PUT,
//! PATCH with JSON Patch, DELETE) with secrets write-only, limits, validate-filter, test invocations through the
//! real sink path, invocation statuses, config-managed subscriptions read-only, and durability across restarts.

use crate::support;

mod replicas;

use std::time::Duration;

use serde_json::{json, Value};
use support::webhook::Webhook;
use support::*;
use trigger_relay::Relay;

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef-0123456789";
const READER_TOKEN: &str = "reader-token-0123456789abcdef-0123456789";
const CLIENT_SECRET: &str = "client-secret-for-tests";

fn config(store: &std::path::Path, hook: &Webhook, extra: &str) -> String {
    let digest = sha256_hex(CLIENT_SECRET);
    format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
ack = "delivered"
[api]
enabled = true
store_path = "{store}"
{extra}
{}{}{}{}"#,
        sdk_client(&digest),
        admin_token("admin", ADMIN_TOKEN),
        api_token(
            "reader",
            READER_TOKEN,
            &["sp:trigger-service-subscriptions:read"]
        ),
        support::http_subscription("from config", "idn:source-created", &hook.url("/config")),
        store = store.join("subscriptions.json").display(),
    )
}

async fn call(
    relay: &Relay,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", content_type)];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    request(method, relay.admin_addr(), path, &headers, body).await
}

async fn api(relay: &Relay, method: &str, path: &str, body: Option<Value>) -> Response {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    call(
        relay,
        method,
        path,
        Some(ADMIN_TOKEN),
        "application/json",
        bytes,
    )
    .await
}

fn isc_error(r: &Response, status: u16, cause: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert!(
        j["detailCode"]
            .as_str()
            .unwrap()
            .starts_with(&status.to_string()),
        "{j}"
    );
    assert_eq!(j["trackingId"].as_str().unwrap().len(), 32);
    let causes = j["causes"].to_string();
    assert!(causes.contains(cause), "cause {cause:?} not in {j}");
}

fn http_subscription(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "description": "Access request subscription",
        "triggerId": "idn:identity-created",
        "type": "HTTP",
        "httpConfig": {
            "url": url,
            "httpDispatchMode": "SYNC",
            "httpAuthenticationType": "BEARER_TOKEN",
            "bearerTokenAuthConfig": { "bearerToken": "webhook-secret-1" }
        },
        "enabled": true,
        "filter": "$[?($.identity.name == \"William Wilson\")]"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_scopes_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "rate_limit_requests = 5")).await;
    let form = |s: &str| s.as_bytes().to_vec();
    let ct = "application/x-www-form-urlencoded";

    struct Case {
        body: &'static str,
        status: u16,
        error: &'static str,
    }
    for c in [
        Case {
            body: "grant_type=client_credentials&client_id=sdk&client_secret=wrong",
            status: 401,
            error: "invalid_client",
        },
        Case {
            body: "grant_type=password&client_id=sdk&client_secret=x",
            status: 400,
            error: "unsupported_grant_type",
        },
        Case {
            body: "grant_type=client_credentials&client_id=sdk",
            status: 400,
            error: "invalid_request",
        },
    ] {
        let r = call(&relay, "POST", "/oauth/token", None, ct, form(c.body)).await;
        assert_eq!(r.status, c.status, "{}", c.body);
        assert_eq!(r.json()["error"], c.error, "{}", c.body);
    }
    let r = call(
        &relay,
        "POST",
        "/oauth/token",
        None,
        ct,
        form(&format!(
            "grant_type=client_credentials&client_id=sdk&client_secret={CLIENT_SECRET}"
        )),
    )
    .await;
    assert_eq!(r.status, 200);
    let t = r.json();
    assert_eq!(t["token_type"], "bearer");
    assert!(t["expires_in"].as_u64().unwrap() > 0);
    let token = t["access_token"].as_str().unwrap().to_string();

    // No token, a bad token: 401 in ISC's shape. The reader cannot write: 403.
    let r = call(
        &relay,
        "GET",
        "/beta/triggers",
        None,
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].is_string());
    let r = call(
        &relay,
        "GET",
        "/beta/triggers",
        Some("nope"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = call(
        &relay,
        "POST",
        "/beta/trigger-subscriptions",
        Some(READER_TOKEN),
        "application/json",
        http_subscription("x", &hook.url("/x"))
            .to_string()
            .into_bytes(),
    )
    .await;
    isc_error(&r, 403, "sp:trigger-service-subscriptions:manage");

    // The issued token works; after 5 requests in the window the sixth gets 429 + Retry-After.
    for i in 0..5 {
        let r = call(
            &relay,
            "GET",
            "/triggers/v1",
            Some(&token),
            "application/json",
            vec![],
        )
        .await;
        assert_eq!(r.status, 200, "request {i}");
    }
    let r = call(
        &relay,
        "GET",
        "/triggers/v1",
        Some(&token),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["message"], " Rate Limit Exceeded ");
    assert!(r.headers.contains_key("retry-after"));
    // Another caller has its own window.
    let r = api(&relay, "GET", "/beta/triggers?limit=1", None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_with_isc_collection_parameters_on_both_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let all = api(&relay, "GET", "/beta/triggers?count=true", None).await;
    assert_eq!(all.status, 200);
    let n = all.json().as_array().unwrap().len();
    assert_eq!(all.headers["x-total-count"], n.to_string().as_str());
    assert!(n >= 20);
    let v1 = api(&relay, "GET", "/triggers/v1", None).await;
    assert_eq!(v1.json(), all.json(), "both mounts serve the same catalog");
    let t = all.json()[0].clone();
    for field in ["id", "name", "type", "inputSchema", "exampleInput"] {
        assert!(!t[field].is_null(), "{field} in {t}");
    }
    assert!(
        t["inputSchema"].is_string(),
        "inputSchema is a JSON Schema serialised as a string"
    );

    struct Case {
        query: &'static str,
        status: u16,
        check: fn(&[Value]),
    }
    for c in [
        Case {
            query: "limit=2&offset=1",
            status: 200,
            check: |v| assert_eq!(v.len(), 2),
        },
        Case {
            query: "filters=id%20eq%20%22idn:identity-created%22",
            status: 200,
            check: |v| {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0]["id"], "idn:identity-created");
            },
        },
        Case {
            query: "filters=id%20ge%20%22idn:s%22",
            status: 200,
            check: |v| {
                assert!(v.iter().all(|t| t["id"].as_str().unwrap() >= "idn:s"));
            },
        },
        Case {
            query: "sorters=-name",
            status: 200,
            check: |v| {
                let names: Vec<&str> = v.iter().map(|t| t["name"].as_str().unwrap()).collect();
                let mut sorted = names.clone();
                sorted.sort();
                sorted.reverse();
                assert_eq!(names, sorted);
            },
        },
        Case {
            query: "limit=251",
            status: 400,
            check: |_| {},
        },
        Case {
            query: "filters=name%20eq%20%22x%22",
            status: 400,
            check: |_| {},
        },
        Case {
            query: "sorters=type",
            status: 400,
            check: |_| {},
        },
    ] {
        let r = api(&relay, "GET", &format!("/beta/triggers?{}", c.query), None).await;
        assert_eq!(
            r.status,
            c.status,
            "{}: {}",
            c.query,
            String::from_utf8_lossy(&r.body)
        );
        if r.status == 200 {
            (c.check)(r.json().as_array().unwrap());
        } else {
            isc_error(&r, 400, "");
        }
    }
    let doc = api(&relay, "GET", "/openapi.json", None).await.json();
    for p in [
        "/beta/trigger-subscriptions/{id}",
        "/trigger-subscriptions/v1/{id}",
        "/trigger-invocations/v1/test",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} in openapi.json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_lifecycle_takes_effect_at_once_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let text = config(dir.path(), &hook, "");
    let relay = start(&text).await;

    // POST: 201, ISC's defaults, secrets null, triggerName from the catalog.
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-subscriptions",
        Some(http_subscription("wh", &hook.url("/wh"))),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["triggerName"], "Identity Created");
    assert_eq!(s["responseDeadline"], "PT1H");
    assert_eq!(s["enabled"], true);
    assert!(
        s["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"].is_null(),
        "secrets are write-only: {s}"
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("webhook-secret-1"));

    // The next event goes to it (no restart), with the secret it was given.
    let body = example_body("idn:identity-created", &unique("live"));
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", body.clone())
            .await
            .status,
        200
    );
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].path, "/wh");
    assert_eq!(got[0].headers["authorization"], "Bearer webhook-secret-1");

    // GET on both mounts; list with filters and count.
    let one = api(
        &relay,
        "GET",
        &format!("/trigger-subscriptions/v1/{id}"),
        None,
    )
    .await;
    assert_eq!(one.json(), s);
    let listed = api(
        &relay,
        "GET",
        "/beta/trigger-subscriptions?count=true&filters=triggerId%20eq%20%22idn:identity-created%22&sorters=triggerName",
        None,
    )
    .await;
    assert_eq!(listed.headers["x-total-count"], "1");
    assert_eq!(listed.json()[0]["id"], id.as_str());
    let everything = api(&relay, "GET", "/beta/trigger-subscriptions", None)
        .await
        .json();
    assert_eq!(
        everything.as_array().unwrap().len(),
        2,
        "config and API subscriptions are both listed"
    );

    // PUT: full replace without the secret keeps it; id and triggerId cannot change.
    let mut put = http_subscription("wh renamed", &hook.url("/wh2"));
    put["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"] = Value::Null;
    let r = api(
        &relay,
        "PUT",
        &format!("/beta/trigger-subscriptions/{id}"),
        Some(put.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["name"], "wh renamed");
    let mut moved = put.clone();
    moved["triggerId"] = json!("idn:identity-deleted");
    isc_error(
        &api(
            &relay,
            "PUT",
            &format!("/beta/trigger-subscriptions/{id}"),
            Some(moved),
        )
        .await,
        400,
        "triggerId",
    );
    let mut other_id = put.clone();
    other_id["id"] = json!("another");
    isc_error(
        &api(
            &relay,
            "PUT",
            &format!("/beta/trigger-subscriptions/{id}"),
            Some(other_id),
        )
        .await,
        400,
        "id",
    );

    // PATCH (application/json-patch+json): only patchable fields; the result is validated like a PUT.
    let patch = |ops: Value, ct: &'static str| {
        let relay = &relay;
        let id = id.clone();
        async move {
            call(
                relay,
                "PATCH",
                &format!("/trigger-subscriptions/v1/{id}"),
                Some(ADMIN_TOKEN),
                ct,
                ops.to_string().into_bytes(),
            )
            .await
        }
    };
    let r = patch(
        json!([
            {"op": "replace", "path": "/description", "value": "A new description"},
            {"op": "copy", "from": "/name", "path": "/description"},
            {"op": "replace", "path": "/name", "value": "A new name"},
            {"op": "remove", "path": "/filter"}
        ]),
        "application/json-patch+json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let p = r.json();
    assert_eq!(p["name"], "A new name");
    assert_eq!(p["description"], "wh renamed");
    assert!(p["filter"].is_null());
    for (ops, ct, status, needle) in [
        (
            json!([{"op": "replace", "path": "/id", "value": "x"}]),
            "application/json-patch+json",
            400,
            "/id",
        ),
        (
            json!([{"op": "test", "path": "/name", "value": "x"}]),
            "application/json-patch+json",
            400,
            "test",
        ),
        (
            json!([{"op": "replace", "path": "/type", "value": "INLINE"}]),
            "application/json-patch+json",
            400,
            "INLINE",
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
            "application/json",
            415,
            "json-patch",
        ),
    ] {
        isc_error(&patch(ops, ct).await, status, needle);
    }
    // The secret survived PUT and PATCH: the next event still carries it, to the new URL.
    let before = hook.received().len();
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", body.clone())
            .await
            .status,
        200
    );
    let got = hook.wait_for(before + 1, Duration::from_secs(10)).await;
    assert_eq!(got[before].path, "/wh2");
    assert_eq!(
        got[before].headers["authorization"],
        "Bearer webhook-secret-1"
    );

    // Config-managed subscriptions are read-only.
    let cfg_id = everything
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "from config")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    isc_error(
        &api(
            &relay,
            "DELETE",
            &format!("/beta/trigger-subscriptions/{cfg_id}"),
            None,
        )
        .await,
        409,
        "config file",
    );

    // The store is private to the relay's user.
    let store = dir.path().join("subscriptions.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Restart on the same store: the subscription is still there and still routed.
    assert_eq!(relay.wait().await.undelivered, 0);
    let relay = start(&text).await;
    let again = api(
        &relay,
        "GET",
        &format!("/beta/trigger-subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["name"], "A new name");
    let before = hook.received().len();
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", body.clone())
            .await
            .status,
        200
    );
    let got = hook.wait_for(before + 1, Duration::from_secs(10)).await;
    assert_eq!(
        got[before].headers["authorization"],
        "Bearer webhook-secret-1"
    );

    // DELETE: 204, then 404; events are no longer routed to it.
    let r = api(
        &relay,
        "DELETE",
        &format!("/beta/trigger-subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    isc_error(
        &api(
            &relay,
            "DELETE",
            &format!("/beta/trigger-subscriptions/{id}"),
            None,
        )
        .await,
        404,
        "",
    );
    let before = hook.received().len();
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", body)
            .await
            .status,
        200
    );
    assert_eq!(
        hook.received().len(),
        before,
        "a deleted subscription receives nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscriptions_and_the_per_trigger_limit_get_400_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let url = hook.url("/x");
    struct Case {
        patch: fn(&mut Value),
        cause: &'static str,
    }
    for c in [
        Case {
            patch: |s| s["type"] = json!("INLINE"),
            cause: "INLINE runs inside ISC",
        },
        Case {
            patch: |s| s["type"] = json!("WORKFLOW"),
            cause: "WORKFLOW",
        },
        Case {
            patch: |s| s["filter"] = json!("$[?($.a == )]"),
            cause: "filter",
        },
        Case {
            patch: |s| s["responseDeadline"] = json!("1h"),
            cause: "responseDeadline",
        },
        Case {
            patch: |s| s["triggerId"] = json!("idn:nope"),
            cause: "unknown trigger",
        },
        Case {
            patch: |s| s["httpConfig"]["url"] = json!("ftp://x"),
            cause: "httpConfig.url",
        },
        Case {
            patch: |s| {
                s.as_object_mut().unwrap().remove("name");
            },
            cause: "name",
        },
        Case {
            patch: |s| s["color"] = json!("blue"),
            cause: "color",
        },
    ] {
        let mut s = http_subscription("bad", &url);
        (c.patch)(&mut s);
        let r = api(&relay, "POST", "/beta/trigger-subscriptions", Some(s)).await;
        isc_error(&r, 400, c.cause);
    }
    // ISC's limit: 50 subscriptions per FIRE_AND_FORGET trigger.
    for i in 0..50 {
        let mut s = http_subscription(&format!("n{i}"), &url);
        s["triggerId"] = json!("idn:identity-deleted");
        s["enabled"] = json!(false);
        let r = api(&relay, "POST", "/trigger-subscriptions/v1", Some(s)).await;
        assert_eq!(r.status, 201, "{i}: {}", String::from_utf8_lossy(&r.body));
    }
    let mut s = http_subscription("one too many", &url);
    s["triggerId"] = json!("idn:identity-deleted");
    isc_error(
        &api(&relay, "POST", "/trigger-subscriptions/v1", Some(s)).await,
        400,
        "at most 50",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_filter_test_invocations_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;

    // ISC's validate-filter example.
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-subscriptions/validate-filter",
        Some(json!({"input": {"identityId": "201327fda1c44704ac01181e963d463c"}, "filter": "$[?($.identityId == \"201327fda1c44704ac01181e963d463c\")]"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"isValid": true, "isValidJSONPath": true, "isPathExist": true})
    );

    // A disabled subscription still gets test invocations (as in ISC).
    let mut s = http_subscription("tested", &hook.url("/tested"));
    s["enabled"] = json!(false);
    s.as_object_mut().unwrap().remove("filter");
    let created = api(&relay, "POST", "/beta/trigger-subscriptions", Some(s))
        .await
        .json();
    let sub_id = created["id"].as_str().unwrap().to_string();
    let r = api(
        &relay,
        "POST",
        "/trigger-invocations/v1/test",
        Some(json!({"triggerId": "idn:identity-created", "contentJson": {"workflowId": 1234}, "subscriptionIds": [sub_id]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let inv = r.json()[0].clone();
    assert_eq!(inv["triggerId"], "idn:identity-created");
    assert_eq!(inv["contentJson"], json!({"workflowId": 1234}));
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    let payload: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        payload["_metadata"]["invocationId"], inv["id"],
        "the test event carries the invocation id"
    );
    assert_eq!(payload["_metadata"]["triggerId"], "idn:identity-created");
    assert!(
        payload["identity"].is_object(),
        "the default input is the trigger's example"
    );

    // No subscription for the trigger: 204.
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-invocations/test",
        Some(json!({"triggerId": "idn:campaign-ended", "contentJson": {}})),
    )
    .await;
    assert_eq!(r.status, 204);

    // A real-time event to the config subscription.
    let body = example_body("idn:source-created", &unique("rt"));
    assert_eq!(
        post_event(&relay, "/events/idn:source-created", body)
            .await
            .status,
        200
    );

    let statuses = api(
        &relay,
        "GET",
        "/beta/trigger-invocations/status?count=true",
        None,
    )
    .await;
    assert_eq!(statuses.status, 200);
    let list = statuses.json();
    let test = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "TEST")
        .expect("a TEST status");
    assert_eq!(test["id"], inv["id"]);
    assert_eq!(test["subscriptionId"], sub_id.as_str());
    assert_eq!(test["subscriptionName"], "tested");
    assert!(test["created"].is_string() && test["completed"].is_string());
    assert_eq!(
        test["startInvocationInput"]["contentJson"],
        json!({"workflowId": 1234})
    );
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["type"] == "REAL_TIME" && s["triggerId"] == "idn:source-created"));
    let only = api(
        &relay,
        "GET",
        &format!("/trigger-invocations/v1/status?filters=subscriptionId%20eq%20%22{sub_id}%22"),
        None,
    )
    .await
    .json();
    assert_eq!(only.as_array().unwrap().len(), 1);

    // Nothing to complete: the relay has no REQUEST_RESPONSE invocations.
    isc_error(
        &api(
            &relay,
            "POST",
            "/beta/trigger-invocations/x/complete",
            Some(json!({"secret": "s", "output": {}})),
        )
        .await,
        400,
        "FIRE_AND_FORGET",
    );
}

/// Concurrent writes are serialised: every create lands once, in the table and in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_all_land_in_the_table_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let url = hook.url("/many");
    let creates = (0..20).map(|i| {
        let mut s = http_subscription(&format!("c{i}"), &url);
        s["triggerId"] = json!("idn:source-deleted");
        s.as_object_mut().unwrap().remove("filter");
        api(&relay, "POST", "/trigger-subscriptions/v1", Some(s))
    });
    for r in futures_util::future::join_all(creates).await {
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let listed = api(
        &relay,
        "GET",
        "/beta/trigger-subscriptions?filters=triggerId%20eq%20%22idn:source-deleted%22&count=true",
        None,
    )
    .await;
    assert_eq!(listed.headers["x-total-count"], "20");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("subscriptions.json")).unwrap())
            .unwrap();
    assert_eq!(stored["subscriptions"].as_array().unwrap().len(), 20);
    // And all 20 are routed: one event reaches the webhook 20 times.
    let body = example_body("idn:source-deleted", &unique("fan"));
    assert_eq!(
        post_event(&relay, "/events/idn:source-deleted", body)
            .await
            .status,
        200
    );
    assert_eq!(hook.received().len(), 20);
}

/// What a hostile caller with a `manage` token (or less) tries, and what it gets: credentials that stay with
/// their destination, no names inside the brokers, no config-file targets for test events, bounded fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_api_callers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    // The Kafka cluster and NATS connection are scripts/test's brokers (the relay connects to them at start);
    // the refused subscriptions never publish.
    let extra = r#"
[[api.tokens]]
name = "status-only"
token = "status-only-token-0123456789abcdef0123"
scopes = ["sp:trigger-service-invocation-status:manage"]
[sinks.kafka.k]
bootstrap_servers = "KAFKA_ADDR"
[sinks.nats.n]
servers = ["NATS_URL"]
api_subject_prefixes = ["isc."]
"#
    .replace("NATS_URL", &nats())
    .replace("KAFKA_ADDR", &kafka());
    // `extra` goes inside [api]; tables after it are top-level, so the API's own keys come first.
    let relay = start(&config(dir.path(), &hook, &extra)).await;
    let id = create_subscription(
        &relay,
        http_subscription("secret holder", &hook.url("/holder")),
    )
    .await;
    let sub = |f: &dyn Fn(&mut Value)| {
        let mut s = http_subscription("secret holder", &hook.url("/holder"));
        s["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"] = Value::Null;
        f(&mut s);
        s
    };
    let port: u16 = hook.url("").rsplit(':').next().unwrap().parse().unwrap();
    let other_port = format!("http://127.0.0.1:{}/holder", port + 1);
    let other_host = format!("http://localhost:{port}/holder");
    let big = "x".repeat(2000);

    struct Case {
        what: &'static str,
        method: &'static str,
        path: String,
        token: &'static str,
        body: Value,
        status: u16,
        cause: &'static str,
    }
    let put = format!("/beta/trigger-subscriptions/{id}");
    // A create with the admin token that must be refused with 400 and `cause`.
    let create = |what, body, cause| Case {
        what,
        method: "POST",
        path: "/beta/trigger-subscriptions".into(),
        token: ADMIN_TOKEN,
        body,
        status: 400,
        cause,
    };
    let cases = [
        Case {
            what: "PUT to another port without the secret",
            method: "PUT",
            path: put.clone(),
            token: ADMIN_TOKEN,
            body: sub(&|s| s["httpConfig"]["url"] = json!(other_port)),
            status: 400,
            cause: "bearerTokenAuthConfig.bearerToken: the stored credential is kept only while",
        },
        Case {
            what: "PUT to another host without the secret",
            method: "PUT",
            path: put.clone(),
            token: ADMIN_TOKEN,
            body: sub(&|s| s["httpConfig"]["url"] = json!(other_host)),
            status: 400,
            cause: "send it again",
        },
        Case {
            what: "PUT to https without the secret",
            method: "PUT",
            path: put.clone(),
            token: ADMIN_TOKEN,
            body: sub(&|s| {
                s["httpConfig"]["url"] = json!(format!("https://127.0.0.1:{port}/holder"))
            }),
            status: 400,
            cause: "bearerToken",
        },
        create(
            "a URL with a password",
            sub(&|s| {
                s["httpConfig"]["url"] = json!("http://user:hunter2@example.com/x");
                s["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"] = json!("t");
            }),
            "use httpAuthenticationType BASIC_AUTH with basicAuthConfig",
        ),
        create(
            "a Kafka internal topic",
            json!({"name": "k", "triggerId": "idn:identity-created", "type": "KAFKA",
                         "kafkaConfig": {"topic": "__consumer_offsets"}}),
            "kafkaConfig.topic: `__consumer_offsets` starts with `_`",
        ),
        create(
            "a NATS subject outside the allowed prefixes",
            json!({"name": "n", "triggerId": "idn:identity-created", "type": "NATS",
                         "natsConfig": {"subject": "$JS.API.STREAM.DELETE.x"}}),
            "natsConfig.subject: `$JS.API.STREAM.DELETE.x` does not start with an allowed prefix (isc.)",
        ),
        create(
            "an EventBridge endpoint URL from the API",
            json!({"name": "e", "triggerId": "idn:identity-created", "type": "EVENTBRIDGE",
                         "eventBridgeConfig": {"awsAccount": "123456789012", "awsRegion": "us-east-1",
                                               "endpointUrl": "http://169.254.169.254/"}}),
            "eventBridgeConfig.endpointUrl: may be set only in the config file",
        ),
        create(
            "a name over 128 characters",
            {
                let mut s = http_subscription(&big[..129], &hook.url("/x"));
                s["description"] = json!(big);
                s
            },
            "name: must be at most 128 characters",
        ),
        Case {
            what: "a test invocation with only the invocation-status scope",
            method: "POST",
            path: "/beta/trigger-invocations/test".into(),
            token: "status-only-token-0123456789abcdef0123",
            body: json!({"triggerId": "idn:identity-created", "contentJson": {}}),
            status: 403,
            cause: "sp:trigger-service-subscriptions:manage as well as",
        },
        Case {
            what: "a test invocation naming a config-file subscription",
            method: "POST",
            path: "/beta/trigger-invocations/test".into(),
            token: ADMIN_TOKEN,
            body: json!({"triggerId": "idn:source-created", "contentJson": {},
                         "subscriptionIds": [config_subscription_id(&relay).await]}),
            status: 403,
            cause: "api.test_config_subscriptions = true",
        },
        Case {
            what: "a test invocation with a contentJson over 16 KiB",
            method: "POST",
            path: "/beta/trigger-invocations/test".into(),
            token: ADMIN_TOKEN,
            body: json!({"triggerId": "idn:identity-created", "contentJson": {"x": "y".repeat(17 * 1024)}}),
            status: 400,
            cause: "",
        },
        Case {
            what: "a test invocation whose body is far over what contentJson may be",
            method: "POST",
            path: "/beta/trigger-invocations/test".into(),
            token: ADMIN_TOKEN,
            body: json!({"triggerId": "idn:identity-created", "contentJson": {"x": "y".repeat(200 * 1024)}}),
            status: 413,
            cause: "contentJson may be at most 16384 bytes",
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let r = call(
            &relay,
            c.method,
            &c.path,
            Some(c.token),
            "application/json",
            c.body.to_string().into_bytes(),
        )
        .await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        if r.status != c.status || !text.contains(c.cause) || text.contains("hunter2") {
            failures.push(format!("{}: {} {text}", c.what, r.status));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The same destination (another path) keeps the secret; sending it again works anywhere.
    let r = api(
        &relay,
        "PUT",
        &put,
        Some(sub(&|s| s["httpConfig"]["url"] = json!(hook.url("/moved")))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut again = sub(&|s| s["httpConfig"]["url"] = json!(other_port));
    again["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"] = json!("fresh-secret");
    assert_eq!(api(&relay, "PUT", &put, Some(again)).await.status, 200);
    let r = api(
        &relay,
        "PUT",
        &put,
        Some(sub(&|s| s["httpConfig"]["url"] = json!(hook.url("/back")))),
    )
    .await;
    isc_error(&r, 400, "bearerToken");

    // A test event is marked for the destination; it reaches API subscriptions only.
    let mut back = sub(&|s| s["httpConfig"]["url"] = json!(hook.url("/back")));
    back["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"] = json!("secret-3");
    back.as_object_mut().unwrap().remove("filter");
    assert_eq!(api(&relay, "PUT", &put, Some(back)).await.status, 200);
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-invocations/test",
        Some(json!({"triggerId": "idn:identity-created", "contentJson": {"k": 1}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].path, "/back");
    assert_eq!(got[0].headers["test"], "true");
    assert_eq!(got[0].headers["authorization"], "Bearer secret-3");
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-invocations/test",
        Some(json!({"triggerId": "idn:source-created", "contentJson": {}})),
    )
    .await;
    assert_eq!(
        r.status, 204,
        "config-file subscriptions are not tested by default"
    );

    // An API body over 1 MiB is 413, not 400.
    let r = call(
        &relay,
        "POST",
        "/beta/trigger-subscriptions",
        Some(ADMIN_TOKEN),
        "application/json",
        vec![b' '; 1024 * 1024 + 1],
    )
    .await;
    isc_error(&r, 413, "");
}

/// Create a subscription through the API (it must answer 201); its id.
async fn create_subscription(relay: &Relay, body: Value) -> String {
    let r = api(relay, "POST", "/beta/trigger-subscriptions", Some(body)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_string()
}

async fn config_subscription_id(relay: &Relay) -> String {
    let all = api(relay, "GET", "/beta/trigger-subscriptions", None)
        .await
        .json();
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["triggerId"] == "idn:source-created")
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_string()
}

/// One client asking for tokens over and over is limited and takes nothing from another client (tokens are
/// self-contained: there is no table to evict from); failed authentications from one address are limited too,
/// without locking out other addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_floods_and_guessing_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let other = "other-client-secret";
    let other_digest = sha256_hex(other);
    let relay = start(&config(
        dir.path(),
        &hook,
        &format!(
            "rate_limit_requests = 8\nauth_failure_limit = 3\n\
             [[api.clients]]\nclient_id = \"other\"\nclient_secret_sha256 = \"{other_digest}\"\n\
             scopes = [\"sp:trigger-service-subscriptions:read\"]"
        ),
    ))
    .await;
    let from = |last: u8| Some(std::net::IpAddr::from([127, 0, 0, last]));
    let token_from = |ip: Option<std::net::IpAddr>, id: &str, secret: &str| {
        let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
        let addr = relay.admin_addr();
        async move {
            request_from(
                ip,
                "POST",
                addr,
                "/oauth/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                body.into_bytes(),
            )
            .await
        }
    };
    let list = |ip: Option<std::net::IpAddr>, token: String| {
        let addr = relay.admin_addr();
        async move {
            request_from(
                ip,
                "GET",
                addr,
                "/beta/trigger-subscriptions",
                &[("authorization", &format!("Bearer {token}"))],
                Vec::new(),
            )
            .await
            .status
        }
    };
    let kept = token_from(from(10), "other", other).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // "sdk" asks from several addresses (per-address limits do not hide the per-client one).
    let mut tokens = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..10u8 {
        let r = token_from(from(20 + i), "sdk", CLIENT_SECRET).await;
        statuses.push(r.status);
        if r.status == 200 {
            tokens.push(r.json()["access_token"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        8,
        "the client's own window: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    assert_eq!(
        list(from(10), kept).await,
        200,
        "another client's token is untouched"
    );
    assert_eq!(
        list(from(10), tokens[7].clone()).await,
        200,
        "the newest is valid"
    );
    assert_eq!(
        list(from(10), tokens[0].clone()).await,
        200,
        "the first is still valid too"
    );

    // Guessing: three failures from one address, then 429 there (even with a good token), not elsewhere.
    let good = tokens[7].clone();
    let guesses = [
        list(from(40), "guess-1".into()).await,
        list(from(40), "guess-2".into()).await,
        token_from(from(40), "other", "wrong").await.status,
    ];
    assert_eq!(guesses, [401, 401, 401]);
    assert_eq!(list(from(40), good.clone()).await, 429);
    assert_eq!(token_from(from(40), "sdk", CLIENT_SECRET).await.status, 429);
    assert_eq!(list(from(41), good).await, 200);
}

/// A deleted subscription's metric series go with it: create/delete cycles do not grow `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_subscriptions_leave_no_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let metrics = || async {
        let r = request("GET", relay.admin_addr(), "/metrics", &[], Vec::new()).await;
        String::from_utf8_lossy(&r.body).to_string()
    };
    let mut sizes = Vec::new();
    for i in 0..20 {
        let id = create_subscription(
            &relay,
            http_subscription(&format!("cycle {i}"), &hook.url("/cycle")),
        )
        .await;
        assert!(
            metrics().await.contains(&id),
            "a live subscription has its series"
        );
        let r = api(
            &relay,
            "DELETE",
            &format!("/beta/trigger-subscriptions/{id}"),
            None,
        )
        .await;
        assert_eq!(r.status, 204);
        let text = metrics().await;
        assert!(
            !text.contains(&id),
            "series of deleted {id} are still on /metrics"
        );
        sizes.push(text.len());
    }
    // Only counter values change (a digit or two); no series are added.
    assert!(
        sizes[19] <= sizes[0] + 64,
        "/metrics grew across cycles: {sizes:?}"
    );
}

/// A subscription whose destination does not exist is refused before it is stored (a typo is a 400 now, not every
/// event lost later): a Kafka topic the cluster does not have, a JetStream subject no stream holds. A disabled one
/// may be created ahead of its destination; an existing topic is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_checked_before_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let topic = unique("present");
    create_topic(&kafka(), &topic).await;
    let extra =
        "[sinks.kafka.k]\nbootstrap_servers = \"KAFKA\"\n[sinks.nats.n]\nservers = [\"NATS\"]\n"
            .replace("KAFKA", &kafka())
            .replace("NATS", &nats());
    let relay = start(&format!("{}\n{extra}", config(dir.path(), &hook, ""))).await;
    wait_ready(&relay).await;
    let kafka_sub = |topic: &str, enabled: bool| {
        json!({"name": unique("k"), "triggerId": "idn:identity-created", "type": "KAFKA", "enabled": enabled,
               "kafkaConfig": {"topic": topic}})
    };
    let missing = unique("typo");
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-subscriptions",
        Some(kafka_sub(&missing, true)),
    )
    .await;
    isc_error(
        &r,
        400,
        &format!("the Kafka topic `{missing}` does not exist"),
    );
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-subscriptions",
        Some(kafka_sub(&missing, false)),
    )
    .await;
    assert_eq!(
        r.status,
        201,
        "a disabled subscription may come first: {}",
        String::from_utf8_lossy(&r.body)
    );
    let r = api(
        &relay,
        "POST",
        "/beta/trigger-subscriptions",
        Some(kafka_sub(&topic, true)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let js = json!({"name": unique("j"), "triggerId": "idn:identity-created", "type": "NATS",
                    "natsConfig": {"subject": unique("nostream"), "jetstream": true}});
    let r = api(&relay, "POST", "/beta/trigger-subscriptions", Some(js)).await;
    isc_error(&r, 400, "no JetStream stream holds the subject");
}

/// `POST /oauth/token` takes the client's credentials in every encoding clients use: the query string, an
/// urlencoded body, a multipart/form-data body (as some of SailPoint's client libraries send it) and HTTP Basic
/// (RFC 6749 §2.3.1); each answers ISC's token shape, and a wrong secret is a 401 in each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_in_every_encoding() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let boundary = "----trigger-relay-test-boundary";
    let multipart = |secret: &str| {
        let mut b = String::new();
        for (k, v) in [
            ("grant_type", "client_credentials"),
            ("client_id", "sdk"),
            ("client_secret", secret),
        ] {
            b.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        b.push_str(&format!("--{boundary}--\r\n"));
        b.into_bytes()
    };
    let basic = |secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("sdk:{secret}"))
        )
    };
    let mp_type = format!("multipart/form-data; boundary={boundary}");
    struct Case {
        what: &'static str,
        path: String,
        content_type: String,
        authorization: Option<String>,
        body: Vec<u8>,
    }
    let cases = |secret: &str| {
        vec![
            Case {
                what: "query string",
                path: format!("/oauth/token?grant_type=client_credentials&client_id=sdk&client_secret={secret}"),
                content_type: "application/x-www-form-urlencoded".into(),
                authorization: None,
                body: Vec::new(),
            },
            Case {
                what: "urlencoded body",
                path: "/oauth/token".into(),
                content_type: "application/x-www-form-urlencoded".into(),
                authorization: None,
                body: format!("grant_type=client_credentials&client_id=sdk&client_secret={secret}").into_bytes(),
            },
            Case {
                what: "multipart/form-data",
                path: "/oauth/token".into(),
                content_type: mp_type.clone(),
                authorization: None,
                body: multipart(secret),
            },
            Case {
                what: "HTTP Basic",
                path: "/oauth/token".into(),
                content_type: "application/x-www-form-urlencoded".into(),
                authorization: Some(basic(secret)),
                body: b"grant_type=client_credentials".to_vec(),
            },
        ]
    };
    for (secret, want) in [(CLIENT_SECRET, 200), ("wrong-secret", 401)] {
        for c in cases(secret) {
            let mut headers = vec![("content-type", c.content_type.as_str())];
            if let Some(a) = &c.authorization {
                headers.push(("authorization", a.as_str()));
            }
            let r = request("POST", relay.admin_addr(), &c.path, &headers, c.body).await;
            assert_eq!(
                r.status,
                want,
                "{}: {}",
                c.what,
                String::from_utf8_lossy(&r.body)
            );
            let j = r.json();
            if want == 200 {
                assert_eq!(j["token_type"], "bearer", "{}", c.what);
                assert!(j["expires_in"].as_u64().unwrap() > 0, "{}", c.what);
                assert!(j["scope"]
                    .as_str()
                    .unwrap()
                    .contains("sp:trigger-service-subscriptions:manage"));
                let token = j["access_token"].as_str().unwrap();
                let l = call(
                    &relay,
                    "GET",
                    "/beta/trigger-subscriptions",
                    Some(token),
                    "application/json",
                    Vec::new(),
                )
                .await;
                assert_eq!(l.status, 200, "{}: the token works", c.what);
            } else {
                assert_eq!(j["error"], "invalid_client", "{}", c.what);
            }
        }
    }
    // A broken multipart body is a 400 saying so.
    let r = request(
        "POST",
        relay.admin_addr(),
        "/oauth/token",
        &[("content-type", mp_type.as_str())],
        b"not multipart at all".to_vec(),
    )
    .await;
    isc_error(&r, 400, "");
}

/// Parallel 1 MiB filter validations do not grow the relay's memory with their number: one runs at a time
/// (the others get 429 with `Retry-After`), so the peak resident memory of the process stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_large_filter_validations_are_bounded_in_memory() {
    let _measured = support::MEASURED.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let relay = support::reliability::RelayProcess::start(&format!(
        "[ingress.auth]\nnone = true\n[api]\nenabled = true\nstore_path = \"{}\"\nrate_limit_requests = 100000\n\
         [[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\nscopes = [\"sp:scopes:all\"]\n",
        dir.path().join("s.json").display()
    ))
    .await;
    let peak = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let before = peak(relay.pid());
    // About 1 MiB of small objects: a parsed tree many times the text's size.
    let items: Vec<String> = (0..42_000)
        .map(|i| format!(r#"{{"k":{i},"n":"v{i}"}}"#))
        .collect();
    let input = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let body = format!(r#"{{"input":{input},"filter":"$.items[?(@.k == 3)]"}}"#);
    assert!(
        body.len() > 900_000 && body.len() < 1024 * 1024,
        "{}",
        body.len()
    );
    // `n` POSTs of `body` to `path` at once; their statuses.
    let parallel = |path: &'static str, body: String, n: usize| {
        let admin = relay.admin;
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let body = body.clone();
                    tokio::spawn(async move {
                        let auth = format!("Bearer {ADMIN_TOKEN}");
                        let headers = [
                            ("authorization", auth.as_str()),
                            ("content-type", "application/json"),
                        ];
                        request("POST", admin, path, &headers, body.into_bytes())
                            .await
                            .status
                    })
                })
                .collect();
            let mut statuses = Vec::new();
            for t in tasks {
                statuses.push(t.await.unwrap());
            }
            statuses
        }
    };
    let statuses = parallel("/beta/trigger-subscriptions/validate-filter", body, 32).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    // And 32 parallel 1 MiB test invocations: refused (413) before their body is parsed.
    let test_body = format!(r#"{{"triggerId":"idn:identity-created","contentJson":{input}}}"#);
    for status in parallel("/beta/trigger-invocations/test", test_body, 32).await {
        assert_eq!(status, 413, "a 1 MiB test invocation");
    }
    let grown_mb = (peak(relay.pid()) - before) / 1024;
    eprintln!("[validate-filter] 32 parallel 1 MiB validations and 32 test invocations: peak RSS grew {grown_mb} MiB; {statuses:?}");
    let ok = statuses.iter().filter(|s| **s == 200).count();
    support::reliability::Row {
        name: "api-validate-filter-flood".into(),
        scenario: "a hostile API caller: 32 parallel 1 MiB validate-filter calls, then 32 parallel 1 MiB test invocations (the relay binary)".into(),
        sent: statuses.len(),
        acknowledged: ok,
        rss_peak_kb: Some(peak(relay.pid())),
        notes: format!(
            "this row counts the validations, not events: {ok} answered 200, {} 429 with Retry-After (one validation at a time); the 32 test invocations 413 before parsing; peak RSS grew {grown_mb} MiB (asserted under 64)",
            statuses.len() - ok
        ),
        ..Default::default()
    }
    .write();
    assert!(grown_mb < 64, "peak RSS grew {grown_mb} MiB");
}

/// A write rebuilds the routing table without recompiling the filters it already has: each distinct filter is
/// compiled once (on the blocking pool), however many writes follow, and a filter used again after its
/// subscription was deleted is compiled again (the cache holds what the table uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_writes_compile_only_the_filters_that_are_new() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let compiled = || metric(&relay, "trigger_relay_filter_compilations_total", &[]);
    let before = compiled().await;
    let url = hook.url("/compile");
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut s = http_subscription(&format!("compile-{i}"), &url);
        s["filter"] = json!(format!("$[?($.identity.name == \"n{i}\")]"));
        let r = api(&relay, "POST", "/beta/trigger-subscriptions", Some(s)).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        compiled().await - before,
        5.0,
        "five filters, each compiled once"
    );
    // Writes that do not touch a filter compile nothing.
    for id in &ids {
        let patch = json!([{"op": "replace", "path": "/description", "value": "changed"}]);
        let r = call(
            &relay,
            "PATCH",
            &format!("/beta/trigger-subscriptions/{id}"),
            Some(ADMIN_TOKEN),
            "application/json-patch+json",
            patch.to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(compiled().await - before, 5.0);
    let r = api(
        &relay,
        "DELETE",
        &format!("/beta/trigger-subscriptions/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let mut s = http_subscription("compile-again", &url);
    s["filter"] = json!("$[?($.identity.name == \"n0\")]");
    let r = api(&relay, "POST", "/beta/trigger-subscriptions", Some(s)).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        compiled().await - before,
        6.0,
        "a forgotten filter is compiled again"
    );
}

/// Input as real clients send it: `httpConfig` with only `url` gets ISC's defaults; the headers SailPoint's clients
/// add (`X-SailPoint-Experimental`, `X-IDN-ORG`) are ignored; an unknown field is a 400 that names it (a typo such
/// as `filters` for `filter` would otherwise deliver every event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_input_is_taken_as_isc_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let relay = start(&config(dir.path(), &hook, "")).await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let post = |body: Value| {
        let (admin, auth) = (relay.admin_addr(), auth.clone());
        async move {
            request(
                "POST",
                admin,
                "/trigger-subscriptions/v1",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-sailpoint-experimental", "true"),
                    ("x-idn-org", "acme"),
                ],
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let url_only = json!({"name": "url only", "triggerId": "idn:identity-created", "type": "HTTP",
                          "httpConfig": {"url": hook.url("/url-only")}});
    let r = post(url_only).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let sub = r.json();
    assert_eq!(sub["httpConfig"]["httpDispatchMode"], "SYNC", "{sub}");
    assert_eq!(sub["enabled"], true, "{sub}");
    let typo = json!({"name": "typo", "triggerId": "idn:identity-created", "type": "HTTP",
                      "httpConfig": {"url": hook.url("/typo")}, "filters": "$.x"});
    let r = post(typo).await;
    isc_error(&r, 400, "unknown field `filters`");
}
