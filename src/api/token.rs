//! `POST /oauth/token`: ISC's client-credentials grant, as SailPoint's clients send it (query string, urlencoded
//! or multipart body, HTTP Basic), rate-limited per source address and per configured client. The tokens
//! themselves (issue, verify, scopes) are [`super::auth`]'s.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use std::net::IpAddr;

use super::auth::TokenError;
use super::collection::params;
use super::{bad_request, json_response, ApiState, Resp};
use crate::error::ApiError;
use crate::ratelimit::OverLimit;
use http::HeaderValue;

impl ApiState {
    pub(super) async fn token(
        &self,
        req: Request<Incoming>,
        source: IpAddr,
    ) -> Result<Resp, ApiError> {
        if req.method() != Method::POST {
            return Err(
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "POST the token request")
                    .with_header(header::ALLOW, HeaderValue::from_static("POST")),
            );
        }
        self.refuse_failing_source(source)?;
        let over = |OverLimit { retry_after_s }| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
                .retry_after(retry_after_s)
        };
        self.token_sources.check(&source).map_err(over)?;
        // The client's credentials in any of the encodings clients use: the query string, an urlencoded or
        // multipart/form-data body, or HTTP Basic (RFC 6749 §2.3.1: id and secret form-encoded, then base64).
        let mut form = params(req.uri().query());
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let basic = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(basic_credentials);
        let body = Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if content_type
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
        {
            let fields = multipart_fields(&content_type, body).await.map_err(|why| {
                bad_request("the token request is not valid multipart/form-data").cause(why)
            })?;
            form.extend(fields);
        } else {
            form.extend(form_urlencoded::parse(&body).into_owned());
        }
        if let Some((id, secret)) = basic {
            form.entry("client_id".into()).or_insert(id);
            form.entry("client_secret".into()).or_insert(secret);
        }
        // Each configured client has its own window for token requests too, whichever address sends them.
        if let Some(id) = form
            .get("client_id")
            .filter(|id| self.auth.knows_client(id))
        {
            self.token_clients.check(id.as_str()).map_err(over)?;
        }
        let oauth_error = |status: StatusCode, code: &str, description: &str| {
            json_response(
                status,
                &json!({ "error": code, "error_description": description }),
            )
        };
        Ok(match self.auth.issue(&form) {
            Ok((token, ttl, scopes)) => json_response(
                StatusCode::OK,
                &json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": ttl.as_secs(),
                    "scope": scopes.join(" "),
                }),
            ),
            Err(TokenError::UnsupportedGrant) => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ),
            Err(TokenError::InvalidRequest(why)) => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why)
            }
            Err(TokenError::InvalidClient) => {
                self.failed(source, "bad_client");
                oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "unknown client or wrong secret",
                )
            }
        })
    }
}

/// `Authorization: Basic base64(id:secret)` with each part form-urlencoded (RFC 6749 §2.3.1).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// The text fields of a multipart/form-data body (at most 16 fields of 8 KiB: a token request has three).
async fn multipart_fields(
    content_type: &str,
    body: Bytes,
) -> Result<Vec<(String, String)>, String> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(64 * 1024)
            .per_field(8 * 1024),
    );
    let mut m = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut out = Vec::new();
    while let Some(field) = m.next_field().await.map_err(|e| e.to_string())? {
        if out.len() >= 16 {
            return Err("more than 16 fields".into());
        }
        let name = field.name().unwrap_or_default().to_string();
        let value = field.text().await.map_err(|e| e.to_string())?;
        out.push((name, value));
    }
    Ok(out)
}
