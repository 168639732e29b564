//! What a Triggers API caller may ask for beyond what the config file may.
//!
//! # Why this module exists
//!
//! The config file is written by whoever runs the relay; the API is called by anyone holding a `manage` token.
//! Some things the relay does for a subscription act with the relay's own credentials — publishing to a Kafka
//! topic or NATS subject the relay's connection can reach, signing AWS requests to an endpoint URL — so an API
//! caller must not be able to point them at the broker's or the relay's own internals (`__consumer_offsets`,
//! `connect-configs`, `$JS.API.…`, `$SYS.…`, another subscription's dead-letter topic). These checks run on every
//! API create, PUT and PATCH, after the checks the config file applies too (`Config::check_subscription`), and
//! name the field they refuse. Config-file subscriptions are trusted and never pass through here.
//!
//! Lengths are bounded here as well, so a caller cannot store megabytes per subscription.

use crate::config::Config;
use crate::model::{KafkaSubscriptionConfig, NatsSubscriptionConfig, Subscription};

/// Longest `name` (ISC's UI keeps names short; 128 leaves room).
pub const MAX_NAME: usize = 128;
/// Longest `description`.
pub const MAX_DESCRIPTION: usize = 1024;

/// Every refusal as (field path, why).
pub fn check(config: &Config, s: &Subscription) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.name.chars().count() > MAX_NAME {
        out.push((
            "name".into(),
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    if s.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        out.push((
            "description".into(),
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    // Events may not go to a config-file dead-letter destination (a consumer or a replay would trust them as
    // dead letters); an API subscription's own dead letters may share it.
    if let Some(k) = &s.kafka_config {
        kafka(config, "kafkaConfig", k, true, &mut out);
    }
    if let Some(n) = &s.nats_config {
        nats(config, "natsConfig", n, &s.trigger_id, true, &mut out);
    }
    if let Some(dl) = &s.dead_letter {
        if let Some(k) = &dl.kafka_config {
            kafka(config, "deadLetter.kafkaConfig", k, false, &mut out);
        }
        if let Some(n) = &dl.nats_config {
            nats(
                config,
                "deadLetter.natsConfig",
                n,
                &s.trigger_id,
                false,
                &mut out,
            );
        }
    }
    if let Some(e) = &s.event_bridge_config {
        if e.endpoint_url.is_some() && !config.api.allow_endpoint_url {
            out.push((
                "eventBridgeConfig.endpointUrl".into(),
                "may be set only in the config file (or with api.allow_endpoint_url = true): the relay signs AWS requests to it".into(),
            ));
        }
    }
    out
}

/// Topics and subjects the config file sends dead letters to: an API subscription may not publish there.
fn dead_letter_targets(config: &Config) -> (Vec<&str>, Vec<&str>) {
    let mut topics = Vec::new();
    let mut subjects = Vec::new();
    for s in &config.subscriptions {
        if let Some(dl) = &s.dead_letter {
            if let Some(k) = &dl.kafka_config {
                topics.push(k.topic.as_str());
            }
            if let Some(n) = &dl.nats_config {
                subjects.push(n.subject.as_str());
            }
        }
    }
    (topics, subjects)
}

fn kafka(
    config: &Config,
    path: &str,
    k: &KafkaSubscriptionConfig,
    events: bool,
    out: &mut Vec<(String, String)>,
) {
    let Ok(cluster) = config.kafka_cluster_for(k) else {
        return; // already refused by the config checks
    };
    let prefixes = config
        .sinks
        .kafka
        .get(cluster)
        .map(|c| c.api_topic_prefixes.as_slice())
        .unwrap_or_default();
    let (topics, _) = dead_letter_targets(config);
    let dead = if events { topics.as_slice() } else { &[] };
    if let Some(why) = refused(&k.topic, prefixes, &["_"], dead) {
        out.push((
            format!("{path}.topic"),
            format!(
                "`{}` {why} (sinks.kafka.{cluster}.api_topic_prefixes)",
                k.topic
            ),
        ));
    }
}

fn nats(
    config: &Config,
    path: &str,
    n: &NatsSubscriptionConfig,
    trigger_id: &str,
    events: bool,
    out: &mut Vec<(String, String)>,
) {
    let Ok(connection) = config.nats_connection_for(n) else {
        return;
    };
    let Ok(subject) = crate::sinks::nats::render_subject(&n.subject, trigger_id) else {
        return;
    };
    let prefixes = config
        .sinks
        .nats
        .get(connection)
        .map(|c| c.api_subject_prefixes.as_slice())
        .unwrap_or_default();
    let (_, subjects) = dead_letter_targets(config);
    let dead: Vec<String> = subjects
        .iter()
        .filter_map(|t| crate::sinks::nats::render_subject(t, trigger_id).ok())
        .collect();
    let dead: Vec<&str> = dead.iter().map(String::as_str).filter(|_| events).collect();
    if let Some(why) = refused(&subject, prefixes, &["$", "_"], &dead) {
        out.push((
            format!("{path}.subject"),
            format!("`{subject}` {why} (sinks.nats.{connection}.api_subject_prefixes)"),
        ));
    }
}

/// Why an API caller may not use `name`, if it may not: outside the configured prefixes, or (with none
/// configured) an internal name or a config-file dead-letter target.
fn refused(name: &str, allowed: &[String], internal: &[&str], dead: &[&str]) -> Option<String> {
    if !allowed.is_empty() {
        return (!allowed.iter().any(|p| name.starts_with(p.as_str()))).then(|| {
            format!(
                "does not start with an allowed prefix ({})",
                allowed.join(", ")
            )
        });
    }
    if let Some(p) = internal.iter().find(|p| name.starts_with(**p)) {
        return Some(format!(
            "starts with `{p}`, which is reserved for the broker's own names; list the prefix to allow it"
        ));
    }
    dead.contains(&name).then(|| {
        "is a dead-letter destination of the config file; list a prefix to allow it".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names() {
        let none: &[String] = &[];
        let isc = vec!["isc.".to_string()];
        for (name, allowed, ok) in [
            ("isc.identity", none, true),
            ("__consumer_offsets", none, false),
            ("_schemas", none, false),
            ("dead", none, false),
            ("isc.identity", isc.as_slice(), true),
            ("other", isc.as_slice(), false),
            ("_internal", isc.as_slice(), false),
        ] {
            assert_eq!(
                refused(name, allowed, &["_"], &["dead"]).is_none(),
                ok,
                "{name} with {allowed:?}"
            );
        }
        assert!(refused("$JS.API.STREAM.DELETE.x", none, &["$", "_"], &[]).is_some());
        assert!(refused("$SYS.REQ", none, &["$", "_"], &[]).is_some());
        assert!(refused("_INBOX.x", none, &["$", "_"], &[]).is_some());
    }
}
