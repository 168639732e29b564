//! Config validation: a broken config gives every error with its key path, and exactly those errors (the
//! `check()` table below). `tests/it/config.rs` runs `check-config` on the binary.

use std::collections::HashMap;

use trigger_relay_testkit::toml::{
    kafka_sink, kafka_subscription, nats_sink, subscription, subscriptions_on_created, CREATED,
};

use super::Config;

const BASE: &str = "[ingress.auth]\nnone = true\n";

/// `toml` is appended to a minimal valid config; every `want` must be one of the reported errors (prefix match).
fn check(toml: &str, want: &[&str]) {
    let env: HashMap<&str, &str> = [("SET", "value")].into();
    let text = format!("{toml}\n{BASE}");
    let errors = match Config::from_toml_with_env(&text, |k| env.get(k).map(|v| v.to_string())) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    for w in want {
        assert!(
            errors.iter().any(|e| e.starts_with(w)),
            "want {w:?} in {errors:#?}\nconfig:\n{text}"
        );
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
}

#[test]
fn broken_configs_name_every_error_with_its_key_path() {
    check(
        "[ingress]\nmax_body_byte = 1\n",
        &["ingress.max_body_byte: unknown field `max_body_byte`"],
    );
    check(
        "[delivery]\nack = \"sometimes\"\n",
        &["delivery.ack: unknown variant `sometimes`"],
    );
    check(
        "[delivery]\nack_timeout_ms = \"5s\"\n",
        &["delivery.ack_timeout_ms: invalid type"],
    );
    check(
        "x = \"${TRIGGER_RELAY_UNSET_VAR_FOR_TEST}\"\ny = \"${SET\"\n",
        &[
            "x: environment variable `TRIGGER_RELAY_UNSET_VAR_FOR_TEST` is not set",
            "y: unterminated",
        ],
    );
    check("[[subscriptions]]\nname = \"a\"\ntriggerId = \"idn:identity-created\"\ntype = \"STDOUT\"\ncolor = 1\n", &["subscriptions[0].color: unknown field `color`"]);
    check(
        "[delivery]\nack_timeout_ms = 10000\ndelivery_timeout_ms = 5\nshutdown_grace_ms = 0\n",
        &[
            "delivery.ack_timeout_ms:",
            "delivery.delivery_timeout_ms:",
            "delivery.shutdown_grace_ms:",
        ],
    );
    let sinks = r#"
[sinks.kafka.a]
bootstrap_servers = ""
acks = "1"
options = { "linger.ms" = 3, "no.such.property" = "x" }
[sinks.kafka.a.queue]
max_events = 0
[sinks.kafka.b]
bootstrap_servers = "h:9092"
options = { "no.such.property" = "x" }
"#;
    let pre_approval = subscription(
        "k",
        "idn:access-request-pre-approval",
        "KAFKA",
        r#"kafkaConfig = { topic = "ok", cluster = "c" }"#,
    );
    let rest = subscriptions_on_created(&[
        ("no config", "KAFKA", ""),
        ("wf", "WORKFLOW", ""),
        ("mixed", "STDOUT", r#"kafkaConfig = { topic = "t" }"#),
    ]);
    check(
        &format!(
            "{sinks}{}{pre_approval}{rest}",
            kafka_subscription("k", CREATED, "bad topic")
        ),
        &[
            "sinks.kafka.a.bootstrap_servers: must not be empty",
            "sinks.kafka.a.acks: enable_idempotence needs acks",
            "sinks.kafka.a.queue.max_events:",
            "sinks.kafka.a.options.linger.ms: set `linger_ms` instead",
            "sinks.kafka.b.options: librdkafka refuses",
            "subscriptions[0].kafkaConfig.cluster: several Kafka clusters",
            "subscriptions[0].kafkaConfig.topic: ` ` is not allowed",
            "subscriptions[1].triggerId: `idn:access-request-pre-approval` is a REQUEST_RESPONSE trigger",
            "subscriptions[1].kafkaConfig.cluster: unknown Kafka cluster `c`",
            "subscriptions[1].name: `k` is used by another subscription",
            "subscriptions[2].kafkaConfig: required for type KAFKA",
            "subscriptions[3].type: type WORKFLOW runs inside ISC",
            "subscriptions[4].kafkaConfig: does not go with type STDOUT",
        ],
    );
    check(
        "[[catalog.triggers]]\nid = \"idn:identity-created\"\nname = \"dup\"\ntype = \"FIRE_AND_FORGET\"\n",
        &["catalog.triggers[0].id: `idn:identity-created` is already in the catalog"],
    );
    check(
        "[ingress.auth]\nbasic = []\n",
        &["line 4: invalid TOML: duplicate key"],
    );
    check(
        "[ingress]\nmax_body_bytes = 2000000\n[sinks.kafka.k]\nbootstrap_servers = \"h:1\"\n[sinks.kafka.k.queue]\nmax_bytes = 1048576\n",
        &[
            "sinks.kafka.k.queue.max_bytes: must be at least 2002048 (ingress.max_body_bytes 2000000 + 2048, what each event costs this kind besides its body)",
        ],
    );
    // A Kafka event costs its queue more than its body (`SinkKind::event_overhead_bytes`); a STDOUT one does not.
    check(
        "[ingress]\nmax_body_bytes = 1048576\n[sinks.kafka.k]\nbootstrap_servers = \"h:1\"\n[sinks.kafka.k.queue]\nmax_bytes = 1048576\n[sinks.stdout.queue]\nmax_bytes = 1048576\n",
        &["sinks.kafka.k.queue.max_bytes: must be at least 1050624 (ingress.max_body_bytes 1048576 + 2048"],
    );
}

#[test]
fn nats_config_errors() {
    let subs = subscriptions_on_created(&[
        ("n0", "NATS", r#"natsConfig = { subject = "isc.*" }"#),
        (
            "n1",
            "NATS",
            r#"natsConfig = { connection = "b", subject = "isc.{trigger}", expectedStream = "S" }"#,
        ),
        ("n2", "NATS", ""),
    ]);
    check(
        &format!(
            "[sinks.nats.a]\nservers = []\nuser = \"u\"\ntoken = \"t\"\nmax_in_flight = 0\n{}{subs}",
            nats_sink("b", "nats://h:4222")
        ),
        &[
            "sinks.nats.a.servers: list at least one server URL",
            "sinks.nats.a.password: user and password go together",
            "sinks.nats.a: choose one of",
            "sinks.nats.a.max_in_flight:",
            "subscriptions[0].natsConfig.connection: several NATS connections are configured (a, b)",
            "subscriptions[0].natsConfig.subject: `isc.*` has a wildcard",
            "subscriptions[1].natsConfig.expectedStream: needs jetstream = true",
            "subscriptions[2].natsConfig: required for type NATS",
        ],
    );
}

#[test]
fn kafka_settings_librdkafka_refuses_only_at_start_up() {
    check(
        r#"
[delivery]
delivery_timeout_ms = 6000
[sinks.kafka.a]
bootstrap_servers = "h:9092"
linger_ms = 6000
options = { "max.in.flight" = 10 }
"#,
        &[
            "sinks.kafka.a.linger_ms: must be less than delivery.delivery_timeout_ms (6000)",
            "sinks.kafka.a.options.max.in.flight: must be at most 5 with enable_idempotence",
        ],
    );
}

#[test]
fn http_and_eventbridge_config_errors() {
    let subs = subscriptions_on_created(&[
        (
            "h0",
            "HTTP",
            r#"httpConfig = { url = "ftp://x/", httpDispatchMode = "ASYNC" }"#,
        ),
        (
            "h1",
            "HTTP",
            r#"httpConfig = { url = "https://hook.example/isc", httpAuthenticationType = "BASIC_AUTH" }"#,
        ),
        (
            "h2",
            "HTTP",
            r#"httpConfig = { url = "https://hook.example/isc", httpAuthenticationType = "BEARER_TOKEN", bearerTokenAuthConfig = {} }"#,
        ),
        ("h3", "HTTP", ""),
        (
            "e0",
            "EVENTBRIDGE",
            r#"eventBridgeConfig = { awsAccount = "12", awsRegion = "US East", source = "aws.events" }"#,
        ),
        (
            "e1",
            "EVENTBRIDGE",
            r#"eventBridgeConfig = { awsAccount = "123456789012", awsRegion = "eu-west-1", mode = "putPartnerEvents", endpointUrl = "localhost:4566" }"#,
        ),
    ]);
    check(
        &format!(
            "[sinks.eventbridge]\nmax_entry_bytes = 2000000\nmax_in_flight = 0\n[sinks.http]\nrequest_timeout_ms = 0\n{subs}"
        ),
        &[
            "sinks.eventbridge.max_entry_bytes: must be between 1024 and 1048576",
            "sinks.eventbridge.max_in_flight:",
            "sinks.http.request_timeout_ms:",
            "subscriptions[0].httpConfig.httpDispatchMode: ASYNC is for REQUEST_RESPONSE triggers",
            "subscriptions[0].httpConfig.url: `ftp://x/` must be an http:// or https:// URL",
            "subscriptions[1].httpConfig.basicAuthConfig: required for httpAuthenticationType BASIC_AUTH",
            "subscriptions[2].httpConfig.bearerTokenAuthConfig.bearerToken: required",
            "subscriptions[3].httpConfig: required for type HTTP",
            "subscriptions[4].eventBridgeConfig.awsAccount: must be a 12-digit AWS account id",
            "subscriptions[4].eventBridgeConfig.awsRegion: `US East` is not an AWS region",
            "subscriptions[4].eventBridgeConfig.source: sources starting with `aws.` are AWS's own",
            "subscriptions[5].eventBridgeConfig.source: a partner event source is named `aws.partner/",
            "subscriptions[5].eventBridgeConfig.endpointUrl: `localhost:4566` is not an http(s) URL",
        ],
    );
}

#[test]
fn dead_letter_errors() {
    let nats = r#"natsConfig = { subject = "isc.{trigger}" }"#;
    let subs = subscriptions_on_created(&[
        (
            "both",
            "KAFKA",
            r#"kafkaConfig = { topic = "t" }
deadLetter = { kafkaConfig = { topic = "dlq" }, natsConfig = { subject = "dlq" } }"#,
        ),
        (
            "bad names",
            "NATS",
            &format!(
                r#"{nats}
deadLetter = {{ kafkaConfig = {{ topic = "dl q", cluster = "x" }} }}"#
            ),
        ),
        (
            "bad subject",
            "NATS",
            &format!(
                r#"{nats}
deadLetter = {{ natsConfig = {{ subject = "dlq.>" , expectedStream = "S" }} }}"#
            ),
        ),
        (
            "stdout",
            "STDOUT",
            r#"deadLetter = { natsConfig = { subject = "dlq" } }"#,
        ),
    ]);
    check(
        &format!(
            "{}{}{subs}",
            kafka_sink("k", "h:9092"),
            nats_sink("n", "nats://h:4222")
        ),
        &[
            "subscriptions[0].deadLetter: set exactly one of",
            "subscriptions[1].deadLetter.kafkaConfig.cluster: unknown Kafka cluster `x`",
            "subscriptions[1].deadLetter.kafkaConfig.topic: ` ` is not allowed",
            "subscriptions[2].deadLetter.natsConfig.subject:",
            "subscriptions[2].deadLetter.natsConfig.expectedStream: is not used",
            "subscriptions[3].deadLetter: STDOUT subscriptions cannot fail",
        ],
    );
}

#[test]
fn auth_must_be_explicit() {
    let e = Config::from_toml("").unwrap_err().to_string();
    assert!(e.starts_with("ingress.auth: missing"), "{e}");
    let e = Config::from_toml("[ingress.auth]\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ingress.auth: no credentials"), "{e}");
    let e = Config::from_toml("[ingress.auth]\nnone = true\nbearer_tokens = [\"t\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ingress.auth.none:"), "{e}");
}

#[test]
fn env_interpolation_and_secrets_stay_out_of_debug() {
    let env: HashMap<&str, &str> = [
        ("TOKEN", "tok-123-0123456789abcdef0123456789"),
        ("USER_PW", "pw-456"),
    ]
    .into();
    let c = Config::from_toml_with_env(
        "[env]\nallow = [\"TOKEN\", \"USER_PW\"]\n[ingress.auth]\nbearer_tokens = [\"${TOKEN}\"]\nbasic = [{ username = \"u\", password = \"${USER_PW}\" }]\n[log]\nlevel = \"$${literal}\"\n",
        |k| env.get(k).map(|v| v.to_string()),
    )
    .unwrap();
    let c2 = Config::from_toml_with_env(
        "[env]\nallow = [\"USER_PW\"]\n[ingress.auth]\nnone = true\n[sinks.kafka.k]\nbootstrap_servers = \"h:1\"\noptions = { \"sasl.username\" = \"u\", \"sasl.password\" = \"${USER_PW}\" }\n",
        |k| env.get(k).map(|v| v.to_string()),
    )
    .unwrap();
    let dbg = format!("{c2:?}");
    assert!(
        !dbg.contains("pw-456") && dbg.contains("sasl.password=***"),
        "Kafka options leak in Debug: {dbg}"
    );
    let auth = c.ingress.auth.as_ref().unwrap();
    assert_eq!(
        auth.bearer_tokens[0].expose(),
        "tok-123-0123456789abcdef0123456789"
    );
    assert_eq!(c.log.level, "${literal}");
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains("tok-123-0123456789abcdef0123456789") && !dbg.contains("pw-456"),
        "secrets leak in Debug: {dbg}"
    );
}

