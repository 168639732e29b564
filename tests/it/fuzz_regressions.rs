//! Inputs the fuzz targets (`scripts/fuzz`) found that need a running relay, kept as regression tests; those of
//! pure functions are unit tests next to their code (`src/api/patch/tests.rs`).

use crate::support;

use support::*;

/// `json_body`: a raw non-UTF-8 byte inside a JSON string was answered 200 and forwarded, because serde_json
/// does not check the UTF-8 of strings it skips. It is not JSON: 400.
#[tokio::test]
async fn a_body_with_invalid_utf8_is_refused() {
    let relay = start("[ingress.auth]\nnone = true\n[[subscriptions]]\nname = \"d\"\ntriggerId = \"idn:identity-created\"\ntype = \"DISCARD\"\n").await;
    for body in [
        &b"{\"identity\":{\"name\":\"\xe1\"}}"[..],
        &b"{\"identy\":{\"nidn:access-request-pre-approv\xe1lId\":1}}"[..],
    ] {
        let r = post_event(&relay, "/events/idn:identity-created", body.to_vec()).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    }
    relay.shutdown();
    relay.wait().await;
}
