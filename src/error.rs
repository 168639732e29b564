//! ISC's error wire shapes, so ISC tenants, SailPoint SDKs and scripts read our errors as they read ISC's.
//!
//! Every 4xx/5xx body the relay writes is an [`ErrorResponseDto`], except 401 (`{"error": …}`) and the API's 429
//! (`{"message": " Rate Limit Exceeded "}`), which ISC shapes differently. The ingress's 429 is an
//! `ErrorResponseDto` ([`ApiError::dto_body`]) like its other errors: ISC's API shape is for SDKs, while the
//! ingress's callers are an ISC tenant and operators, who get the tracking id and the cause in the body. Each
//! error carries a tracking id that also appears in the log line and in the `X-Tracking-Id` response header, so an
//! operator can join a tenant's report to our logs.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// ISC's `ErrorMessageDto`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessageDto {
    pub locale: &'static str,
    pub locale_origin: &'static str,
    pub text: String,
}

impl ErrorMessageDto {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            locale: "en-US",
            locale_origin: "DEFAULT",
            text: text.into(),
        }
    }
}

/// ISC's `ErrorResponseDto`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponseDto {
    pub detail_code: &'static str,
    pub tracking_id: String,
    pub messages: Vec<ErrorMessageDto>,
    pub causes: Vec<ErrorMessageDto>,
}

/// The response header that carries the tracking id of every error answer.
pub const TRACKING_HEADER: &str = "x-tracking-id";

/// A new tracking id: 32 lowercase hex digits, as ISC's.
pub fn tracking_id() -> String {
    TrackingId::new().to_string()
}

/// An event's tracking id, kept as its number and written out only when an answer or a log line shows it: the
/// ingress makes one per event, and most events are never named (no text, no allocation on the hot path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackingId(u128);

impl TrackingId {
    #[allow(clippy::new_without_default)] // a fresh random id each call: not a default
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().as_u128())
    }
    /// The id as a number (a started trace uses it as its trace id).
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

/// 32 lowercase hex digits (a UUID's simple form, as [`tracking_id`] writes it).
impl std::fmt::Display for TrackingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// ISC's `detailCode` for a status.
pub fn detail_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "400.1 Bad Request Content",
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not found",
        405 => "405 Method Not Allowed",
        408 => "408 Request Timeout",
        409 => "409 Conflict",
        412 => "412 Precondition Failed",
        413 => "413 Payload Too Large",
        415 => "415 Unsupported Media Type",
        429 => "429 Too Many Requests",
        431 => "431 Request Header Fields Too Large",
        500 => "500.0 Internal Fault",
        501 => "501 Not Implemented",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        504 => "504 Gateway Timeout",
        508 => "508 Loop Detected",
        n if (400..500).contains(&n) => "400 Bad Request",
        _ => "500.0 Internal Fault",
    }
}

/// An error answer with its tracking id; turned into a response by [`ApiError::into_response`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub causes: Vec<String>,
    pub tracking_id: String,
    /// Seconds for `Retry-After` (503, 429).
    pub retry_after_s: Option<u64>,
    /// Extra header (e.g. `Allow` on 405, `WWW-Authenticate` on 401).
    pub header: Option<Box<(header::HeaderName, HeaderValue)>>,
    /// An `ErrorResponseDto` body even for 429 (see [`ApiError::dto_body`]).
    pub dto: bool,
    /// Load shedding (a full queue): expected by the thousand under overload, so logged at debug and told by the
    /// shed counter instead (see [`ApiError::shed`]).
    pub shed: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::tracked(status, message, tracking_id())
    }

    /// An error for a request that already has its tracking id (it is in the logs of its deliveries).
    pub fn tracked(status: StatusCode, message: impl Into<String>, tracking_id: String) -> Self {
        Self {
            status,
            message: message.into(),
            causes: Vec::new(),
            tracking_id,
            retry_after_s: None,
            header: None,
            dto: false,
            shed: false,
        }
    }

    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.header = Some(Box::new((name, value)));
        self
    }

    /// Mark a refusal as load shedding (see the field).
    pub fn shed(mut self) -> Self {
        self.shed = true;
        self
    }

    /// Answer a 429 with an `ErrorResponseDto` (message, causes, tracking id) instead of ISC's API shape.
    pub fn dto_body(mut self) -> Self {
        self.dto = true;
        self
    }

    /// The body as ISC shapes it for this status.
    pub fn body(&self) -> Vec<u8> {
        let r = match self.status {
            StatusCode::UNAUTHORIZED => {
                serde_json::to_vec(&serde_json::json!({ "error": self.message }))
            }
            StatusCode::TOO_MANY_REQUESTS if !self.dto => {
                serde_json::to_vec(&serde_json::json!({ "message": " Rate Limit Exceeded " }))
            }
            _ => serde_json::to_vec(&ErrorResponseDto {
                detail_code: detail_code(self.status),
                tracking_id: self.tracking_id.clone(),
                messages: vec![ErrorMessageDto::new(self.message.clone())],
                causes: self
                    .causes
                    .iter()
                    .cloned()
                    .map(ErrorMessageDto::new)
                    .collect(),
            }),
        };
        r.unwrap_or_default()
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.body())));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Also on 401 and 429, whose ISC bodies have no place for it.
        if let Ok(v) = HeaderValue::from_str(&self.tracking_id) {
            h.insert(TRACKING_HEADER, v);
        }
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some((name, value)) = self.header.map(|b| *b) {
            h.insert(name, value);
        }
        resp
    }
}
