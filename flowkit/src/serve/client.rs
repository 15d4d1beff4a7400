//! A client of the flowkit server's API for serving programs, over one or more server URLs.
//!
//! `FLOWKIT_API_URL` may list several servers (comma-separated) sharing one database: a request
//! that cannot connect, times out or gets a server error (5xx) moves the client to the next
//! URL, where it stays while that one works.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request got no answer to use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No connection, a timeout or a server error: worth trying again (on the next URL).
    #[error("{url}: {why}")]
    Unavailable { url: String, why: String },
    /// The server answered 4xx: trying again would not help (the same request).
    #[error("{url}: server answered {status}: {text}")]
    Refused {
        url: String,
        status: u16,
        text: String,
    },
}

/// The server URLs in `text`: comma-separated, blanks ignored, trailing slashes removed.
pub(crate) fn urls(text: &str) -> Vec<String> {
    text.split(',')
        .map(|url| url.trim().trim_end_matches('/'))
        .filter(|url| !url.is_empty())
        .map(str::to_string)
        .collect()
}

/// Requests to the first server URL that works. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    urls: Vec<String>,
    api_key: Option<String>,
    /// The URL in use, as an index into `urls`.
    current: AtomicUsize,
    client: reqwest::Client,
}

impl ApiClient {
    /// A client of the servers at `urls` (at least one), with `api_key` as a bearer token.
    pub(crate) fn new(urls: Vec<String>, api_key: Option<String>) -> ApiClient {
        let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        let ca = crate::sink::ca::ca_path(None);
        let client = crate::sink::ca::trust(builder, ca.as_deref(), &urls)
            .build()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "flowkit: could not configure the API client; using defaults");
                reqwest::Client::new()
            });
        ApiClient {
            inner: Arc::new(Inner {
                urls,
                api_key,
                current: AtomicUsize::new(0),
                client,
            }),
        }
    }

    /// How many server URLs it knows.
    pub(crate) fn url_count(&self) -> usize {
        self.inner.urls.len()
    }

    /// The URL in use.
    #[cfg(test)]
    pub(crate) fn current_url(&self) -> &str {
        let index = self.inner.current.load(Ordering::Relaxed);
        self.inner
            .urls
            .get(index % self.inner.urls.len().max(1))
            .map_or("", String::as_str)
    }

    /// Sends `body` as JSON with `method` to `path` on the server in use, within `timeout`;
    /// the answer's JSON. Moves to the next URL when the server is unavailable.
    pub(crate) async fn send<B: Serialize, R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, ApiError> {
        self.exchange(method, path, |request| request.json(body), timeout)
            .await
    }

    /// Gets `path` with the query `query` from the server in use, within `timeout`; the
    /// answer's JSON. Moves to the next URL when the server is unavailable.
    pub(crate) async fn get<R: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<R, ApiError> {
        self.exchange(
            reqwest::Method::GET,
            path,
            |request| request.query(query),
            timeout,
        )
        .await
    }

    async fn exchange<R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<R, ApiError> {
        let inner = &self.inner;
        let index = inner.current.load(Ordering::Relaxed);
        let base = inner
            .urls
            .get(index % inner.urls.len().max(1))
            .cloned()
            .unwrap_or_default();
        let url = format!("{base}{path}");
        let mut request = build(inner.client.request(method, &url)).timeout(timeout);
        if let Some(key) = &inner.api_key {
            request = request.bearer_auth(key);
        }
        let unavailable = |why: String| {
            // Next URL, unless another request moved on already.
            let next = (index + 1) % inner.urls.len().max(1);
            let _ =
                inner
                    .current
                    .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
            ApiError::Unavailable {
                url: url.clone(),
                why,
            }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Err(unavailable(error.to_string())),
        };
        let status = response.status();
        if status.is_server_error() {
            return Err(unavailable(format!("server answered {status}")));
        }
        if !status.is_success() {
            let text = tokio::time::timeout(timeout, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(ApiError::Refused {
                url,
                status: status.as_u16(),
                text: text.trim().to_string(),
            });
        }
        let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => return Err(unavailable(error.to_string())),
            Err(_) => return Err(unavailable("timed out reading the answer".into())),
        };
        // An empty answer reads as JSON `null` (for `()`).
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map_err(|error| ApiError::Refused {
            url,
            status: status.as_u16(),
            text: format!("unreadable answer: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_on_commas_and_trimmed() {
        assert_eq!(
            urls(" http://a:1/, ,http://b:2 "),
            ["http://a:1", "http://b:2"]
        );
        assert!(urls(" , ").is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_server_moves_the_client_to_the_next_url_where_it_stays() {
        // Two ports nobody listens on: each failure moves on, round the list.
        let dead = |_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            format!("http://127.0.0.1:{port}")
        };
        let list: Vec<String> = (0..2).map(dead).collect();
        let client = ApiClient::new(list.clone(), None);
        assert_eq!(client.current_url(), list[0]);
        let answer: Result<serde_json::Value, _> = client
            .send(reqwest::Method::POST, "/x", &(), Duration::from_secs(2))
            .await;
        assert!(
            matches!(answer, Err(ApiError::Unavailable { .. })),
            "{answer:?}"
        );
        assert_eq!(client.current_url(), list[1]);
        let _ = client
            .send::<_, serde_json::Value>(reqwest::Method::POST, "/x", &(), Duration::from_secs(2))
            .await;
        assert_eq!(client.current_url(), list[0], "round the list");
    }
}
