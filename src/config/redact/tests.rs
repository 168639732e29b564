//! A secret never appears in `Debug` or in `check-config --print`, and the printed config is the effective one
//! (interpolated, defaults filled in) that loads again once its secrets are filled in.

use trigger_relay_testkit::secrets::{assert_no_secret, env, ALL_SECRETS};

use crate::config::{Config, ConfigErrors};

fn load(text: &str) -> Result<Config, ConfigErrors> {
    let env = env();
    Config::from_toml_with_env(text, |k| env.get(k).map(|v| v.to_string()))
}

#[test]
fn debug_and_print_never_show_a_secret() {
    let c = load(ALL_SECRETS).unwrap_or_else(|e| panic!("{e}"));
    // The secrets did arrive where they are used.
    let auth = c.ingress.auth.as_ref().unwrap();
    assert_eq!(
        auth.bearer_tokens[0].expose(),
        "tok-111-0123456789abcdef0123456789"
    );
    assert_eq!(auth.basic[0].password.expose(), "basic-222");
    assert_no_secret("Debug", &format!("{c:?}"));
    assert_no_secret("Debug (pretty)", &format!("{c:#?}"));
    let printed = c.to_redacted_toml();
    assert_no_secret("--print", &printed);
    // It is the effective config: interpolated, with defaults, and secrets visibly set.
    for want in [
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "max_body_bytes = 1048576",
        "delivery_timeout_ms = 300000",
        "enable_idempotence = true",
        "\"client.id\" = \"relay-client-0123456789abcdef012345\"",
        "\"sasl.password\" = \"***\"",
        "\"sasl.username\" = \"***\"",
        "\"ssl.key.password\" = \"***\"",
        "\"security.protocol\" = \"SASL_SSL\"",
        "token = \"***\"",
        "bearerToken = \"***\"",
        "\"nats://relay:***@127.0.0.1:4222\"",
        "allow_prefixes = [",
    ] {
        assert!(printed.contains(want), "--print lacks `{want}`:\n{printed}");
    }
    // And it is a config again once its secrets are filled in (they print as `***`, too short for a token).
    let filled = printed.replace("\"***\"", "\"a-real-secret-goes-here-0123456789\"");
    let again = Config::from_toml_with_env(&filled, |_| None)
        .unwrap_or_else(|e| panic!("--print output does not load: {e}\n{printed}"));
    assert_eq!(again.subscriptions.len(), 4);
    assert_eq!(
        again.ingress.auth.unwrap().bearer_tokens[0].expose(),
        "a-real-secret-goes-here-0123456789"
    );
}
