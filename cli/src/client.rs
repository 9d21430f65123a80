//! The blocking HTTP client for a node's API, turning every failure into one actionable line.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

/// How long to wait for a TCP connection to the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take end to end (SPARQL queries are bounded by the node's own
/// `web.query_timeout_ms`, 10 s by default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A node's API at `base` (e.g. `http://127.0.0.1:8080`).
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    http: Client,
    token: Option<String>,
}

/// A response body with its content type.
#[derive(Debug)]
pub struct Body {
    pub content_type: String,
    pub text: String,
}

impl NodeClient {
    /// Accepts `host:port` too (http is assumed).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim().trim_end_matches('/');
        if base.is_empty() {
            return Err(anyhow!(
                "--node is empty; give the node's API URL, e.g. http://127.0.0.1:8080"
            ));
        }
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("provchain-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {e}"))?;
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(Self { base, http, token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`, expecting JSON.
    pub fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let body = self.send(
            self.http
                .get(self.url(path))
                .header(ACCEPT, "application/json"),
        )?;
        parse_json(&body, path)
    }

    /// GET `path`; `Ok(None)` on 404 (for polling things that may not exist yet).
    pub fn get_json_opt(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let resp = self.execute(
            self.http
                .get(self.url(path))
                .header(ACCEPT, "application/json"),
        )?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = self.finish(resp)?;
        parse_json(&body, path).map(Some)
    }

    /// GET `path` as raw bytes (binary endpoints such as the chain archive).
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self.execute(self.http.get(self.url(path)))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().unwrap_or_default();
            return Err(anyhow!(error_line(status, &text, self.token.is_some())));
        }
        resp.bytes()
            .map(|b| b.to_vec())
            .map_err(|e| anyhow!("reading the answer of {}: {}", self.base, root_cause(&e)))
    }

    /// POST a raw body with `content_type`, sending the token if there is one.
    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        accept: &str,
        body: String,
    ) -> anyhow::Result<Body> {
        let mut req = self
            .http
            .post(self.url(path))
            .header(CONTENT_TYPE, content_type)
            .header(ACCEPT, accept)
            .body(body);
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req)
    }

    fn send(&self, req: RequestBuilder) -> anyhow::Result<Body> {
        let resp = self.execute(req)?;
        self.finish(resp)
    }

    fn execute(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        req.send()
            .map_err(|e| anyhow!("cannot reach node at {}: {}", self.base, root_cause(&e)))
    }

    fn finish(&self, resp: Response) -> anyhow::Result<Body> {
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp
            .text()
            .map_err(|e| anyhow!("reading the answer of {}: {}", self.base, root_cause(&e)))?;
        if status.is_success() {
            return Ok(Body { content_type, text });
        }
        Err(anyhow!(error_line(status, &text, self.token.is_some())))
    }
}

fn parse_json(body: &Body, path: &str) -> anyhow::Result<Value> {
    serde_json::from_str(&body.text).map_err(|e| {
        anyhow!("the node's answer to {path} is not JSON ({e}); is --node a ProvChain node?")
    })
}

/// The node's `{"error": ...}` (plus `line`/`column` where the parser gave them) as one line,
/// with a hint for the statuses an operator can fix.
pub fn error_line(status: StatusCode, body: &str, had_token: bool) -> String {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let mut msg = json
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let t = body.trim();
            if t.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                t.chars().take(300).collect()
            }
        });
    if let Some(v) = &json {
        let line = v.get("line").and_then(Value::as_u64);
        let column = v.get("column").and_then(Value::as_u64);
        let located = line.is_some_and(|l| msg.contains(&format!("line {l}")));
        if !located && let Some(l) = line {
            match column {
                Some(c) => msg.push_str(&format!(" (line {l}, column {c})")),
                None => msg.push_str(&format!(" (line {l})")),
            }
        }
    }
    let hint = match status {
        StatusCode::UNAUTHORIZED if !had_token => {
            "; this node requires a token: pass --token or set PROVCHAIN_TOKEN (mint one with `provchain token`)"
        }
        StatusCode::UNAUTHORIZED => {
            "; mint a fresh token with `provchain token` using the node's JWT_SECRET"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "; split the document into smaller transactions",
        StatusCode::SERVICE_UNAVAILABLE => "; the node is busy or not ready, retry later",
        _ => "",
    };
    let line = format!("node answered {}: {msg}{hint}", status.as_u16());
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause (`Connection refused (os error 111)`), which is what operators act on.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut text = e.to_string();
    while let Some(next) = cur.source() {
        text = next.to_string();
        cur = next;
    }
    if e.to_string().contains("timed out") || text.contains("timed out") {
        return format!("timed out ({text})");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_carry_the_server_message_and_location() {
        let l = error_line(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid turtle: bad","line":3,"column":7}"#,
            false,
        );
        assert_eq!(
            l,
            "node answered 400: invalid turtle: bad (line 3, column 7)"
        );
        let l = error_line(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid turtle: line 3, column 7: bad","line":3}"#,
            false,
        );
        assert_eq!(
            l,
            "node answered 400: invalid turtle: line 3, column 7: bad"
        );
        let l = error_line(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"missing header"}"#,
            false,
        );
        assert!(l.starts_with("node answered 401: missing header; this node requires a token"));
        let l = error_line(StatusCode::BAD_GATEWAY, "", false);
        assert_eq!(l, "node answered 502: Bad Gateway");
    }
}
