//! The HTTP client of the server's API, and what can go wrong talking to it (each with its exit
//! code).

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a command did not do what was asked.
#[derive(Debug)]
pub enum Failure {
    /// The server answered 4xx or 5xx.
    Refused {
        /// `GET /api/...`.
        request: String,
        status: StatusCode,
        /// What the server said.
        message: String,
        /// The field it blames, when it names one.
        field: Option<String>,
        /// The command-line option that sets that field, when there is one.
        option: Option<String>,
    },
    /// No answer: the server is down, or elsewhere.
    Unreachable { url: Url, reason: String },
    /// The server answered something this command cannot read.
    Unexpected { request: String, reason: String },
    /// A wrong argument, found after parsing.
    Usage(String),
    /// A run or backfill followed to its end did not complete.
    NotCompleted(String),
}

impl Failure {
    /// The process's exit code for it.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused { .. } | Failure::Unexpected { .. } => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } => 3,
            Failure::NotCompleted(_) => 4,
        }
    }

    /// The same failure, naming the option that sets the field the server blames (`fields`:
    /// field name or prefix, option).
    pub fn with_options(self, fields: &[(&str, &str)]) -> Failure {
        match self {
            Failure::Refused {
                request,
                status,
                message,
                field: Some(field),
                option: None,
            } => {
                let option = option_for(&field, fields);
                Failure::Refused {
                    request,
                    status,
                    message,
                    field: Some(field),
                    option,
                }
            }
            other => other,
        }
    }
}

/// The option setting `field`: an exact name, or a prefix ending in `.` for nested fields
/// (`parameters.` → `--param days` for `parameters.days`).
fn option_for(field: &str, fields: &[(&str, &str)]) -> Option<String> {
    fields.iter().find_map(|(name, option)| {
        if let Some(prefix) = name.strip_suffix('.') {
            let rest = field.strip_prefix(prefix)?.strip_prefix('.')?;
            let key = rest.split(['.', '[']).next().filter(|k| !k.is_empty())?;
            Some(format!("{option} {key}"))
        } else {
            (field == *name).then(|| option.to_string())
        }
    })
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused {
                request,
                status,
                message,
                field,
                option,
            } => {
                let verb = if status.is_server_error() {
                    "the server failed"
                } else {
                    "the server refused"
                };
                match (field, option) {
                    (Some(field), Some(option)) => write!(f, "{verb} `{field}` ({option}): ")?,
                    (Some(field), None) => write!(f, "{verb} `{field}`: ")?,
                    (None, _) => write!(f, "{verb}: ")?,
                }
                write!(f, "{message} (HTTP {} from {request})", status.as_u16())
            }
            Failure::Unreachable { url, reason } => write!(
                f,
                "cannot reach the flowkit server at {url}: {reason}\n\
                 Start the server with `flowkit-server`, or set FLOWKIT_API_URL (or --api-url) \
                 to its address."
            ),
            Failure::Unexpected { request, reason } => {
                write!(f, "unexpected answer to {request}: {reason}")
            }
            Failure::Usage(message) | Failure::NotCompleted(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}

/// `--api-url`: an http(s) URL.
pub fn parse_api_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{e} (write it like http://127.0.0.1:4200)"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err("expected an http:// or https:// address, like http://127.0.0.1:4200".into()),
    }
}

/// The body of the server's error answers.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    field: Option<String>,
}

/// A JSON answer, with the request it answers (for messages).
pub struct Answer {
    pub request: String,
    pub value: Value,
}

impl Answer {
    /// The answer as a `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        T::deserialize(&self.value).map_err(|e| Failure::Unexpected {
            request: self.request.clone(),
            reason: format!(
                "{e} (is the server a different version of flowkit-server than this flowkit?)"
            ),
        })
    }
}

/// A client of one server.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: Option<String>,
}

impl Client {
    /// A client of the server at `base`, sending `key`, trusting the CA certificates in the PEM
    /// file `ca` too.
    pub fn new(
        base: Url,
        key: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("flowkit/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::Usage(format!("cannot read --ca-cert {}: {e}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    Failure::Usage(format!(
                        "--ca-cert {} holds no PEM certificate",
                        path.display()
                    ))
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build()?;
        Ok(Client { http, base, key })
    }

    /// `GET` the path made of `segments` (each percent-encoded) with `query`.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        self.send(Method::GET, segments, query, None::<&()>).await
    }

    /// `POST` a JSON body.
    pub async fn post(&self, segments: &[&str], body: &impl Serialize) -> Result<Answer, Failure> {
        self.send(Method::POST, segments, &[], Some(body)).await
    }

    /// `PUT` a JSON body.
    pub async fn put(&self, segments: &[&str], body: &impl Serialize) -> Result<Answer, Failure> {
        self.send(Method::PUT, segments, &[], Some(body)).await
    }

    /// `PATCH` a JSON body.
    pub async fn patch(&self, segments: &[&str], body: &impl Serialize) -> Result<Answer, Failure> {
        self.send(Method::PATCH, segments, &[], Some(body)).await
    }

    /// `DELETE` the path.
    pub async fn delete(&self, segments: &[&str]) -> Result<Answer, Failure> {
        self.send(Method::DELETE, segments, &[], None::<&()>).await
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<Answer, Failure> {
        let url = self.url(segments, query);
        let request = format!("{method} {}", url.path());
        let mut builder = self
            .http
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(key) = &self.key {
            builder = builder.bearer_auth(key);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            let value = serde_json::from_slice(&bytes).map_err(|e| Failure::Unexpected {
                request: request.clone(),
                reason: format!("not JSON: {e}"),
            })?;
            return Ok(Answer { request, value });
        }
        let (message, field) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error, body.field),
            Err(_) => (self.plain_message(status, &bytes, &request), None),
        };
        let message = if status == StatusCode::UNAUTHORIZED {
            let hint = match self.key {
                None => "no key was given: set FLOWKIT_API_KEY or pass --api-key",
                Some(_) => {
                    "the key given (FLOWKIT_API_KEY or --api-key) is not the server's, nor a \
                     key made on it: mistyped, or revoked"
                }
            };
            format!("{message} ({hint})")
        } else {
            message
        };
        Err(Failure::Refused {
            request,
            status,
            message,
            field,
            option: None,
        })
    }

    /// What to say about an error answer without the server's JSON body (a proxy's page, or a
    /// route this server does not have).
    fn plain_message(&self, status: StatusCode, body: &[u8], request: &str) -> String {
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            return format!(
                "the server at {} has no {request}: is it an older flowkit-server than this \
                 flowkit?",
                self.base
            );
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let reason = status.canonical_reason().unwrap_or("error");
        if text.is_empty() {
            reason.to_string()
        } else {
            let short: String = text.chars().take(200).collect();
            format!("{reason}: {short}")
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> Failure {
        // The innermost cause says what happened ("Connection refused (os error 111)").
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason = cause.to_string();
            source = cause.source();
        }
        if error.is_timeout() {
            reason = format!("no answer in time ({reason})");
        }
        Failure::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }
}
