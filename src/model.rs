//! The subscription model: ISC's Triggers API `Subscription`, plus trigger-relay's own sink types.
//!
//! One model serves the config file and (later) the management API, so a subscription written in TOML and one
//! `POST`ed as JSON are the same object with the same field names (`name`, `triggerId`, `type`, `enabled`,
//! `filter`, `httpConfig`, `eventBridgeConfig`, plus `kafkaConfig` for the relay's `KAFKA` type).

use serde::{Deserialize, Serialize};

/// A secret string: never printed by `Debug` or `Display`, and serialised only as `"***"` (what a printed config
/// and a log show). It has no other serialised form: the API's answers carry [`Withheld`] in its place (ISC
/// answers `null`) and the store carries [`Sealed`] (see [`Subscription::try_map_secrets`]), each an explicit
/// conversion of the whole subscription.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used (auth checks, sink connections, sealing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A secret left out of an API answer: serialised as `null`, as ISC answers (secrets are write-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withheld;

impl Serialize for Withheld {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

/// A secret as the subscription store holds it: sealed with the store key (or in clear without one); the
/// store's `Sealer` makes and opens it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(pub String);

/// ISC's `SubscriptionType`, plus the relay's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SubscriptionType {
    Http,
    Eventbridge,
    Inline,
    Script,
    Workflow,
    /// trigger-relay: publish to a Kafka topic (`kafkaConfig`).
    Kafka,
    /// trigger-relay: publish to NATS (`natsConfig`).
    Nats,
    /// trigger-relay: write JSON lines to standard output (development).
    Stdout,
    /// trigger-relay: acknowledge and drop (benchmarks, dry runs).
    Discard,
}

impl SubscriptionType {
    /// One of ISC's own types (what SailPoint's SDK models know), not one the relay added.
    pub fn is_isc(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Eventbridge | Self::Inline | Self::Script | Self::Workflow
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Eventbridge => "EVENTBRIDGE",
            Self::Inline => "INLINE",
            Self::Script => "SCRIPT",
            Self::Workflow => "WORKFLOW",
            Self::Kafka => "KAFKA",
            Self::Nats => "NATS",
            Self::Stdout => "STDOUT",
            Self::Discard => "DISCARD",
        }
    }
}

/// When the ingress answers ISC: after the broker acknowledged (`DELIVERED`) or once the event is queued
/// (`ACCEPTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    Accepted,
    Delivered,
}

/// ISC's `HttpConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig<S = Secret> {
    pub url: String,
    #[serde(default = "default_dispatch")]
    pub http_dispatch_mode: String,
    #[serde(default)]
    pub http_authentication_type: Option<String>,
    #[serde(default)]
    pub basic_auth_config: Option<BasicAuthConfig<S>>,
    #[serde(default)]
    pub bearer_token_auth_config: Option<BearerTokenAuthConfig<S>>,
}

fn default_dispatch() -> String {
    "SYNC".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthConfig<S = Secret> {
    pub user_name: String,
    #[serde(default)]
    pub password: Option<S>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerTokenAuthConfig<S = Secret> {
    #[serde(default)]
    pub bearer_token: Option<S>,
}

/// ISC's `EventBridgeConfig` (`awsAccount`, `awsRegion`), plus what a self-hosted relay needs: the bus, the
/// source, an endpoint override (moto, LocalStack) and which API to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventBridgeConfig {
    pub aws_account: String,
    pub aws_region: String,
    /// `putEvents` mode: the bus name or ARN (`default` is the account's default bus).
    #[serde(default = "default_bus")]
    pub event_bus_name: String,
    /// The entries' `Source`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Another endpoint than AWS's for the region (moto, LocalStack, a VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub mode: EventBridgeMode,
}

fn default_bus() -> String {
    "default".into()
}

fn default_source() -> String {
    "sailpoint.isc".into()
}

/// Which EventBridge API the relay calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventBridgeMode {
    /// PutEvents to the customer's own bus (at most 10 entries per call).
    #[default]
    PutEvents,
    /// PutPartnerEvents from a registered SaaS partner source (at most 20 entries per call).
    PutPartnerEvents,
}

