//! AWS for tests: the moto server `scripts/test` started, SDK clients for it, a bus → rule → SQS fixture to
//! read back what the relay published, and a fault proxy between the relay and moto that fails chosen
//! entries or whole calls the way EventBridge does (moto itself never throttles).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub const REGION: &str = "us-east-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// The moto server that `scripts/test` started (EventBridge, SQS).
pub fn moto() -> String {
    std::env::var("TRIGGER_RELAY_TEST_MOTO").unwrap_or_else(|_| {
        panic!(
            "this test needs moto's server. Run the suite with `scripts/test` (it installs and starts it), or run \
             `pip install 'moto[server]' && moto_server -p 5000` and set TRIGGER_RELAY_TEST_MOTO=http://127.0.0.1:5000 \
             AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
        )
    })
}

fn credentials() -> aws_sdk_eventbridge::config::Credentials {
    aws_sdk_eventbridge::config::Credentials::new("testing", "testing", None, None, "tests")
}

/// SQS as these tests use it (create a queue, receive and delete its messages): three calls of SQS's JSON protocol
/// over a plain HTTP client, not the AWS SDK's SQS crate, which would add about 45 s of CPU to every cold test
/// build for these three calls (ARCHITECTURE.md, "Where we wrote what a crate could do, and why"). moto does not check
/// signatures; the `Authorization` header only names the region, as moto reads it from there.
#[derive(Clone)]
pub struct Sqs {
    endpoint: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Sqs {
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// One SQS action (`CreateQueue`, `ReceiveMessage`, ...): its JSON answer, or what SQS said.
    pub async fn call(
        &self,
        action: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let req = http::Request::post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/sqs/aws4_request, \
                     SignedHeaders=host, Signature=0"
                ),
            )
            .body(Full::new(Bytes::from(input.to_string())))
            .unwrap();
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "SQS {action}: {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("SQS {action}: {e}"))
    }

    /// Up to ten messages (long polling for `wait_s`), each deleted once read: their bodies.
    pub async fn receive(&self, queue_url: &str, wait_s: u64) -> Vec<String> {
        let r = self
            .call(
                "ReceiveMessage",
                serde_json::json!({ "QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_s }),
            )
            .await
            .expect("receive");
        let mut out = Vec::new();
        for m in r["Messages"].as_array().into_iter().flatten() {
            out.push(m["Body"].as_str().expect("a message body").to_string());
            self.call(
                "DeleteMessage",
                serde_json::json!({ "QueueUrl": queue_url, "ReceiptHandle": m["ReceiptHandle"] }),
            )
            .await
            .expect("delete");
        }
        out
    }
}

pub fn eventbridge(endpoint: &str) -> aws_sdk_eventbridge::Client {
    let c = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .region(aws_sdk_eventbridge::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials())
        .http_client(trigger_relay::sinks::eventbridge::http_client(None))
        .build();
    aws_sdk_eventbridge::Client::from_conf(c)
}

/// A bus with a rule that sends every event of `source` to an SQS queue.
pub struct BusToQueue {
    pub bus: String,
    pub queue_url: String,
    sqs: Sqs,
}

impl BusToQueue {
    /// On `bus` (created unless it is `default`), a rule for `source` that targets a new queue.
    pub async fn create(bus: &str, source: &str) -> Self {
        let endpoint = moto();
        let (eb, sqs) = (eventbridge(&endpoint), Sqs::new(&endpoint));
        if bus != "default" {
            eb.create_event_bus()
                .name(bus)
                .send()
                .await
                .expect("create bus");
        }
        let queue = super::unique("q");
        let queue_url = sqs
            .call("CreateQueue", serde_json::json!({ "QueueName": queue }))
            .await
            .expect("create queue")["QueueUrl"]
            .as_str()
            .expect("a queue URL")
            .to_string();
        let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}");
        let rule = super::unique("rule");
        eb.put_rule()
            .name(&rule)
            .event_bus_name(bus)
            .event_pattern(serde_json::json!({ "source": [source] }).to_string())
            .send()
            .await
            .expect("put rule");
        eb.put_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("sqs")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("put targets");
        Self {
            bus: bus.to_string(),
            queue_url,
            sqs,
        }
    }

    /// Read `n` EventBridge envelopes from the queue (long polling), failing after `within`.
    pub async fn read(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "read {} of {n} events from SQS within {within:?}: {out:#?}",
                out.len()
            );
            for body in self.sqs.receive(&self.queue_url, 1).await {
                out.push(serde_json::from_str(&body).unwrap());
            }
        }
        out
    }

    /// Nothing more arrives within `quiet` (used after the expected events, to catch duplicates).
    pub async fn assert_no_more(&self, quiet: Duration) {
        let extra = self
            .sqs
            .receive(&self.queue_url, quiet.as_secs().max(1))
            .await;
        assert!(extra.is_empty(), "unexpected extra events: {extra:?}");
    }
}

