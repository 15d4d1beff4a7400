//! Who may call what.
//!
//! When the server has an `--api-key`, every route but `/healthz` needs `Authorization: Bearer
//! <key>`: that key (which holds every scope, so nothing that used it before breaks) or a key
//! made with `POST /api/keys`. (The dashboard's static files are routed outside this check:
//! they hold no data, and the page is where the key is asked for.) Without an `--api-key` the
//! server checks nothing, as before, and refuses to make keys (they would protect nothing).
//!
//! Each route needs one scope ([`need`], the one table of it): `read` for every `GET`, `write`
//! for what programs and workers send, `operate` for what operators do, `admin` for keys. A
//! key a route does not know is a 401; a known key without the scope, a 403 naming the scope.
//!
//! Keys are long random tokens (`fk_` and 64 hex digits, 256 bits), so the server stores their
//! SHA-256, not a slow password hash: nobody can guess a preimage of a 256-bit random value,
//! and a fast hash keeps the check cheap on every request. A key is looked up by its hash (the
//! timing of that lookup tells nothing about the key, only about hashes nobody can aim at),
//! and the stored hash is compared with the computed one in constant time; so is the
//! `--api-key`.
//!
//! Keys found are cached in memory for a minute. Revoking one empties the cache of the server
//! that revoked it; on PostgreSQL the revocation commits with a `NOTIFY flowkit_keys`, and every
//! server listening empties its cache when it hears it. A server that is not listening (its
//! connection dropped and is coming back) does not trust its cache at all meanwhile, so a
//! revoked key never outlives a lost notification.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flowkit_api::access::{Scope, Scopes};
use sha2::Digest;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Store, StoreError};

/// The name the server's `--api-key` goes by in the audit trail.
pub const API_KEY_NAME: &str = "api-key";
/// The name of every caller of a server that checks no key.
pub const ANONYMOUS: &str = "anonymous";
/// How long a key found stays cached (unless revoked first).
const CACHE_FOR: Duration = Duration::from_secs(60);
/// At most this many keys cached; the cache empties when full.
const CACHE_MAX: usize = 10_000;

/// Who made a request, and what they may do.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's name (recorded in the audit trail).
    pub name: Arc<str>,
    /// Its scopes.
    pub scopes: Scopes,
}

impl Caller {
    /// The caller of a server that checks no key: may do everything.
    pub fn anonymous() -> Caller {
        Caller {
            name: ANONYMOUS.into(),
            scopes: Scopes::ALL,
        }
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: it answers anyone (`/healthz`).
    Public,
    /// Any valid key (`GET /api/keys/me`).
    AnyKey,
    /// A key holding this scope.
    Scope(Scope),
}

/// What `method` on `route` (the route's template, like `/api/flow_runs/{id}/cancel`) needs.
/// Reads need `read`; every write this table does not name needs `admin`, so a route added
/// without thinking about scopes is closed rather than open.
pub fn need(method: &Method, route: &str) -> Need {
    match (method.as_str(), route) {
        (_, "/healthz") => Need::Public,
        ("GET", "/api/keys/me") => Need::AnyKey,
        (_, "/api/keys" | "/api/keys/{name}") => Need::Scope(Scope::Admin),
        // What programs and workers do. Registering a deployment (`PUT`) is what
        // `flowkit::serve` does at every start with the key it sends events with: the program's
        // code is where a deployment's spec lives. It cannot pause, trigger or cancel; an
        // operator's pause survives it.
        (
            "POST",
            "/api/events"
            | "/api/heartbeats"
            | "/api/workers/{worker}/poll"
            | "/api/workers/{worker}/stop"
            | "/api/limits/{name}/acquire"
            | "/api/limits/{name}/release"
            | "/api/limits/{name}/rate",
        )
        | ("PUT", "/api/deployments/{name}")
        // Which tags and names are limited: what programs read to know which cost a trip.
        | ("GET", "/api/limits/names") => Need::Scope(Scope::Write),
        // What operators do.
        (
            "POST",
            "/api/deployments/{name}/runs"
            | "/api/flow_runs/{id}/cancel"
            | "/api/flow_runs/{id}/retry"
            | "/api/deployments/{name}/backfills"
            | "/api/backfills/{id}/cancel"
            | "/api/automations",
        )
        | ("PATCH", "/api/deployments/{name}")
        | ("PUT" | "DELETE", "/api/limits/{name}")
        | ("DELETE", "/api/automations/{name}") => Need::Scope(Scope::Operate),
        ("GET" | "HEAD", _) => Need::Scope(Scope::Read),
        _ => Need::Scope(Scope::Admin),
    }
}

/// The keys a server has found, cached, and what it hears of revocations.
#[derive(Debug)]
pub struct Access {
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
    /// Bumped whenever the cache is emptied: a lookup that began before does not cache.
    generation: AtomicU64,
    /// Whether the cache may be used: always on SQLite (one server per file); on PostgreSQL
    /// only while this server listens for other servers' revocations.
    trusted: AtomicBool,
    /// Counts the revocations heard from PostgreSQL.
    heard: watch::Sender<u64>,
}

impl Access {
    /// The access of a server over `store`.
    pub fn new(store: &Store) -> Access {
        Access {
            cache: Mutex::default(),
            generation: AtomicU64::new(0),
            trusted: AtomicBool::new(matches!(store, Store::Sqlite(_))),
            heard: watch::channel(0).0,
        }
    }

