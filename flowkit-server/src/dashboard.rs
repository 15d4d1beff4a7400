//! The dashboard: a static page and its scripts, embedded in the binary, that read the API.
//!
//! `/` is served `no-cache`, with every asset link carrying a hash of the assets (`?v=...`), and
//! so does every `import` in the scripts (rewritten as they are served); an asset asked for with
//! the current hash is cached for a year (`immutable`), any other asks the browser to revalidate
//! (ETag), so a new server never meets a stale script.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::Digest;

use crate::error::ApiError;

/// The files of `dashboard/`, in the binary in every build.
#[derive(rust_embed::Embed)]
#[folder = "dashboard/"]
struct Assets;

/// A hash of every asset: changes whenever one does.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut names: Vec<_> = Assets::iter().collect();
    names.sort();
    let mut all = sha2::Sha256::new();
    for name in names {
        if let Some(file) = Assets::get(&name) {
            all.update(name.as_bytes());
            all.update(file.metadata.sha256_hash());
        }
    }
    let digest = all.finalize();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
});

/// The page, with `{{version}}` replaced.
static INDEX: LazyLock<String> = LazyLock::new(|| {
    Assets::get("index.html")
        .map(|f| String::from_utf8_lossy(&f.data).replace("{{version}}", &VERSION))
        .unwrap_or_default()
});

/// An asset as served: scripts with `./module.js` imports versioned like the page's links.
fn served(path: &str, data: &[u8]) -> Vec<u8> {
    if path.ends_with(".js") {
        String::from_utf8_lossy(data)
            .replace(".js';", &format!(".js?v={}';", *VERSION))
            .into_bytes()
    } else {
        data.to_vec()
    }
}

/// `/` and `/assets/*`. They hold no data (the scripts read the API, which checks the key), so
/// they answer without an API key: the page is where the key is asked for.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

/// The page runs only its own scripts and talks only to this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX.as_str(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

async fn asset(
    Path(path): Path<String>,
    query: Result<Query<AssetQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some(file) = Assets::get(&path).filter(|_| path != "index.html") else {
        return ApiError::NotFound(format!("dashboard asset {path:?}")).into_response();
    };
    let version = query.ok().and_then(|Query(q)| q.v);
    // The file's own hash and the version its imports carry.
    let etag = format!(
        "\"{}-{}\"",
        file.metadata.sha256_hash()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        *VERSION
    );
    let cache = if version.as_deref() == Some(VERSION.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, file.metadata.mimetype().to_string())],
            served(&path, &file.data),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}
