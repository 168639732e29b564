//! The TOML the tests start relays from, in parts: a sink, a subscription, an API token, each written once
//! here rather than as the same lines in every test. A part ends with a newline, so parts join by `format!`
//! or `+`; keys written after a table's part (`filter = …`, `ackMode = …`) belong to that table.
//! Shared by the integration tests (`tests/it/support` re-exports it) and the config's unit tests.

/// The trigger most tests post.
pub const CREATED: &str = "idn:identity-created";

/// The head of a config whose relay takes events without ingress auth and answers as `ack` says (`"accepted"`
/// or `"delivered"`): the integration tests' `OPEN_ACCEPTED` and `OPEN_DELIVERED` for any mode.
pub fn open(ack: &str) -> String {
    format!("[ingress.auth]\nnone = true\n[delivery]\nack = \"{ack}\"\n")
}

/// A `[[subscriptions]]` table: `name` on `trigger` with destination `kind` (`"KAFKA"`, `"STDOUT"`, …), then
/// `more`: its other keys, whole TOML lines (empty for none).
pub fn subscription(name: &str, trigger: &str, kind: &str, more: &str) -> String {
    let mut s = format!(
        "[[subscriptions]]\nname = \"{name}\"\ntriggerId = \"{trigger}\"\ntype = \"{kind}\"\n"
    );
    if !more.is_empty() {
        s.push_str(more);
        s.push('\n');
    }
    s
}

/// The `[[subscriptions]]` tables on [`CREATED`], one per `(name, kind, more)` (as [`subscription`]), in order.
pub fn subscriptions_on_created(subs: &[(&str, &str, &str)]) -> String {
    subs.iter()
        .map(|(name, kind, more)| subscription(name, CREATED, kind, more))
        .collect()
}

/// A KAFKA subscription of `trigger` to `topic`.
pub fn kafka_subscription(name: &str, trigger: &str, topic: &str) -> String {
    subscription(
        name,
        trigger,
        "KAFKA",
        &format!("kafkaConfig = {{ topic = \"{topic}\" }}"),
    )
}

/// A NATS subscription of `trigger` to `subject`.
pub fn nats_subscription(name: &str, trigger: &str, subject: &str) -> String {
    subscription(
        name,
        trigger,
        "NATS",
        &format!("natsConfig = {{ subject = \"{subject}\" }}"),
    )
}

/// An HTTP subscription of `trigger` to the webhook at `url`.
pub fn http_subscription(name: &str, trigger: &str, url: &str) -> String {
    subscription(
        name,
        trigger,
        "HTTP",
        &format!("httpConfig = {{ url = \"{url}\" }}"),
    )
}

/// The Kafka cluster `[sinks.kafka.<name>]` at `bootstrap`.
pub fn kafka_sink(name: &str, bootstrap: &str) -> String {
    format!("[sinks.kafka.{name}]\nbootstrap_servers = \"{bootstrap}\"\n")
}

/// The NATS connection `[sinks.nats.<name>]` to `server`.
pub fn nats_sink(name: &str, server: &str) -> String {
    format!("[sinks.nats.{name}]\nservers = [\"{server}\"]\n")
}

/// An `[[api.tokens]]` entry: the static token `token`, called `name`, with `scopes`.
pub fn api_token(name: &str, token: &str, scopes: &[&str]) -> String {
    let scopes = scopes
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[api.tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nscopes = [{scopes}]\n")
}

/// The `[[api.clients]]` entry `sdk` (the SDK's OAuth client), its secret's SHA-256 `digest`, allowed to manage
/// subscriptions and invocation statuses.
pub fn sdk_client(digest: &str) -> String {
    format!(
        "[[api.clients]]\nclient_id = \"sdk\"\nclient_secret_sha256 = \"{digest}\"\n\
         scopes = [\"sp:trigger-service-subscriptions:manage\", \"sp:trigger-service-invocation-status:manage\"]\n"
    )
}

/// An `[[api.tokens]]` entry with every scope (`sp:scopes:all`).
pub fn admin_token(name: &str, token: &str) -> String {
    api_token(name, token, &["sp:scopes:all"])
}

/// The Kafka cluster `main` at `bootstrap` and, on it, the subscription `name` of `trigger` to `topic`: the
/// route most Kafka tests post through.
pub fn kafka_route(bootstrap: &str, name: &str, trigger: &str, topic: &str) -> String {
    kafka_sink("main", bootstrap) + &kafka_subscription(name, trigger, topic)
}
