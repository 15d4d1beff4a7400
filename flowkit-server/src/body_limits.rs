//! Limits on a request's body: its announced size is checked before any of it is read, and it
//! must arrive whole within a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::MAX_BODY;
use crate::error::ApiError;

/// How much of a refused body is read and dropped so the client sees the answer; a client
/// that sends more gets a reset connection.
const DISCARD_AT_MOST: usize = 2 * MAX_BODY;

/// How long a refused body is read and dropped, at most.
const DISCARD_FOR: Duration = Duration::from_secs(10);

/// Answers 413 at once to a request whose `Content-Length` is over [`MAX_BODY`], before any of
/// its body is processed. (A body without a length is cut off at the limit as it is read.)
///
/// A client that sends its body without waiting (most do, unless they ask `Expect:
/// 100-continue`) would get a reset connection instead of the answer if the server closed with
/// the body unread; so the body is read and dropped in the background, up to
/// [`DISCARD_AT_MOST`] bytes and [`DISCARD_FOR`], and the connection closed after it.
pub async fn refuse_oversized(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(length) = announced.filter(|n| *n > MAX_BODY as u64) else {
        return next.run(request).await;
    };
    let waits_for_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits_for_continue {
        tokio::spawn(discard(request.into_body()));
    }
    let mut response = ApiError::Body {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the body is {length} bytes; at most {MAX_BODY} are accepted"),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads `body` and drops it, within [`DISCARD_AT_MOST`] and [`DISCARD_FOR`].
async fn discard(body: Body) {
    let mut data = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DISCARD_FOR, async {
        while let Some(Ok(chunk)) = data.next().await {
            read = read.saturating_add(chunk.len());
            if read > DISCARD_AT_MOST {
                break;
            }
        }
    })
    .await;
}

/// Gives a request's body `limit` to arrive in full, from when the request reaches the app; a
/// body that has not is cut off and the request answered 408.
pub async fn body_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let request = {
        let expired = expired.clone();
        request.map(|body| Body::from_stream(within(body, limit, expired)))
    };
    let response = next.run(request).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    tracing::info!(?limit, "a request body did not arrive in time");
    let mut response = ApiError::Body {
        status: StatusCode::REQUEST_TIMEOUT,
        message: format!("the request body did not arrive within {limit:?}"),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The body's data, ending with an error (and setting `expired`) if it is not all there by
/// `limit`.
fn within(
    body: Body,
    limit: Duration,
    expired: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
    let deadline = Box::pin(tokio::time::sleep(limit));
    futures::stream::unfold(Some((body.into_data_stream(), deadline)), move |state| {
        let expired = expired.clone();
        async move {
            let (mut data, mut deadline) = state?;
            tokio::select! {
                biased;
                chunk = data.next() => chunk.map(|chunk| (chunk, Some((data, deadline)))),
                () = &mut deadline => {
                    expired.store(true, Ordering::Relaxed);
                    let error = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the request body did not arrive within {limit:?}"),
                    );
                    Some((Err(axum::Error::new(error)), None))
                }
            }
        }
    })
}
