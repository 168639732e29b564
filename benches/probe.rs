//! `cargo bench --bench probe`: the ingress's JSON check (`trigger_relay::ingress::probe`) per body, against
//! serde_json doing the same job (its `IgnoredAny` probe, which the ingress used before; the oracle of
//! the probe's tests, `trigger_relay_testkit::probe_oracle`), over the load bench's bodies (ISC's examples grown to 0.5–8 KB). Reported as a ratio
//! measured in the same run; the best of several rounds, so a noisy neighbour costs rounds, not the result. The
//! baseline is the oracle's verdict, which also copies the two ids into `String`s: tens of nanoseconds of its
//! ~2.3 µs per body, so the ratio flatters the probe by about 1%.

use std::hint::black_box;
use std::time::{Duration, Instant};

use trigger_relay_testkit::{payloads, probe_oracle};

/// Nanoseconds per body: the best round of `rounds`, each a pass over every body `reps` times.
fn measure(bodies: &[String], rounds: usize, reps: usize, f: impl Fn(&str) -> bool) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..reps {
            for b in bodies {
                assert!(f(black_box(b)), "a bench body was refused");
            }
        }
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / (reps * bodies.len()) as f64
}

fn main() {
    let short = std::env::args().any(|a| a == "--short");
    let mix = payloads::Payloads::new(payloads::MIX);
    let bodies: Vec<String> = (0..mix.len())
        .map(|_| String::from_utf8(mix.next().1.to_vec()).expect("UTF-8"))
        .collect();
    let mean = bodies.iter().map(String::len).sum::<usize>() as f64 / bodies.len() as f64;
    let (rounds, reps) = if short { (2, 2) } else { (30, 40) };
    eprintln!(
        "[probe] {} bodies of {:.0} bytes on average; best of {rounds} rounds of {reps} passes",
        bodies.len(),
        mean
    );
    eprintln!("[probe] serde_json (baseline)");
    let serde = measure(&bodies, rounds, reps, |b| {
        probe_oracle::serde_verdict(b).is_ok()
    });
    eprintln!("[probe] trigger_relay::ingress::probe");
    let ours = measure(&bodies, rounds, reps, |b| {
        trigger_relay::ingress::probe::probe(b).is_ok()
    });
    println!("| JSON check | ns/body | ns/KB | ratio to serde_json |");
    println!("|---|---:|---:|---:|");
    for (name, ns) in [("serde_json IgnoredAny", serde), ("ingress probe", ours)] {
        println!(
            "| {name} | {ns:.0} | {:.0} | {:.2} |",
            ns / mean * 1024.0,
            ns / serde
        );
    }
}
