//! Trusting a private certificate authority: a server on a self-signed certificate (or one
//! signed by a company's CA) is reached over HTTPS when its CA's certificate is given, with
//! `FLOWKIT_CA_CERT` (a PEM file, one or more certificates) or a builder call.

use std::path::{Path, PathBuf};

/// The environment variable naming the CA certificates to trust.
pub(crate) const CA_ENV: &str = "FLOWKIT_CA_CERT";

/// `explicit`, else `FLOWKIT_CA_CERT` when set and not empty.
pub(crate) fn ca_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        std::env::var_os(CA_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// `builder` trusting the certificates in the PEM file `ca` too. A file that cannot be read is
/// logged and left out: connections to a server it signed then fail with a certificate error.
pub(crate) fn trust(builder: reqwest::ClientBuilder, ca: Option<&Path>) -> reqwest::ClientBuilder {
    let Some(path) = ca else {
        return builder;
    };
    let certificates = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string()));
    match certificates {
        Ok(certificates) if !certificates.is_empty() => certificates
            .into_iter()
            .fold(builder, |b, c| b.add_root_certificate(c)),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "flowkit: {CA_ENV} holds no PEM certificate; not trusted");
            builder
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "flowkit: cannot read the CA certificate of {CA_ENV}");
            builder
        }
    }
}
