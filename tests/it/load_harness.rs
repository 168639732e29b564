//! The load harness (`cargo bench --bench load`) in short mode: proves it runs end to end against the relay
//! process, the DISCARD sink and a real Kafka broker. No timing is asserted: only that every row is there and
//! measured something.

use trigger_relay_testkit::load as harness;

#[test]
fn short_mode_produces_every_row() {
    let _measured = crate::support::MEASURED.blocking_lock();
    let mut opts = harness::Options::from_env(env!("CARGO_BIN_EXE_trigger-relay"));
    opts.short = true;
    opts.connections = 16;
    opts.scenarios = vec!["blackhole".into(), "kafka-delivered".into()];
    if opts.kafka.is_none() {
        panic!(
            "this test needs a Kafka-compatible broker: run it with `scripts/test load_harness::` (starts tansu) \
             or set TRIGGER_RELAY_TEST_KAFKA"
        );
    }
    let report = harness::run(&opts).unwrap_or_else(|e| panic!("harness failed: {e}"));
    let table = report.markdown();
    println!("{table}");
    let names: Vec<&str> = report.rows.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(
        names,
        [
            "ingress → DISCARD",
            "ingress → Kafka (delivered)",
            "ingress → Kafka (delivered) at ½ max"
        ],
        "{table}"
    );
    for r in &report.rows {
        assert!(r.skipped.is_none(), "{}: skipped\n{table}", r.scenario);
        assert!(
            r.relay > 0.0,
            "{}: no event answered 200\n{table}",
            r.scenario
        );
        assert!(
            r.baseline > 0.0,
            "{}: the baseline measured nothing\n{table}",
            r.scenario
        );
        assert!(r.rss_mib > 0.0, "{}: no RSS read\n{table}", r.scenario);
    }
    assert!(report.idle_rss_mib.is_some_and(|m| m > 0.0), "{table}");
    for header in [
        "| scenario |",
        "relay ev/s",
        "baseline ev/s",
        "ratio",
        "p99",
        "RSS",
    ] {
        assert!(table.contains(header), "table lacks {header}:\n{table}");
    }
}