/// Where a Kafka record's key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KafkaKey {
    /// `_metadata.invocationId` (no key when the payload has none).
    #[default]
    InvocationId,
    /// No key: records spread over partitions.
    None,
    /// A JSON pointer (RFC 6901) into the payload; a string value is used as is, any other value as its JSON
    /// text; a missing value gives no key.
    Pointer(String),
}

impl KafkaKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "invocationId" => Ok(Self::InvocationId),
            "none" => Ok(Self::None),
            p if p.starts_with('/') => Ok(Self::Pointer(p.to_string())),
            other => Err(format!(
                "`{other}` is not a key source: use \"invocationId\", \"none\" or a JSON pointer such as \"/identity/id\""
            )),
        }
    }
    fn as_string(&self) -> String {
        match self {
            Self::InvocationId => "invocationId".into(),
            Self::None => "none".into(),
            Self::Pointer(p) => p.clone(),
        }
    }
}

impl Serialize for KafkaKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for KafkaKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// trigger-relay's `kafkaConfig`: which cluster (a `[sinks.kafka.NAME]` table), which topic, which key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSubscriptionConfig {
    /// Name of the cluster in `[sinks.kafka.NAME]`; may be left out when exactly one cluster is configured.
    #[serde(default)]
    pub cluster: Option<String>,
    pub topic: String,
    #[serde(default)]
    pub key: KafkaKey,
}

/// trigger-relay's `natsConfig`: which connection (a `[sinks.nats.NAME]` table), which subject, core or
/// JetStream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSubscriptionConfig {
    /// Name of the connection in `[sinks.nats.NAME]`; may be left out when exactly one is configured.
    #[serde(default)]
    pub connection: Option<String>,
    /// Subject template: `{trigger}` is the trigger id without `idn:` (`isc.{trigger}` → `isc.identity-created`).
    pub subject: String,
    /// Publish to JetStream and wait for the stream's ack (durable), instead of core NATS (at most once).
    #[serde(default)]
    pub jetstream: bool,
    /// JetStream: the stream that must hold the subject (`Nats-Expected-Stream`).
    #[serde(default)]
    pub expected_stream: Option<String>,
}

/// ISC's `Subscription` (as written in a config file or sent to the API). `S` is how its secrets are held:
/// [`Secret`] in memory, [`Withheld`] in an API answer, [`Sealed`] in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription<S = Secret> {
    /// Left out in a config file, it is derived from `name` (a stable UUID v5), so it survives restarts.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub trigger_id: String,
    /// ISC's responses carry it; in a request it is ignored (the catalog knows the name).
    #[serde(default, skip_serializing)]
    pub trigger_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: SubscriptionType,
    #[serde(default = "default_deadline")]
    pub response_deadline: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub filter: Option<String>,
    /// trigger-relay: overrides `[delivery] ack` for this subscription.
    #[serde(default)]
    pub ack_mode: Option<AckMode>,
    #[serde(default)]
    pub http_config: Option<HttpConfig<S>>,
    #[serde(default)]
    pub event_bridge_config: Option<EventBridgeConfig>,
    #[serde(default)]
    pub kafka_config: Option<KafkaSubscriptionConfig>,
    #[serde(default)]
    pub nats_config: Option<NatsSubscriptionConfig>,
    /// trigger-relay: where events go that failed for good (optional).
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// trigger-relay: how KAFKA, NATS and HTTP messages (and their dead letters) wrap the payload.
    #[serde(default, skip_serializing_if = "Envelope::is_none")]
    pub envelope: Envelope,
    /// trigger-relay: CloudEvents attributes that are not derived from the event (with a CloudEvents envelope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_events: Option<CloudEventsConfig>,
    /// ISC's configs of the types that run inside ISC: accepted in the model, refused by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_config: Option<serde_json::Value>,
}

/// trigger-relay's `envelope`: the payload as received (`none`), or a CloudEvents 1.0 event in binary mode
/// (attributes in headers, the payload untouched) or structured mode (`application/cloudevents+json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Envelope {
    #[default]
    None,
    CloudeventsBinary,
    CloudeventsStructured,
}

impl Envelope {
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// trigger-relay's `cloudEvents`: `source` (else `[cloudevents] source`), and a JSON pointer whose value in
/// the payload becomes `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventsConfig {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// trigger-relay's `deadLetter`: a Kafka topic or a NATS subject (exactly one) on a configured connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterConfig {
    #[serde(default)]
    pub kafka_config: Option<KafkaSubscriptionConfig>,
    #[serde(default)]
    pub nats_config: Option<NatsSubscriptionConfig>,
}

