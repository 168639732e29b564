//! NATS connection options against real nats-servers that demand them: user/password, token, NKey, a creds file
//! (decentralised JWT auth: a server in operator mode trusting an account that signed the relay's user) and TLS
//! with a client certificate (mutual TLS). The certificates, keys and JWTs are made by the test. Each case starts
//! its own server from a config file, points a relay at it and checks that an event arrives through the
//! authenticated connection.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::*;

struct Server {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server with `conf` (its `port` and `listen` are added here).
fn server(conf: &str, dir: tempfile::TempDir) -> Server {
    let port = free_port();
    let file = dir.path().join("server.conf");
    std::fs::write(&file, format!("listen: \"127.0.0.1:{port}\"\n{conf}\n")).unwrap();
    let bin =
        std::env::var("TRIGGER_RELAY_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server ({bin}): {e}. Run the suite with `scripts/test`, which installs it"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        port,
        child,
        _dir: dir,
    }
}

struct Case {
    name: &'static str,
    /// nats-server config (authorization, tls).
    server: String,
    /// The relay's `[sinks.nats.main]` lines besides `servers`.
    relay: String,
    scheme: &'static str,
    /// How the test's own subscriber connects.
    client: async_nats::ConnectOptions,
    dir: tempfile::TempDir,
}

async fn check(c: Case) {
    let Case {
        name,
        server: conf,
        relay: relay_conf,
        scheme,
        client,
        dir,
    } = c;
    let srv = server(&conf, dir);
    let url = format!("{scheme}://127.0.0.1:{}", srv.port);
    let subject = unique("auth");
    // The relay starts first: it must choose the process's TLS provider itself (it cannot rely on a caller).
    let relay = start(&format!(
        r#"
{OPEN_DELIVERED}
[sinks.nats.main]
servers = ["{url}"]
{relay_conf}
{}"#,
        nats_subscription("nats", CREATED, &subject)
    ))
    .await;
    let sub_client = client
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{name}: test client: {e}"));
    let mut sub = sub_client.subscribe(subject.clone()).await.unwrap();
    sub_client.flush().await.unwrap();
    wait_ready(&relay).await;
    let body = example_body("idn:identity-created", &unique(name));
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(
        r.status,
        200,
        "{name}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap_or_else(|_| panic!("{name}: the event arrives"))
        .unwrap();
    assert_eq!(&msg.payload[..], &body[..], "{name}");
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["relay".into()]);
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nats_authentication_method_reaches_a_server_that_demands_it() {
    let _ = nats(); // the suite's server: fail early with instructions when nats-server is not set up
    let nkey = nkeys::KeyPair::new_user();
    let seed = nkey.seed().unwrap();
    check(Case {
        name: "user-password",
        server: r#"authorization { user: "relay", password: "pw-0a9b" }"#.into(),
        relay: "user = \"relay\"\npassword = \"pw-0a9b\"".into(),
        scheme: "nats",
        client: async_nats::ConnectOptions::with_user_and_password(
            "relay".into(),
            "pw-0a9b".into(),
        ),
        dir: tempfile::tempdir().unwrap(),
    })
    .await;
    check(Case {
        name: "token",
        server: r#"authorization { token: "tok-4e5f6a7b" }"#.into(),
        relay: "token = \"tok-4e5f6a7b\"".into(),
        scheme: "nats",
        client: async_nats::ConnectOptions::with_token("tok-4e5f6a7b".into()),
        dir: tempfile::tempdir().unwrap(),
    })
    .await;
    check(Case {
        name: "nkey",
        server: format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}",
            nkey.public_key()
        ),
        relay: format!("nkey_seed = \"{seed}\""),
        scheme: "nats",
        client: async_nats::ConnectOptions::with_nkey(seed.clone()),
        dir: tempfile::tempdir().unwrap(),
    })
    .await;

    // Creds file: operator mode. The server trusts an operator; the operator signed an account (preloaded into
    // the server's memory resolver); the account signed the relay's user JWT, which the creds file carries
    // together with the user's seed.
    let jwt = Jwt::new();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("relay.creds");
    std::fs::write(&creds, jwt.creds()).unwrap();
    let operator = dir.path().join("operator.jwt");
    std::fs::write(&operator, &jwt.operator).unwrap();
    check(Case {
        name: "creds-file",
        server: jwt.server_conf(&operator),
        relay: format!("creds_file = \"{}\"", creds.display()),
        scheme: "nats",
        client: async_nats::ConnectOptions::with_credentials_file(creds.clone())
            .await
            .unwrap(),
        dir,
    })
    .await;

    // Mutual TLS: the server verifies the relay's client certificate; the relay verifies the server's.
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str, pem: &str| {
        let f = dir.path().join(n);
        std::fs::write(&f, pem).unwrap();
        f.display().to_string()
    };
    let (ca, sc, sk, cc, ck) = (
        path("ca.pem", &p.ca),
        path("server.pem", &p.server_cert),
        path("server.key", &p.server_key),
        path("client.pem", &p.client_cert),
        path("client.key", &p.client_key),
    );
    let client = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.clone().into())
        .add_client_certificate(cc.clone().into(), ck.clone().into());
    check(Case {
        name: "mtls",
        server: format!(
            "tls {{ cert_file: \"{sc}\", key_file: \"{sk}\", ca_file: \"{ca}\", verify: true, timeout: 5 }}"
        ),
        relay: format!(
            "tls_required = true\ntls_ca_file = \"{ca}\"\ntls_cert_file = \"{cc}\"\ntls_key_file = \"{ck}\""
        ),
        scheme: "tls",
        client,
        dir,
    })
    .await;
}

/// A minimal NATS decentralised-auth chain: operator → account (+ system account) → user, as `nsc` would make it.
/// JWTs are `base64url(header).base64url(claims).base64url(ed25519 signature)`, signed with NKeys.
struct Jwt {
    operator: String,
    system_account: (String, String),
    account: (String, String),
    user: String,
    user_seed: String,
}

impl Jwt {
    fn new() -> Jwt {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let sys = KeyPair::new_account();
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let account_claims = serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1
            },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2
        });
        Jwt {
            operator: sign(
                &operator,
                &operator.public_key(),
                "test-operator",
                serde_json::json!({
                    "system_account": sys.public_key(),
                    "type": "operator",
                    "version": 2
                }),
            ),
            system_account: (
                sys.public_key(),
                sign(&operator, &sys.public_key(), "SYS", account_claims.clone()),
            ),
            account: (
                account.public_key(),
                sign(&operator, &account.public_key(), "relay", account_claims),
            ),
            user: sign(
                &account,
                &user.public_key(),
                "relay",
                serde_json::json!({
                    "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                    "type": "user",
                    "version": 2
                }),
            ),
            user_seed: user.seed().unwrap(),
        }
    }

    fn server_conf(&self, operator_file: &std::path::Path) -> String {
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}",
            operator_file.display(),
            self.system_account.0,
            self.system_account.0,
            self.system_account.1,
            self.account.0,
            self.account.1,
        )
    }

    /// The creds file `nsc generate creds` writes.
    fn creds(&self) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            self.user, self.user_seed
        )
    }
}

fn sign(signer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": unique("jti").replace(['-', '.'], "").to_uppercase(),
        "iat": iat,
        "iss": signer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = signer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64.encode(signature))
}
