//! A real HTTP server on loopback that plays a webhook: it records every request and answers from a script
//! (status and headers per request, then 200), so tests can see what the relay sent and how it retried.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<(u16, Vec<(&'static str, String)>)>,
}

pub struct Webhook {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let arrived = Arc::new(Notify::new());
        let (st, ar) = (state.clone(), arrived.clone());
        let (addr, task) = super::serve(move |req: http::Request<hyper::body::Incoming>| {
            let (st, ar) = (st.clone(), ar.clone());
            async move {
                let path = req.uri().path().to_string();
                let headers = req.headers().clone();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let (status, extra) = {
                    let mut s = st.lock().unwrap();
                    s.received.push(Received {
                        path,
                        headers,
                        body,
                    });
                    s.script.pop_front().unwrap_or((200, Vec::new()))
                };
                ar.notify_waiters();
                let mut resp = http::Response::new(Full::new(Bytes::from_static(b"{}")));
                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                for (k, v) in extra {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        })
        .await;
        Self {
            addr,
            state,
            arrived,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next requests get these answers, in order (then 200).
    pub fn script(&self, answers: &[(u16, &[(&'static str, &str)])]) {
        let mut s = self.state.lock().unwrap();
        for (status, headers) in answers {
            s.script.push_back((
                *status,
                headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ));
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Wait until at least `n` requests arrived (each arrival is a signal; no polling).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "the webhook got {} request(s), expected {n} within {within:?}",
                    self.received().len()
                );
            }
        }
    }
}
