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

/// `builder` trusting the certificates in the PEM file `ca` too, for a client of `urls`. A file
/// that cannot be read is logged and left out: connections to a server it signed then fail with
/// a certificate error. When no URL is `https://`, no certificate is loaded at all, the
/// system's included (reading them costs a program milliseconds at its start).
pub(crate) fn trust(
    builder: reqwest::ClientBuilder,
    ca: Option<&Path>,
    urls: &[String],
) -> reqwest::ClientBuilder {
    if !any_https(urls) {
        return builder.tls_built_in_root_certs(false);
    }
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

/// Whether any of `urls` is reached over TLS.
fn any_https(urls: &[String]) -> bool {
    urls.iter().any(|url| {
        url.trim_start()
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_need_certificates() {
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert!(!any_https(&urls(&["http://127.0.0.1:4200"])));
        assert!(!any_https(&urls(&[])));
        assert!(any_https(&urls(&["http://a:1", "HTTPS://b:2"])));
        assert!(any_https(&urls(&["https://flowkit.example.com"])));
    }
}