/// What the fault proxy does with PutEvents calls.
#[derive(Default)]
struct Faults {
    /// Entries whose Detail contains one of these fail once with ThrottlingException (then pass).
    fail_once: Vec<String>,
    /// The next this-many calls are answered 400 ThrottlingException as a whole.
    throttle_calls: usize,
    /// Every PutEvents call seen: the Details of its entries.
    calls: Vec<Vec<String>>,
    /// The `TraceHeader` of every entry seen, in order (`""` when absent).
    trace_headers: Vec<String>,
}

/// A proxy in front of moto that injects EventBridge failures.
pub struct FaultProxy {
    pub addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start() -> Self {
        let upstream: http::Uri = moto().parse().unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = faults.clone();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let (addr, task) = super::serve(move |req: http::Request<hyper::body::Incoming>| {
            let (f, client, upstream) = (f.clone(), client.clone(), upstream.clone());
            async move { proxy(req, &f, &client, &upstream).await }
        })
        .await;
        Self { addr, faults, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn fail_once(&self, marker: &str) {
        self.faults
            .lock()
            .unwrap()
            .fail_once
            .push(marker.to_string());
    }

    pub fn throttle_calls(&self, n: usize) {
        self.faults.lock().unwrap().throttle_calls = n;
    }

    /// The `TraceHeader` of each PutEvents entry seen, in order.
    pub fn trace_headers(&self) -> Vec<String> {
        self.faults.lock().unwrap().trace_headers.clone()
    }

    /// The Details of each PutEvents call seen, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.faults.lock().unwrap().calls.clone()
    }
}

fn json_response(status: u16, body: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    r
}

async fn proxy(
    req: http::Request<hyper::body::Incoming>,
    faults: &Mutex<Faults>,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: &http::Uri,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut forward = body.clone();
    // Index in the original call → injected failure; the rest are forwarded and answered by moto.
    let mut injected: Vec<Option<serde_json::Value>> = Vec::new();
    if target == "AWSEvents.PutEvents" {
        let mut call: serde_json::Value = serde_json::from_slice(&body)
            .expect("the relay speaks EventBridge's JSON protocol (awsJson1_1)");
        let entries = call["Entries"].as_array().cloned().unwrap_or_default();
        let mut f = faults.lock().unwrap();
        for e in &entries {
            let t = e["TraceHeader"].as_str().unwrap_or("").to_string();
            f.trace_headers.push(t);
        }
        f.calls.push(
            entries
                .iter()
                .map(|e| e["Detail"].as_str().unwrap_or("").to_string())
                .collect(),
        );
        if f.throttle_calls > 0 {
            f.throttle_calls -= 1;
            return json_response(
                400,
                serde_json::json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
            );
        }
        let mut kept = Vec::new();
        for e in entries {
            let detail = e["Detail"].as_str().unwrap_or("").to_string();
            if let Some(i) = f.fail_once.iter().position(|m| detail.contains(m.as_str())) {
                f.fail_once.remove(i);
                injected.push(Some(serde_json::json!({
                    "ErrorCode": "ThrottlingException",
                    "ErrorMessage": "Rate exceeded"
                })));
            } else {
                injected.push(None);
                kept.push(e);
            }
        }
        drop(f);
        if kept.is_empty() {
            let n = injected.len();
            return json_response(
                200,
                serde_json::json!({"Entries": injected, "FailedEntryCount": n}),
            );
        }
        call["Entries"] = serde_json::Value::Array(kept);
        forward = Bytes::from(call.to_string());
    }
    let mut b = http::Request::builder()
        .method(parts.method.clone())
        .uri(format!(
            "http://{}{}",
            upstream.authority().unwrap(),
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        ));
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            b = b.header(k, v);
        }
    }
    let resp = client
        .request(b.body(Full::new(forward)).unwrap())
        .await
        .expect("moto answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    if injected.iter().all(Option::is_none) || status != 200 {
        let mut r = http::Response::new(Full::new(body));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (k, v) in &headers {
            if k != "content-length" {
                r.headers_mut().insert(k, v.clone());
            }
        }
        return r;
    }
    // Merge moto's per-entry results with the injected failures, in the original order.
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut theirs = answer["Entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter();
    let mut failed = answer["FailedEntryCount"].as_u64().unwrap_or(0);
    let merged: Vec<serde_json::Value> = injected
        .into_iter()
        .map(|i| match i {
            Some(err) => {
                failed += 1;
                err
            }
            None => theirs.next().unwrap_or_default(),
        })
        .collect();
    json_response(
        200,
        serde_json::json!({"Entries": merged, "FailedEntryCount": failed}),
    )
}
