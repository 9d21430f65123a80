//! The built-in web explorer: a static single-page app (plain HTML, CSS and JavaScript in
//! `node/assets/explorer/`) embedded in the binary and served at `/` and `/explorer/*`.
//!
//! The page only talks to the public HTTP API (paged endpoints only, so it stays fast on long
//! chains); the one endpoint added for it is `POST /api/proofs/verify` (see `api.rs`), which checks
//! an inclusion proof on the node and returns the claim it establishes.
//!
//! Assets carry a strong `ETag` (SHA-256 of their bytes) and `Cache-Control: no-cache`, so browsers
//! revalidate cheaply (`304 Not Modified`) and never run a stale script after an upgrade.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        Self {
            name,
            content_type,
            bytes,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.bytes);
            let tag = format!("\"{}\"", hex::encode(&digest[..12]));
            HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
        })
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        let etag = self.etag().clone();
        let cache = HeaderValue::from_static("no-cache");
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == etag.to_str().unwrap_or(""))
            });
        if matches {
            return (
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
            )
                .into_response();
        }
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                ),
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            self.bytes,
        )
            .into_response()
    }
}

static INDEX: Asset = Asset::new(
    "index.html",
    "text/html; charset=utf-8",
    include_bytes!("../assets/explorer/index.html"),
);

static ASSETS: [Asset; 3] = [
    Asset::new(
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/explorer/app.js"),
    ),
    Asset::new(
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/explorer/app.css"),
    ),
    Asset::new(
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/explorer/favicon.svg"),
    ),
];

/// The explorer's routes: `/` (the page) and `/explorer/{file}` (its assets). Stateless, so it
/// merges into any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/explorer", get(index))
        .route("/explorer/", get(index))
        .route("/explorer/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    INDEX.respond(&headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => a.respond(&headers),
        None if file == INDEX.name => INDEX.respond(&headers),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no explorer asset `{file}`") })),
        )
            .into_response(),
    }
}
