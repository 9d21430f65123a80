//! The built-in web explorer (issue 9): its assets are served from the binary, and the proof
//! check it relies on (`POST /api/proofs/verify`) accepts a real proof and rejects a tampered one.
//! The page itself is exercised in headless Chromium by `node/tests/browser/explorer_test.py`.

mod common;

use std::time::Duration;

use common::NodeProc;
use serde_json::Value;

async fn fetch(url: &str) -> (u16, String, String, reqwest::header::HeaderMap) {
    let r = reqwest::get(url).await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, r.text().await.unwrap_or_default(), headers)
}

#[tokio::test(flavor = "multi_thread")]
async fn explorer_assets_and_proof_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::dev(&dir.path().join("dev"));
    node.wait_healthy().await;

    // The page.
    let (code, ct, html, headers) = fetch(&format!("{}/", node.http)).await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("text/html"), "content type {ct}");
    assert!(
        html.contains(r#"<script src="/explorer/app.js""#),
        "index.html loads the app script: {html}"
    );
    assert!(headers.get("cache-control").is_some(), "cache header set");
    let etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned();

    // Its assets, with content types; revalidation answers 304.
    for (path, want) in [
        ("/explorer/app.js", "text/javascript"),
        ("/explorer/app.css", "text/css"),
        ("/explorer/favicon.svg", "image/svg+xml"),
    ] {
        let (code, ct, body, _) = fetch(&format!("{}{path}", node.http)).await;
        assert_eq!(code, 200, "{path}");
        assert!(ct.starts_with(want), "{path}: content type {ct}");
        assert!(!body.is_empty(), "{path} is empty");
    }
    let r = reqwest::Client::new()
        .get(format!("{}/", node.http))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("conditional request");
    assert_eq!(r.status().as_u16(), 304);
    let (code, _, _, _) = fetch(&format!("{}/explorer/nope.js", node.http)).await;
    assert_eq!(code, 404);
    // The API is unaffected.
    let (code, status) = node.get("/api/status").await;
    assert_eq!(code, 200);

    // A real proof verifies and yields the claim.
    let data = "<http://example.org/explorer> <http://example.org/p> \"proof\" .";
    let tx_id = node.submit(data).await;
    node.wait_final(&tx_id, Duration::from_secs(20)).await;
    let (code, proof) = node.get(&format!("/api/transactions/{tx_id}/proof")).await;
    assert_eq!(code, 200, "{proof}");
    let (code, claim) = node
        .post("/api/proofs/verify", "application/json", proof.to_string())
        .await;
    assert_eq!(code, 200, "{claim}");
    assert_eq!(claim["tx_id"], tx_id.as_str());
    assert_eq!(claim["data"], data);
    assert_eq!(claim["genesis_hash"], status["genesis_hash"]);
    assert_eq!(claim["proposer"], status["authorities"][0]);

    // Tampered proofs are refused with 422 and the reason.
    let flip = |s: &str| -> String {
        let mut chars: Vec<char> = s.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == '0' { '1' } else { '0' };
        chars.into_iter().collect()
    };
    for field in ["seal", "header", "transaction", "block_hash"] {
        let mut bad = proof.clone();
        let v = bad[field].as_str().expect(field).to_owned();
        bad[field] = Value::String(flip(&v));
        let (code, err) = node
            .post("/api/proofs/verify", "application/json", bad.to_string())
            .await;
        assert_eq!(code, 422, "tampered {field}: {err}");
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "tampered {field}: {err}"
        );
    }
    let mut bad = proof.clone();
    bad["index"] = Value::from(proof["index"].as_u64().unwrap_or(0) + 1);
    bad["merkle_path"] = Value::Array(vec![]);
    bad["tx_id"] = Value::String(flip(&tx_id));
    let (code, _) = node
        .post("/api/proofs/verify", "application/json", bad.to_string())
        .await;
    assert_eq!(code, 422, "tampered tx id");
    let (code, err) = node
        .post(
            "/api/proofs/verify",
            "application/json",
            "{\"not\":\"a proof\"}",
        )
        .await;
    assert_eq!(code, 422, "{err}");

    node.terminate(Duration::from_secs(10));
}
