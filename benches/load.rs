//! `cargo bench --bench load [-- --short] [-- --scenario NAME]...`: load benches of the relay against baselines
//! measured in the same run. `scripts/bench` starts the brokers and runs this. See BENCHMARKS.md.

use trigger_relay_testkit::load as harness;

fn main() {
    let mut opts = harness::Options::from_env(env!("CARGO_BIN_EXE_trigger-relay"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => opts.short = true,
            "--scenario" => opts
                .scenarios
                .push(args.next().expect("--scenario needs a name")),
            "--connections" => {
                opts.connections = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--connections needs a number")
            }
            "--skip-missing-brokers" => opts.skip_missing_brokers = true,
            "--kafka-linger-ms" => {
                opts.kafka_linger_ms = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .expect("--kafka-linger-ms needs a number"),
                )
            }
            "--kafka-option" => {
                let kv = args.next().expect("--kafka-option needs name=value");
                let (k, v) = kv.split_once('=').expect("--kafka-option needs name=value");
                opts.kafka_options.push((k.to_string(), v.to_string()));
            }
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "cargo bench --bench load -- [--short] [--scenario NAME]... [--connections N] [--skip-missing-brokers]\n\
                     \x20 [--kafka-linger-ms N] [--kafka-option NAME=VALUE]...\n\
                     scenarios (a prefix selects several): {}\n\
                     brokers: TRIGGER_RELAY_BENCH_KAFKA, TRIGGER_RELAY_BENCH_NATS (scripts/bench sets them); kafka-memory starts its own\n\
                     \x20 tansu ($TRIGGER_RELAY_BENCH_TANSU, else tansu on the PATH)\n\
                     relay: $TRIGGER_RELAY_BENCH_RELAY (another binary, for before/after), else the one Cargo built\n\
                     output: the table on standard output and in $TRIGGER_RELAY_BENCH_OUT (default target/load-bench.md)",
                    harness::SCENARIOS.join(", ")
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    match harness::run(&opts) {
        Ok(report) => {
            let table = report.markdown();
            println!("{table}");
            let out = harness::out_path();
            if let Some(dir) = out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&out, &table)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
            eprintln!("[load] table written to {}", out.display());
        }
        Err(e) => {
            eprintln!("[load] error: {e}");
            std::process::exit(1);
        }
    }
}
