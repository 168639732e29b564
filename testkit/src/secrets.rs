//! The config every kind of secret appears in, each with a distinct value, and the check that a text shows
//! none of them: shared by the config's unit tests (redaction, interpolation) and the integration test that runs
//! `check-config --print` on the binary.

use std::collections::HashMap;

/// Every kind of secret the config holds, each with a distinct value.
pub const ALL_SECRETS: &str = r#"
[env]
allow = ["EXTRA_NAME"]
[ingress.auth]
bearer_tokens = ["${ISC_BEARER_TOKEN}", "literal-bearer-999-0123456789abcdef0123456789"]
basic = [{ username = "isc", password = "${ISC_BASIC_PASSWORD}" }]
[sinks.kafka.main]
bootstrap_servers = "${KAFKA_BOOTSTRAP_SERVERS}"
options = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN", "sasl.username" = "${KAFKA_USERNAME}", "sasl.password" = "${KAFKA_PASSWORD}", ssl = { key = { password = "keypw-555" } }, "client.id" = "${EXTRA_NAME}" }
[sinks.nats.main]
servers = ["nats://relay:nats-url-pw-777@127.0.0.1:4222"]
token = "${NATS_TOKEN}"
[[subscriptions]]
name = "k"
triggerId = "idn:identity-created"
type = "KAFKA"
kafkaConfig = { topic = "t" }
[[subscriptions]]
name = "n"
triggerId = "idn:identity-created"
type = "NATS"
natsConfig = { subject = "isc.{trigger}" }
[[subscriptions]]
name = "hb"
triggerId = "idn:identity-created"
type = "HTTP"
httpConfig = { url = "https://hook.example/x", httpAuthenticationType = "BASIC_AUTH", basicAuthConfig = { userName = "u", password = "hook-basic-888" } }
[[subscriptions]]
name = "ht"
triggerId = "idn:identity-created"
type = "HTTP"
httpConfig = { url = "https://hook.example/y", httpAuthenticationType = "BEARER_TOKEN", bearerTokenAuthConfig = { bearerToken = "hook-bearer-666" } }
"#;

/// The values of every secret in [`ALL_SECRETS`] once interpolated with [`env()`].
pub const SECRET_VALUES: &[&str] = &[
    "tok-111-0123456789abcdef0123456789",
    "basic-222",
    "sasl-333",
    "nats-444",
    "keypw-555",
    "hook-bearer-666",
    "nats-url-pw-777",
    "hook-basic-888",
    "literal-bearer-999-0123456789abcdef0123456789",
];

/// The process environment [`ALL_SECRETS`] is read with (plus one variable outside the default allow-list).
pub fn env() -> HashMap<&'static str, &'static str> {
    [
        ("ISC_BEARER_TOKEN", "tok-111-0123456789abcdef0123456789"),
        ("ISC_BASIC_PASSWORD", "basic-222"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        ("KAFKA_USERNAME", "kafka-user"),
        ("KAFKA_PASSWORD", "sasl-333"),
        ("NATS_TOKEN", "nats-444"),
        ("EXTRA_NAME", "relay-client-0123456789abcdef012345"),
        ("DATABASE_PASSWORD", "db-000-0123456789abcdef0123456789ab"),
    ]
    .into()
}

/// `text` (what `what` printed) contains none of [`SECRET_VALUES`].
pub fn assert_no_secret(what: &str, text: &str) {
    for s in SECRET_VALUES {
        assert!(!text.contains(s), "{what} shows the secret `{s}`:\n{text}");
    }
}
