//! Errors with key paths, the way every component's config check reports them (`sinks.kafka.main.linger_ms:
//! must be ...`): [`ErrorSink`] collects them (the config's error list, or a closure), [`pick_named`] resolves
//! a subscription's named connection. A leaf, so the sink kinds check their own tables without importing the
//! config module that aggregates them.

/// Something that collects config errors (lets sink modules validate their own tables).
pub(crate) trait ErrorSink {
    fn error(&mut self, path: String, message: String);
}

impl<F: FnMut(String, String)> ErrorSink for F {
    fn error(&mut self, path: String, message: String) {
        self(path, message)
    }
}

/// The sink a subscription names, or the only one configured when it names none.
pub(crate) fn pick_named<'a>(
    what: &str,
    table: &str,
    names: impl Iterator<Item = &'a String> + Clone,
    chosen: Option<&'a str>,
) -> Result<&'a str, String> {
    let list = || {
        names
            .clone()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match chosen {
        Some(c) => names
            .clone()
            .find(|n| n.as_str() == c)
            .map(String::as_str)
            .ok_or_else(|| {
                let l = list();
                format!(
                    "unknown {what} `{c}` (configured: {})",
                    if l.is_empty() { "none" } else { &l }
                )
            }),
        None => {
            let mut it = names.clone();
            match (it.next(), it.next()) {
                (Some(only), None) => Ok(only.as_str()),
                (None, _) => Err(format!("no {what} configured: add a [{table}.NAME] table")),
                _ => Err(format!(
                    "several {what}s are configured ({}): name one",
                    list()
                )),
            }
        }
    }
}