    /// Forgets every key found: the next request with each looks it up again.
    pub fn forget(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// A receiver of the count of revocations heard from PostgreSQL.
    pub fn heard(&self) -> watch::Receiver<u64> {
        self.heard.subscribe()
    }

    /// The caller `given` names, if any: the server's `admin_key`, or a key made with the API.
    pub async fn resolve(
        &self,
        store: &Store,
        admin_key: &str,
        given: &str,
    ) -> Result<Option<Caller>, StoreError> {
        if given.is_empty() {
            return Ok(None);
        }
        // Digests of equal length are compared, so the time taken tells nothing of the
        // admin key's length either.
        let digest: [u8; 32] = sha2::Sha256::digest(given.as_bytes()).into();
        let admin: [u8; 32] = sha2::Sha256::digest(admin_key.as_bytes()).into();
        if !admin_key.is_empty() && bool::from(digest.ct_eq(&admin)) {
            return Ok(Some(Caller {
                name: API_KEY_NAME.into(),
                scopes: Scopes::ALL,
            }));
        }
        let trusted = self.trusted.load(Ordering::SeqCst);
        if trusted {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((caller, at)) = cache.get(&digest)
                && at.elapsed() < CACHE_FOR
            {
                return Ok(Some(caller.clone()));
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let hash = hex(&digest);
        let Some(row) = store.key_by_hash(&hash).await? else {
            return Ok(None);
        };
        if !bool::from(row.hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        let caller = Caller {
            name: row.name.into(),
            scopes: Scopes::parse_list(&row.scopes).unwrap_or_default(),
        };
        if trusted {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            // Emptied since the lookup began: what it found may be revoked already.
            if self.generation.load(Ordering::SeqCst) == generation {
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(digest, (caller.clone(), Instant::now()));
            }
        }
        Ok(Some(caller))
    }
}

/// A new key: `fk_` and 64 hex digits from the operating system's random source.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("fk_{}", hex(&bytes)))
}

/// The hex SHA-256 of `key`, as stored.
pub fn hash_key(key: &str) -> String {
    hex(&sha2::Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Listens on PostgreSQL for other servers' revocations, reconnecting when the connection
/// drops; the cache is trusted only while it listens (a reconnection `recv` would hide could
/// miss a revocation, so the cache is emptied then too).
pub(crate) async fn listen(pool: sqlx::PgPool, access: Arc<Access>) {
    use crate::listen::Heard;
    use crate::store::access::KEYS_CHANNEL;
    crate::listen::listen(
        pool,
        KEYS_CHANNEL,
        "revoked keys",
        move |heard| match heard {
            Heard::Listening => {
                // Anything revoked before now is in the database, not in a notification.
                access.forget();
                access.trusted.store(true, Ordering::SeqCst);
            }
            Heard::Notified => {
                access.forget();
                access.heard.send_modify(|n| *n = n.wrapping_add(1));
            }
            Heard::Lost => {
                access.trusted.store(false, Ordering::SeqCst);
                access.forget();
            }
        },
    )
    .await
}

/// The key check (a middleware of every route but the dashboard's files): 401 without a known
/// key, 403 without the scope the route needs; the caller goes into the request's extensions.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(admin_key) = state.api_key.as_deref() else {
        request.extensions_mut().insert(Caller::anonymous());
        return next.run(request).await;
    };
    // A path no route matches needs a key (it gets its 404 then), not a scope.
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let route = matched
        .clone()
        .unwrap_or_else(|| request.uri().path().to_string());
    let needed = match matched {
        Some(route) => need(request.method(), &route),
        None => Need::AnyKey,
    };
    if needed == Need::Public {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
    let caller = match state.access.resolve(&state.store, admin_key, given).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(error) => return ApiError::Store(error).into_response(),
    };
    if let Need::Scope(scope) = needed
        && !caller.scopes.allows(scope)
    {
        return ApiError::Forbidden {
            key: caller.name.to_string(),
            scope,
            route: format!("{} {route}", request.method()),
        }
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The caller of a request, for handlers (anonymous where no key is checked).
#[derive(Clone, Debug)]
pub struct Actor(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, Infallible> {
        Ok(Actor(
            parts
                .extensions
                .get::<Caller>()
                .cloned()
                .unwrap_or_else(Caller::anonymous),
        ))
    }
}
