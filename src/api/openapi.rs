//! `GET /openapi.json`: the API as this relay serves it (ISC's Triggers API, both mounts, plus the relay's
//! own subscription types and fields), so clients can be generated or checked against it.

use serde_json::{json, Value};

fn op(summary: &str, scopes: &[&str], request: Option<Value>, ok: (&str, Value)) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{ "oauth2": scopes }],
        "responses": {
            ok.0: ok.1,
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "description": "Unauthorized: `{\"error\": \"...\"}`" },
            "403": { "$ref": "#/components/responses/Error" },
            "429": { "description": "Too many requests: `{\"message\": \" Rate Limit Exceeded \"}` and Retry-After" },
            "500": { "$ref": "#/components/responses/Error" }
        }
    });
    if let Some(r) = request {
        o["requestBody"] = r;
    }
    o
}

fn body(schema: &str, content_type: &str) -> Value {
    json!({ "required": true, "content": { content_type: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn ok_json(schema: Value) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": schema } } })
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_params() -> Value {
    json!([
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 250, "default": 250 } },
        { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } },
        { "name": "count", "in": "query", "schema": { "type": "boolean", "default": false } },
        { "name": "filters", "in": "query", "schema": { "type": "string" } },
        { "name": "sorters", "in": "query", "schema": { "type": "string" } }
    ])
}

/// The document, with every operation under `/beta/...` and `/.../v1`.
pub fn document() -> Value {
    const READ: &[&str] = &["sp:trigger-service-subscriptions:read"];
    const MANAGE: &[&str] = &["sp:trigger-service-subscriptions:manage"];
    const STATUS_READ: &[&str] = &["sp:trigger-service-invocation-status:read"];
    const STATUS_MANAGE: &[&str] = &["sp:trigger-service-invocation-status:manage"];
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let ops: Vec<(&str, &str, Value)> = vec![
        ("/triggers", "get", {
            let mut o = op(
                "List triggers",
                READ,
                None,
                (
                    "200",
                    ok_json(json!({ "type": "array", "items": r("Trigger") })),
                ),
            );
            o["parameters"] = list_params();
            o
        }),
        ("/trigger-subscriptions", "get", {
            let mut o = op(
                "List subscriptions",
                READ,
                None,
                (
                    "200",
                    ok_json(json!({ "type": "array", "items": r("Subscription") })),
                ),
            );
            o["parameters"] = list_params();
            o
        }),
        (
            "/trigger-subscriptions",
            "post",
            op(
                "Create a subscription",
                MANAGE,
                Some(body("SubscriptionPostRequest", "application/json")),
                ("201", ok_json(r("Subscription"))),
            ),
        ),
        (
            "/trigger-subscriptions/{id}",
            "get",
            op(
                "Get a subscription",
                READ,
                None,
                ("200", ok_json(r("Subscription"))),
            ),
        ),
        (
            "/trigger-subscriptions/{id}",
            "put",
            op(
                "Replace a subscription (id and triggerId cannot change)",
                MANAGE,
                Some(body("SubscriptionPostRequest", "application/json")),
                ("200", ok_json(r("Subscription"))),
            ),
        ),
        (
            "/trigger-subscriptions/{id}",
            "patch",
            op(
                "Patch a subscription (add, remove, replace, move, copy)",
                MANAGE,
                Some(body("JsonPatch", "application/json-patch+json")),
                ("200", ok_json(r("Subscription"))),
            ),
        ),
        (
            "/trigger-subscriptions/{id}",
            "delete",
            op(
                "Delete a subscription",
                MANAGE,
                None,
                ("204", json!({ "description": "Deleted" })),
            ),
        ),
        (
            "/trigger-subscriptions/validate-filter",
            "post",
            op(
                "Validate a JSONPath filter against an input",
                MANAGE,
                Some(body("ValidateFilterInputDto", "application/json")),
                ("200", ok_json(r("ValidateFilterOutputDto"))),
            ),
        ),
        ("/trigger-invocations/status", "get", {
            let mut o = op(
                "Latest invocation statuses",
                STATUS_READ,
                None,
                (
                    "200",
                    ok_json(json!({ "type": "array", "items": r("InvocationStatus") })),
                ),
            );
            o["parameters"] = list_params();
            o
        }),
        (
            "/trigger-invocations/test",
            "post",
            op(
                "Send a test invocation through the real sinks",
                STATUS_MANAGE,
                Some(body("TestInvocation", "application/json")),
                (
                    "200",
                    ok_json(json!({ "type": "array", "items": r("Invocation") })),
                ),
            ),
        ),
        (
            "/trigger-invocations/{id}/complete",
            "post",
            op(
                "Complete a REQUEST_RESPONSE invocation (never pending here: 400)",
                STATUS_MANAGE,
                None,
                ("204", json!({ "description": "Completed" })),
            ),
        ),
    ];
    let mut paths = serde_json::Map::new();
    for (path, method, mut o) in ops {
        if path.contains("{id}") {
            o["parameters"] = id_param.clone();
        }
        let error = json!({ "$ref": "#/components/responses/Error" });
        if path.starts_with("/trigger-subscriptions/{id}") {
            // An unknown id; a config-file subscription (read-only); an `If-Match` that no longer matches.
            for status in ["404", "409", "412"] {
                o["responses"][status] = error.clone();
            }
        }
        if o.get("requestBody").is_some() {
            // A body over 1 MiB; the API's store unreachable (writes are refused, with Retry-After).
            for status in ["413", "503"] {
                o["responses"][status] = error.clone();
            }
        }
        let (base, rest) = path.split_at(path[1..].find('/').map_or(path.len(), |i| i + 1));
        // ISC's two mounts, and the relay's (which also lists the relay's own subscription types).
        for mounted in [
            format!("/beta{path}"),
            format!("{base}/v1{rest}"),
            format!("/relay/v1{path}"),
        ] {
            let entry = paths.entry(mounted).or_insert_with(|| json!({}));
            entry[method] = o.clone();
        }
    }
    let mut full = subscription_properties();
    full["id"] = json!({ "type": "string" });
    full["triggerName"] = json!({ "type": "string" });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "trigger-relay Triggers API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SailPoint ISC's Triggers API as trigger-relay serves it, plus the relay's KAFKA, NATS, STDOUT and DISCARD types."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "oauth2": { "type": "oauth2", "flows": { "clientCredentials": { "tokenUrl": "/oauth/token", "scopes": {
                    "sp:trigger-service-subscriptions:read": "read subscriptions and triggers",
                    "sp:trigger-service-subscriptions:manage": "manage subscriptions",
                    "sp:trigger-service-invocation-status:read": "read invocation statuses",
                    "sp:trigger-service-invocation-status:manage": "start test invocations"
                } } } }
            },
            "responses": {
                "Error": { "description": "ErrorResponseDto", "content": { "application/json": { "schema": r("ErrorResponseDto") } } }
            },
            "schemas": {
                "ErrorResponseDto": { "type": "object", "properties": {
                    "detailCode": { "type": "string" }, "trackingId": { "type": "string" },
                    "messages": { "type": "array", "items": r("ErrorMessageDto") },
                    "causes": { "type": "array", "items": r("ErrorMessageDto") } } },
                "ErrorMessageDto": { "type": "object", "properties": {
                    "locale": { "type": "string" }, "localeOrigin": { "type": "string" }, "text": { "type": "string" } } },
                "Trigger": { "type": "object", "required": ["id", "name", "type", "inputSchema", "exampleInput"], "properties": {
                    "id": { "type": "string" }, "name": { "type": "string" },
                    "type": { "type": "string", "enum": ["FIRE_AND_FORGET", "REQUEST_RESPONSE"] },
                    "description": { "type": "string" }, "inputSchema": { "type": "string" }, "exampleInput": { "type": "object" },
                    "outputSchema": { "type": "string", "nullable": true }, "exampleOutput": { "type": "object", "nullable": true } } },
                "SubscriptionType": { "type": "string", "enum": ["HTTP", "EVENTBRIDGE", "INLINE", "SCRIPT", "WORKFLOW", "KAFKA", "NATS", "STDOUT", "DISCARD"],
                    "description": "INLINE, SCRIPT and WORKFLOW run inside ISC and are refused." },
                "SubscriptionPostRequest": { "type": "object", "required": ["name", "triggerId", "type"], "properties": subscription_properties() },
                "Subscription": { "type": "object", "required": ["id", "name", "triggerId", "triggerName", "type", "enabled"], "properties": full },
                "HttpConfig": { "type": "object", "required": ["url"], "properties": {
                    "url": { "type": "string" },
                    "httpDispatchMode": { "type": "string", "enum": ["SYNC", "ASYNC", "DYNAMIC"], "default": "SYNC" },
                    "httpAuthenticationType": { "type": "string", "enum": ["NO_AUTH", "BASIC_AUTH", "BEARER_TOKEN"], "default": "NO_AUTH" },
                    "basicAuthConfig": { "type": "object", "properties": { "userName": { "type": "string" }, "password": { "type": "string", "nullable": true, "writeOnly": true } } },
                    "bearerTokenAuthConfig": { "type": "object", "properties": { "bearerToken": { "type": "string", "nullable": true, "writeOnly": true } } } } },
                "EventBridgeConfig": { "type": "object", "required": ["awsAccount", "awsRegion"], "properties": {
                    "awsAccount": { "type": "string" }, "awsRegion": { "type": "string" },
                    "eventBusName": { "type": "string", "default": "default" }, "source": { "type": "string", "default": "sailpoint.isc" },
                    "endpointUrl": { "type": "string" }, "mode": { "type": "string", "enum": ["putEvents", "putPartnerEvents"], "default": "putEvents" } } },
                "KafkaConfig": { "type": "object", "required": ["topic"], "properties": {
                    "cluster": { "type": "string" }, "topic": { "type": "string" }, "key": { "type": "string", "default": "invocationId" } } },
                "NatsConfig": { "type": "object", "required": ["subject"], "properties": {
                    "connection": { "type": "string" }, "subject": { "type": "string" }, "jetstream": { "type": "boolean" }, "expectedStream": { "type": "string" } } },
                "DeadLetter": { "type": "object", "properties": { "kafkaConfig": r("KafkaConfig"), "natsConfig": r("NatsConfig") } },
                "CloudEventsConfig": { "type": "object", "properties": { "source": { "type": "string" }, "subject": { "type": "string", "description": "a JSON pointer into the payload" } } },
                "JsonPatch": { "type": "array", "items": { "type": "object", "required": ["op", "path"], "properties": {
                    "op": { "type": "string", "enum": ["add", "remove", "replace", "move", "copy"] }, "path": { "type": "string" }, "from": { "type": "string" }, "value": {} } } },
                "ValidateFilterInputDto": { "type": "object", "required": ["input", "filter"], "properties": { "input": { "type": "object" }, "filter": { "type": "string" } } },
                "ValidateFilterOutputDto": { "type": "object", "properties": { "isValid": { "type": "boolean" }, "isValidJSONPath": { "type": "boolean" }, "isPathExist": { "type": "boolean" } } },
                "TestInvocation": { "type": "object", "required": ["triggerId", "contentJson"], "properties": {
                    "triggerId": { "type": "string" }, "input": { "type": "object" }, "contentJson": { "type": "object" },
                    "subscriptionIds": { "type": "array", "items": { "type": "string" } } } },
                "Invocation": { "type": "object", "properties": { "id": { "type": "string" }, "triggerId": { "type": "string" }, "secret": { "type": "string" }, "contentJson": { "type": "object" } } },
                "InvocationStatus": { "type": "object", "required": ["id", "triggerId", "subscriptionId", "startInvocationInput", "type", "subscriptionName", "created"], "properties": {
                    "id": { "type": "string" }, "triggerId": { "type": "string" }, "subscriptionName": { "type": "string" }, "subscriptionId": { "type": "string" },
                    "type": { "type": "string", "enum": ["TEST", "REAL_TIME"] }, "created": { "type": "string", "format": "date-time" }, "completed": { "type": "string", "format": "date-time" },
                    "startInvocationInput": { "type": "object" }, "completeInvocationInput": { "type": "object" } } }
            }
        }
    })
}

fn subscription_properties() -> Value {
    json!({
        "name": { "type": "string" },
        "description": { "type": "string" },
        "triggerId": { "type": "string" },
        "type": r("SubscriptionType"),
        "responseDeadline": { "type": "string", "default": "PT1H" },
        "enabled": { "type": "boolean", "default": true },
        "filter": { "type": "string" },
        "httpConfig": r("HttpConfig"),
        "eventBridgeConfig": r("EventBridgeConfig"),
        "kafkaConfig": r("KafkaConfig"),
        "natsConfig": r("NatsConfig"),
        "ackMode": { "type": "string", "enum": ["accepted", "delivered"] },
        "deadLetter": r("DeadLetter"),
        "envelope": { "type": "string", "enum": ["none", "cloudevents-binary", "cloudevents-structured"], "default": "none" },
        "cloudEvents": r("CloudEventsConfig")
    })
}
