//! Fuzz the webhook egress policy's address reading (`trigger_relay::sinks::http::egress`): any URL text, parsed as
//! hyper parses it, must never panic the policy, and every IPv6 form of an IPv4 address (mapped, compatible,
//! NAT64) must get the verdict of the IPv4 address itself, so no spelling reaches an address the plain form cannot.
//!
//! Run: `scripts/fuzz 60 egress`.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use trigger_relay::sinks::http::egress::{inward, EgressConfig, EgressPolicy};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let v4 = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
        let plain = inward(IpAddr::V4(v4)).is_some();
        for v6 in [
            v4.to_ipv6_mapped(),
            Ipv6Addr::new(
                0x64,
                0xff9b,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([data[0], data[1]]),
                u16::from_be_bytes([data[2], data[3]]),
            ),
        ] {
            assert_eq!(inward(IpAddr::V6(v6)).is_some(), plain, "{v4} vs {v6}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(uri) = text.parse::<http::Uri>() {
            let policy = EgressPolicy::new(&EgressConfig::default());
            if let Some(host) = uri.host() {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = bare.parse::<IpAddr>() {
                    let _ = policy.check(bare, ip, uri.port_u16().unwrap_or(443));
                }
            }
        }
    }
});