fn default_deadline() -> String {
    "PT1H".into()
}

fn yes() -> bool {
    true
}

/// The namespace of ids derived from subscription names.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1d_35c8_2b7e_4b0a_9d4e_1c3a_5f7b_8e90);

impl<S> Subscription<S> {
    /// The subscription id: the one given, or a stable UUID derived from the name.
    pub fn effective_id(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => uuid::Uuid::new_v5(&ID_NAMESPACE, self.name.as_bytes()).to_string(),
        }
    }

    /// The same subscription with each secret `s` replaced by `f(s)`, in a fixed order (the basic-auth password,
    /// then the bearer token): the one place that knows where a subscription's secrets are. Every struct on the way
    /// is taken apart without `..`, so a field added to one of them does not compile until it is placed here; a
    /// new secret field is a new `Option<S>`, which is then converted like the others.
    pub fn try_map_secrets<'a, T, E>(
        &'a self,
        mut f: impl FnMut(&'a S) -> Result<T, E>,
    ) -> Result<Subscription<T>, E> {
        let Subscription {
            id,
            name,
            description,
            trigger_id,
            trigger_name,
            kind,
            response_deadline,
            enabled,
            filter,
            ack_mode,
            http_config,
            event_bridge_config,
            kafka_config,
            nats_config,
            dead_letter,
            envelope,
            cloud_events,
            inline_config,
            script_config,
            workflow_config,
        } = self;
        let http_config = match http_config {
            None => None,
            Some(HttpConfig {
                url,
                http_dispatch_mode,
                http_authentication_type,
                basic_auth_config,
                bearer_token_auth_config,
            }) => Some(HttpConfig {
                url: url.clone(),
                http_dispatch_mode: http_dispatch_mode.clone(),
                http_authentication_type: http_authentication_type.clone(),
                basic_auth_config: match basic_auth_config {
                    None => None,
                    Some(BasicAuthConfig {
                        user_name,
                        password,
                    }) => Some(BasicAuthConfig {
                        user_name: user_name.clone(),
                        password: password.as_ref().map(&mut f).transpose()?,
                    }),
                },
                bearer_token_auth_config: match bearer_token_auth_config {
                    None => None,
                    Some(BearerTokenAuthConfig { bearer_token }) => Some(BearerTokenAuthConfig {
                        bearer_token: bearer_token.as_ref().map(&mut f).transpose()?,
                    }),
                },
            }),
        };
        Ok(Subscription {
            id: id.clone(),
            name: name.clone(),
            description: description.clone(),
            trigger_id: trigger_id.clone(),
            trigger_name: trigger_name.clone(),
            kind: *kind,
            response_deadline: response_deadline.clone(),
            enabled: *enabled,
            filter: filter.clone(),
            ack_mode: *ack_mode,
            http_config,
            event_bridge_config: event_bridge_config.clone(),
            kafka_config: kafka_config.clone(),
            nats_config: nats_config.clone(),
            dead_letter: dead_letter.clone(),
            envelope: *envelope,
            cloud_events: cloud_events.clone(),
            inline_config: inline_config.clone(),
            script_config: script_config.clone(),
            workflow_config: workflow_config.clone(),
        })
    }

    /// The subscription as the API shows it: every secret [`Withheld`] (`null`).
    pub fn withheld(&self) -> Subscription<Withheld> {
        let withheld = self.try_map_secrets(|_| Ok::<_, std::convert::Infallible>(Withheld));
        match withheld {
            Ok(s) => s,
            Err(never) => match never {},
        }
    }
}

/// Kafka `options` whose name looks like a credential: `check-config --print` shows `***` for their values.
pub fn is_credential_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("sasl.")
        || n.starts_with("ssl.key")
        || ["password", "secret", "token", "key", "credential"]
            .iter()
            .any(|w| n.contains(w))
}

/// `scheme://user:***@host`: the password of every URL in `s` hidden.
pub fn redact_url_password(s: &str) -> String {
    // `scheme://user:password@host…` (also inside a comma-separated list of URLs).
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ',', ' ']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