#[test]
fn ingress_rate_limit_errors() {
    check(
        "[ingress.rate_limit]\nper_ip_requests = 0\nper_credential_requests = 0\nwindow_ms = 0\nmax_tracked_keys = 0\n",
        &[
            "ingress.rate_limit.per_ip_requests: must be greater than 0",
            "ingress.rate_limit.per_credential_requests: must be greater than 0",
            "ingress.rate_limit.window_ms: must be between 1 and 3600000",
            "ingress.rate_limit.max_tracked_keys: must be between 1 and 10000000",
        ],
    );
    // BASE has `none = true`: no credential to count by.
    check(
        "[ingress.rate_limit]\nper_credential_requests = 5\nwindow_ms = 3600001\nmax_tracked_keys = 10000001\n",
        &[
            "ingress.rate_limit.per_credential_requests: needs credentials",
            "ingress.rate_limit.window_ms:",
            "ingress.rate_limit.max_tracked_keys:",
        ],
    );
    check(
        "[ingress.rate_limit]\nper_ip_request = 5\n",
        &["ingress.rate_limit.per_ip_request: unknown field `per_ip_request`"],
    );
    check(
        "[ingress.rate_limit]\nper_ip_requests = -1\n",
        &["ingress.rate_limit.per_ip_requests: invalid value"],
    );
}

