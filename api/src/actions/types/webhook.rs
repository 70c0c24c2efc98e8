//! `webhook`: an HTTP request to a URL, signed with the org's secret.
//!
//! Input: `{url, method?, headers?, body?}`. The body is any JSON (built from variables by the
//! template's `=` expressions), sent compact as `application/json`; absent, it is `{}`.
//! Headers sent besides the caller's: `Idempotency-Key` (the job id, the same on every
//! attempt), `Pled-Job-Id`, `Pled-Attempt`, `Pled-Execution-Id`, `Pled-Timestamp`,
//! `Pled-Signature` (see [`crate::actions::signing`]).
//!
//! 2xx succeeds (the response body, JSON if it parses, else text, is the result). 408, 429 and
//! 5xx, network errors and time-outs are retried (`Retry-After` honoured, in seconds or as an
//! HTTP date). Any other status fails the job without a retry.

use std::time::Duration;

use futures_util::future::BoxFuture;
use pled_core::OrgId;
use serde_json::{Value, json};

use super::{ActionType, Context, Outcome, only, text};
use crate::actions::signing;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The most response bytes kept (the rest is cut).
const MAX_RESPONSE: usize = 16 * 1024;
/// Headers PLED sets itself; an input may not set them.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "pled-job-id",
    "pled-attempt",
    "pled-execution-id",
    signing::TIMESTAMP_HEADER,
    signing::SIGNATURE_HEADER,
];
const METHODS: &[&str] = &["POST", "PUT", "PATCH", "DELETE", "GET"];

/// The `webhook` type.
pub struct Webhook;

impl ActionType for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn description(&self) -> &'static str {
        "An HTTP request (JSON body) signed with the org's HMAC-SHA256 secret; retried on network errors, time-outs, 408, 429 and 5xx."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["url"],
            "additionalProperties": false,
            "properties": {
                "url": {"type": "string", "description": "http:// or https:// URL"},
                "method": {"type": "string", "enum": METHODS, "default": "POST"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Extra headers (not the ones PLED sets)"},
                "body": {"description": "Any JSON; sent compact as application/json (default {})"}
            }
        })
    }

    fn check(&self, input: &Value) -> Result<(), String> {
        only(input, &["url", "method", "headers", "body"])?;
        let url = text(input, "url")?.ok_or("/url is required")?;
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("/url: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("/url: scheme {:?} is not supported (http or https)", parsed.scheme()));
        }
        if let Some(m) = text(input, "method")?
            && !METHODS.contains(&m)
        {
            return Err(format!("/method must be one of {}", METHODS.join(", ")));
        }
        if let Some(h) = input.get("headers").filter(|h| !h.is_null()) {
            let h = h.as_object().ok_or("/headers must be an object of strings")?;
            for (k, v) in h {
                if !v.is_string() {
                    return Err(format!("/headers/{k} must be a string"));
                }
                if RESERVED.contains(&k.to_ascii_lowercase().as_str()) {
                    return Err(format!("/headers/{k} is set by PLED"));
                }
                reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("/headers/{k} is not a header name"))?;
            }
        }
        Ok(())
    }

    fn run<'a>(&'a self, cx: Context<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(run(cx))
    }
}

async fn run(cx: Context<'_>) -> Outcome {
    let input = &cx.job.input;
    let Ok(Some(url)) = text(input, "url") else {
        return Outcome::failed("/url is required");
    };
    let method = text(input, "method").ok().flatten().unwrap_or("POST");
    let body = match input.get("body") {
        None | Some(Value::Null) => b"{}".to_vec(),
        Some(b) => serde_json::to_vec(b).unwrap_or_default(),
    };
    let org = match OrgId::new(&cx.job.org) {
        Ok(o) => o,
        Err(e) => return Outcome::failed(format!("job org: {e}")),
    };
    let secret = match signing::outbound_secret(cx.store, &org).await {
        Ok(s) => s,
        Err(e) => return Outcome::retry(format!("reading the signing secret: {e}")),
    };
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Outcome::failed("/method is not a method");
    };
    let mut req = cx
        .http
        .request(method, url)
        .header("content-type", "application/json")
        .header("idempotency-key", &cx.job.id)
        .header("pled-job-id", &cx.job.id)
        .header("pled-attempt", cx.attempt.to_string())
        .header("pled-execution-id", &cx.job.execution_id)
        .header(signing::TIMESTAMP_HEADER, ts.to_string())
        .header(signing::SIGNATURE_HEADER, signing::sign(&secret, ts, &body));
    if let Some(h) = input.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                req = req.header(k, v);
            }
        }
    }
    let res = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::retry(format!("request failed: {}", error_chain(&e))),
    };
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after);
    let bytes = match res.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Retry {
                error: format!("reading the response failed: {}", error_chain(&e)),
                status: Some(status),
                retry_after: None,
            };
        }
    };
    let response = response_value(&bytes);
    match status {
        200..=299 => Outcome::Succeeded { response: json!({"status": status, "body": response}), status: Some(status) },
        408 | 429 | 500..=599 => {
            Outcome::Retry { error: format!("the receiver answered {status}"), status: Some(status), retry_after }
        }
        _ => Outcome::Failed {
            error: format!("the receiver answered {status}"),
            status: Some(status),
            response: json!({"status": status, "body": response}),
        },
    }
}

/// The response body: its JSON if it parses, else its text, cut at [`MAX_RESPONSE`] bytes.
fn response_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if bytes.len() <= MAX_RESPONSE
        && let Ok(v) = serde_json::from_slice::<Value>(bytes)
        && pled_core::Body::from_value(&v).is_ok()
    {
        return v;
    }
    let cut = &bytes[..bytes.len().min(MAX_RESPONSE)];
    Value::String(String::from_utf8_lossy(cut).into_owned())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// `Retry-After`: delay-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
        let secs = (at - time::OffsetDateTime::now_utc()).whole_seconds().max(0);
        Duration::from_secs(secs as u64)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked() {
        let w = Webhook;
        assert!(w.check(&json!({"url": "http://127.0.0.1:9/x"})).is_ok());
        assert!(w.check(&json!({"url": "https://hooks.example.com/x"})).is_ok());
        assert!(w.check(&json!({"url": "http://h/x", "method": "PUT", "headers": {"x-a": "1"}, "body": [1]})).is_ok());
        for (bad, why) in [
            (json!({}), "/url is required"),
            (json!({"url": "nope"}), "/url"),
            (json!({"url": "ftp://h/x"}), "scheme"),
            (json!({"url": "http://h", "method": "BREW"}), "/method"),
            (json!({"url": "http://h", "headers": {"Idempotency-Key": "x"}}), "set by PLED"),
            (json!({"url": "http://h", "headers": {"x": 1}}), "must be a string"),
            (json!({"url": "http://h", "extra": 1}), "unknown member /extra"),
        ] {
            let e = w.check(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn responses_are_json_or_text() {
        assert_eq!(response_value(b"{\"ok\":true}"), json!({"ok": true}));
        assert_eq!(response_value(b"plain"), json!("plain"));
        assert_eq!(response_value(b""), Value::Null);
    }
}
