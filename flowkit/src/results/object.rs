//! A [`ResultStore`] in an object store (S3, GCS, Azure, a local directory, memory) through the
//! `object_store` crate, chosen by URL (feature `object-store`, with `s3`, `gcs`, `azure`).
//!
//! Every key is an object of its own, under the URL's path: object stores cannot append, so
//! the local store's per-run pack (`tasks.pack`) has no counterpart here. A small result costs
//! one PUT; a result of 16 MiB or more is uploaded in 8 MiB parts (multipart), sliced from the
//! one serialized buffer without copying it.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::{ResultStore, ResultStoreError, StoreFuture};

/// Values from this size up are uploaded in parts.
const MULTIPART_AT: usize = 16 << 20;
/// The size of each part.
const PART: usize = 8 << 20;

/// A [`ResultStore`] in an object store: `s3://bucket/prefix` (feature `s3`),
/// `gs://bucket/prefix` (`gcs`), `az://container/prefix` (`azure`), `file:///dir` and
/// `memory:///` (`object-store`). Credentials and options come from the environment variables
/// the `object_store` crate reads (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`…), then from the options given to
/// [`from_url_with`](Self::from_url_with).
///
/// Each key is one object (no packing: object stores cannot append); a put is atomic, as
/// object stores make it. Values of 16 MiB or more go up in 8 MiB parts.
///
/// ```
/// use flowkit::{ObjectStoreResults, ResultStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = ObjectStoreResults::from_url("memory:///results").unwrap();
/// store.put("cache/a.json", b"{}".to_vec()).await.unwrap();
/// assert_eq!(store.get("cache/a.json").await.unwrap().as_deref(), Some(&b"{}"[..]));
/// assert_eq!(store.location(), "memory:///results");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ObjectStoreResults {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl ObjectStoreResults {
    /// The store at `url`, configured from the environment.
    pub fn from_url(url: &str) -> Result<Self, ResultStoreError> {
        Self::from_url_with(url, std::iter::empty::<(String, String)>())
    }

    /// The store at `url`, configured from the environment, then from `options` (the
    /// `object_store` builders' keys, such as `aws_endpoint`, `aws_allow_http`, `aws_region`,
    /// `aws_access_key_id`; unknown keys are ignored).
    ///
    /// ```
    /// let store = flowkit::ObjectStoreResults::from_url_with(
    ///     "memory:///results",
    ///     [("aws_region", "eu-west-1")],
    /// );
    /// assert!(store.is_ok());
    /// ```
    pub fn from_url_with<K, V>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ResultStoreError>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let invalid = |message: String| ResultStoreError::Unavailable {
            location: url.to_string(),
            action: "open",
            key: String::new(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a URL: {e}")))?;
        // What the environment says first, the explicit options after (the later wins).
        let mut settings: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| {
                ["AWS_", "GOOGLE_", "AZURE_"]
                    .iter()
                    .any(|prefix| key.starts_with(prefix))
            })
            .map(|(key, value)| (key.to_ascii_lowercase(), value))
            .collect();
        settings.extend(
            options
                .into_iter()
                .map(|(key, value)| (key.as_ref().to_string(), value.into())),
        );
        let (store, prefix) = object_store::parse_url_opts(&parsed, settings).map_err(|e| {
            invalid(format!(
                "{e} (S3 needs flowkit's `s3` feature, GCS `gcs`, Azure `azure`)"
            ))
        })?;
        Ok(ObjectStoreResults {
            store: Arc::from(store),
            prefix,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    /// A store built by hand (any `object_store` implementation), its objects under `prefix`;
    /// `url` names it in messages and in the runs' records.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let store = flowkit::ObjectStoreResults::new(
    ///     Arc::new(flowkit::object_store::memory::InMemory::new()),
    ///     "results",
    ///     "memory:///results",
    /// );
    /// # let _ = store;
    /// ```
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        ObjectStoreResults {
            store,
            prefix: Path::from(prefix),
            url: url.to_string(),
        }
    }

    fn path(&self, key: &str) -> Path {
        // Keys are made by flowkit: `/`-separated hex digests and uuids.
        key.split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    fn error(
        &self,
        action: &'static str,
        key: &str,
        error: object_store::Error,
    ) -> ResultStoreError {
        ResultStoreError::Unavailable {
            location: self.url.clone(),
            action,
            key: key.to_string(),
            message: error.to_string(),
        }
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, ResultStoreError> {
        let got = match self.store.get(&self.path(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.error("read", key, error)),
        };
        let bytes = got.bytes().await.map_err(|e| self.error("read", key, e))?;
        Ok(Some(Vec::from(bytes)))
    }

    async fn write(&self, key: &str, value: Vec<u8>) -> Result<(), ResultStoreError> {
        let path = self.path(key);
        if value.len() < MULTIPART_AT {
            self.store
                .put(&path, PutPayload::from(value))
                .await
                .map_err(|e| self.error("write", key, e))?;
            return Ok(());
        }
        // Large: in parts, each a slice of the one buffer (nothing is copied).
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.error("write", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        writer.put(bytes::Bytes::from(value));
        writer
            .finish()
            .await
            .map_err(|e| self.error("write", key, e))?;
        Ok(())
    }
}

impl ResultStore for ObjectStoreResults {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.read(key))
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(self.write(key, value))
    }

    fn copy<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.store
                .copy(&self.path(from), &self.path(to))
                .await
                .map_err(|e| self.error("copy", from, e))
        })
    }
}