#[test]
fn ingress_rate_limit_is_off_by_default_and_optional_per_scope() {
    let c = Config::from_toml(BASE).unwrap();
    let rl = &c.ingress.rate_limit;
    assert_eq!(
        (rl.per_ip_requests, rl.per_credential_requests),
        (None, None)
    );
    let c = Config::from_toml(&format!(
        "{BASE}[ingress.rate_limit]\nper_ip_requests = 50\n"
    ))
    .unwrap();
    let rl = &c.ingress.rate_limit;
    assert_eq!(
        (
            rl.per_ip_requests,
            rl.per_credential_requests,
            rl.window_ms,
            rl.max_tracked_keys
        ),
        (Some(50), None, 1_000, 100_000)
    );
    let printed = c.to_redacted_toml();
    assert!(
        printed.contains("[ingress.rate_limit]") && printed.contains("per_ip_requests = 50"),
        "{printed}"
    );
}

#[test]
fn credentials_and_token_settings_are_bounded() {
    // Static tokens under 32 bytes are refused, on the ingress (after interpolation) and on the API.
    let env: HashMap<&str, &str> = [("ISC_SHORT", "short-token")].into();
    let errors: Vec<String> = Config::from_toml_with_env(
        "[ingress.auth]\nbearer_tokens = [\"${ISC_SHORT}\", \"0123456789abcdef0123456789abcdef\"]\n",
        |k| env.get(k).map(|v| v.to_string()),
    )
    .unwrap_err()
    .0
    .iter()
    .map(|e| e.to_string())
    .collect();
    assert_eq!(
        errors,
        ["ingress.auth.bearer_tokens[0]: must be at least 32 bytes (generate one with `openssl rand -hex 32`)"],
        "the 32-byte token passes, the short one does not, and the error shows no token"
    );
    let api = "[api]\nenabled = true\nstore_path = \"/tmp/x.json\"\n";
    check(
        &format!("{api}[[api.tokens]]\nname = \"t\"\ntoken = \"sixteen-chars-ok\"\nscopes = [\"sp:scopes:all\"]\n"),
        &["api.tokens[0].token: must be at least 32 bytes"],
    );
    check(
        &format!("{api}token_ttl_s = 9223372036854775807\nauth_failure_limit = 0\n[[api.tokens]]\nname = \"t\"\ntoken = \"0123456789abcdef0123456789abcdef\"\nscopes = [\"sp:scopes:all\"]\n"),
        &[
            "api.token_ttl_s: must be 1 to 86400 (24 h)",
            "api.auth_failure_limit: must be greater than 0",
        ],
    );
    // A shared store needs the keys every replica shares, of a real length, and a NATS connection that exists.
    let token = "[[api.tokens]]\nname = \"t\"\ntoken = \"0123456789abcdef0123456789abcdef\"\nscopes = [\"sp:scopes:all\"]\n";
    check(
        &format!("[api]\nenabled = true\n{token}[api.store]\nkind = \"nats\"\nconnection = \"nope\"\nbucket = \"a.b\"\nreplicas = 7\nhistory = 0\nrequest_timeout_ms = 0\nstatus_bucket = \"a.b\"\nstatus_max_bytes = 1\n"),
        &[
            "api.store.connection: no NATS connection `nope`",
            "api.store.bucket: 1 to 64 characters",
            "api.store.replicas: must be 1 to 5",
            "api.store.history: must be 1 to 64",
            "api.store.request_timeout_ms: must be 1 to 60000",
            "api.store.status_bucket: 1 to 64 characters",
            "api.store.status_max_bytes: must be 1 MiB to 1 GiB",
            "api.store_key: required with a shared store",
            "api.token_signing_key: required with a shared store",
        ],
    );
    check(
        &format!("[api]\nenabled = true\nstore_path = \"/tmp/x.json\"\nstore_key = \"short\"\ntoken_signing_key = \"short\"\ntoken_verification_keys = [\"short\"]\n{token}[api.store]\nkind = \"file\"\npath = \"/tmp/y.json\"\n"),
        &[
            "api.store_path: set either api.store_path or [api.store], not both",
            "api.store_key: must be at least 32 bytes",
            "api.token_signing_key: must be at least 32 bytes",
            "api.token_verification_keys[0]: must be at least 32 bytes",
        ],
    );
    check(
        &format!("[api]\nenabled = true\n{token}[api.store]\nkind = \"kafka\"\ncluster = \"nope\"\ntopic = \"t\"\nstatus_topic = \"t\"\nreplication_factor = 0\nstatus_max_bytes = 5\nrequest_timeout_ms = 0\n"),
        &[
            "api.store.cluster: no Kafka cluster `nope`",
            "api.store.status_topic: must differ from api.store.topic",
            "api.store.replication_factor: must be 1 to 5",
            "api.store.status_max_bytes: must be 1 MiB to 1 GiB",
            "api.store.request_timeout_ms: must be 1 to 60000",
            "api.store_key: required with a shared store",
            "api.token_signing_key: required with a shared store",
        ],
    );
    check(
        &format!("[api]\nenabled = true\n{token}[api.store]\nkind = \"etcd\"\n"),
        &["api.store.kind: unknown variant `etcd`, expected one of `file`, `nats`, `kafka`"],
    );
    // A webhook URL with a password is refused, and the password is not in the message.
    let e = Config::from_toml(
        "[ingress.auth]\nnone = true\n[[subscriptions]]\nname = \"s\"\ntriggerId = \"idn:identity-created\"\ntype = \"HTTP\"\nhttpConfig = { url = \"https://u:hunter2@example.com/x\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "must not contain a user name or password: use httpAuthenticationType BASIC_AUTH"
        ),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn create_topics_errors() {
    check(
        "[sinks.kafka.k]\nbootstrap_servers = \"h:9092\"\n[sinks.kafka.k.create_topics]\npartitions = 0\nreplication_factor = 99\n",
        &[
            "sinks.kafka.k.create_topics.partitions: must be between 1 and 10000",
            "sinks.kafka.k.create_topics.replication_factor: must be between 1 and 32",
        ],
    );
    check(
        "[sinks.kafka.k]\nbootstrap_servers = \"h:9092\"\n[sinks.kafka.k.create_topics]\ncount = 1\n",
        &["sinks.kafka.k.create_topics.count: unknown field `count`"],
    );
}

#[test]
fn envelope_errors() {
    let subs = subscriptions_on_created(&[
        (
            "eventbridge",
            "EVENTBRIDGE",
            r#"eventBridgeConfig = { awsAccount = "123456789012", awsRegion = "us-east-1" }
envelope = "cloudevents-binary""#,
        ),
        (
            "no envelope",
            "STDOUT",
            r#"cloudEvents = { source = "urn:x" }"#,
        ),
        (
            "bad subject",
            "STDOUT",
            r#"envelope = "cloudevents-structured"
cloudEvents = { subject = "identity/id" }"#,
        ),
        (
            "bad escape",
            "DISCARD",
            r#"envelope = "cloudevents-binary"
cloudEvents = { subject = "/a~2b", source = "urn:\u0007" }"#,
        ),
    ]);
    check(
        &format!("[cloudevents]\nsource = \"\"\n{subs}"),
        &[
            "cloudevents.source: must not be empty",
            "subscriptions[0].envelope: a CloudEvents envelope applies to KAFKA, NATS and HTTP subscriptions, not EVENTBRIDGE",
            "subscriptions[1].cloudEvents: is used only with envelope",
            "subscriptions[2].envelope: a CloudEvents envelope applies to KAFKA, NATS and HTTP subscriptions, not STDOUT",
            "subscriptions[2].cloudEvents.subject: `identity/id` is not a JSON pointer",
            "subscriptions[3].envelope: a CloudEvents envelope applies to KAFKA, NATS and HTTP subscriptions, not DISCARD",
            "subscriptions[3].cloudEvents.source: must not contain control characters",
            "subscriptions[3].cloudEvents.subject: `/a~2b` is not a JSON pointer",
        ],
    );
    check(
        "[tracing]\notlp_endpoint = \"collector:4318\"\notlp_protocol = \"grpc\"\n",
        &["tracing.otlp_protocol: unknown variant `grpc`"],
    );
    check(
        "[tracing]\notlp_endpoint = \"collector:4318\"\nservice_name = \" \"\nexport_interval_ms = 0\nmax_queued_spans = 0\n",
        &[
            "tracing.otlp_endpoint: `collector:4318` is not an http(s) URL",
            "tracing.service_name: must not be empty",
            "tracing.export_interval_ms: must be between 1 and 60000",
            "tracing.max_queued_spans: must be between 1 and 1000000",
        ],
    );
    check(
        "[[subscriptions]]\nname = \"x\"\ntriggerId = \"idn:identity-created\"\ntype = \"STDOUT\"\nenvelope = \"cloudevents\"\n",
        &["subscriptions[0].envelope: unknown variant `cloudevents`"],
    );
    check(
        "[isc]\ntenant_url = \"acme.api.identitynow.com\"\nclient_id = \" \"\nclient_secret = \"\"\n\
         public_url = \"https://user:pw@relay.example.com\"\nrelay_api_url = \"http://relay:9090/?x=1\"\n\
         instance = \"a b\"\nrate_limit_requests = 101\n",
        &[
            "isc.tenant_url: must start with https://",
            "isc.public_url: must not carry credentials",
            "isc.relay_api_url: must not have a query",
            "isc.client_id: must not be empty",
            "isc.client_secret: must not be empty",
            "isc.instance: must be 1 to 64 characters",
            "isc.rate_limit_requests: must be between 1 and 100",
            "isc.credential: is \"bearer\" but ingress.auth.bearer_tokens is empty",
        ],
    );
    check(
        "[isc]\ntenant_url = \"https://acme.api.identitynow.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         public_url = \"https://relay.example.com\"\ncredential = \"token\"\n",
        &["isc.credential: unknown variant `token`"],
    );
    check(
        "[isc]\ntenant_url = \"http://acme.api.identitynow.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         public_url = \"http://relay.example.com\"\nrelay_api_url = \"http://trigger-relay-admin:9090\"\n",
        &[
            "isc.tenant_url: must use https://",
            "isc.public_url: must use https://",
            "isc.credential: is \"bearer\" but ingress.auth.bearer_tokens is empty",
        ],
    );
}
