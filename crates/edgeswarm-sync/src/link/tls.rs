//! TLS and URLs of remote (Hrana) regions: the rustls client configuration (system
//! trust roots, or a per-region `ca_file`), `libsql://` mapping, URL redaction, and
//! turning a failed handshake into an error that says what failed and what to do.
//!
//! The crypto provider is rustls' `ring` backend, passed explicitly (no process-wide
//! default is installed, so a host application may install its own).

use crate::error::{Result, SyncError};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// How a region's server certificate is checked.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Not TLS: a `file:` region or a plain `http://` url.
    #[default]
    None,
    /// `https://` (or `libsql://`), verified against the operating system's trust roots.
    SystemRoots,
    /// `https://`, verified against the region's `ca_file` only (a private CA).
    CaFile,
}

impl TlsMode {
    /// Short name for status tables.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::SystemRoots => "system roots",
            TlsMode::CaFile => "ca_file",
        }
    }
}

/// Maps a configured url to the one requests go to: `libsql://host` becomes
/// `https://host` (as Turso's own tools do), a trailing slash is dropped, and an
/// `authToken` query parameter is split off (returned separately, never logged).
pub fn request_url(url: &str) -> (String, Option<String>) {
    let mapped = match url.strip_prefix("libsql://") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_string(),
    };
    let (base, query) = match mapped.split_once('?') {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => (mapped, None),
    };
    let token = query.and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.eq_ignore_ascii_case("authToken") || k.eq_ignore_ascii_case("auth_token")).then(|| v.to_string())
        })
    });
    (base.trim_end_matches('/').to_string(), token)
}

/// The url as it may be shown (status, logs, errors): any query string and any
/// password in the authority are replaced by `***`, so a token put into the url never
/// leaves the process.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, _)) => (b, "?***"),
        None => (url, ""),
    };
    let redacted = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match auth.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    format!("{redacted}{query}")
}

/// The rustls configuration of one region: `ca_file` roots only when given, else the
/// platform verifier (the system's trust store). ALPN offers h2 and http/1.1, so a
/// server that speaks HTTP/2 gets one multiplexed connection.
pub fn client_config(region: &str, ca_file: Option<&Path>) -> Result<(rustls::ClientConfig, TlsMode)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SyncError::Config(format!("region `{region}`: TLS setup: {e}")))?;
    let (mut cfg, mode) = match ca_file {
        Some(path) => {
            let roots = load_roots(region, path)?;
            (builder.with_root_certificates(roots).with_no_client_auth(), TlsMode::CaFile)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| SyncError::Config(format!("region `{region}`: cannot load the system trust roots: {e}")))?;
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth(),
                TlsMode::SystemRoots,
            )
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((cfg, mode))
}

/// The TLS configuration handed to the client of a plain `http://` region (reqwest
/// wants one); it trusts no root, so it could never verify a server.
pub fn plain_http_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|_| {
            // The ring provider supports the default versions; unreachable in practice.
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("ring supports TLS 1.3")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

/// Reads every certificate of a PEM file into a root store.
fn load_roots(region: &str, path: &Path) -> Result<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad = |why: String| SyncError::Config(format!("region `{region}`: ca_file `{}`: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&bytes) {
        let c = c.map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        roots
            .add(c)
            .map_err(|e| bad(format!("a certificate in it is not usable as a CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "it holds no `BEGIN CERTIFICATE` block; put the CA certificate in PEM form there".into(),
        ));
    }
    Ok(roots)
}

/// The rustls error somewhere in an error's source chain (reqwest wraps it in hyper
/// and io errors; `io::Error::source` skips its payload, so that is looked into too).
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // hyper-rustls nests io errors (Other around InvalidData around the rustls
        // error); look into each payload.
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// If a request failed in the TLS handshake, the typed error saying what failed and
/// the fix; `None` for any other failure.
pub fn classify(region: &str, url: &str, mode: TlsMode, e: &(dyn std::error::Error + 'static)) -> Option<SyncError> {
    use rustls::CertificateError as C;
    let r = find_rustls(e)?;
    let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or("");
    let untrusted_fix = match mode {
        TlsMode::CaFile => {
            "the region's `ca_file` does not hold the CA that signed the server certificate; point `ca_file` at that CA's certificate (PEM)"
                .to_string()
        }
        _ => "if the server uses a private or self-signed CA, set `ca_file` for this region to that CA's certificate (PEM)".to_string(),
    };
    let (problem, fix) = match r {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => ("the server certificate is not trusted (unknown issuer)".to_string(), untrusted_fix),
            C::Expired | C::ExpiredContext { .. } => (
                "the server certificate has expired".to_string(),
                "check this machine's clock (`date -u`), then renew the server's certificate".to_string(),
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => (
                "the server certificate is not valid yet".to_string(),
                "check this machine's clock (`date -u`) and the server's".to_string(),
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => (
                format!("the server certificate is not valid for host `{host}` (hostname mismatch)"),
                "use the host name the certificate was issued for in the url, or reissue the certificate with this name".to_string(),
            ),
            C::Revoked => (
                "the server certificate is revoked".to_string(),
                "the server needs a new certificate".to_string(),
            ),
            other => (format!("the server certificate was refused ({other:?})"), untrusted_fix),
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => (
            "the server did not answer with TLS".to_string(),
            "if the server speaks plain HTTP, use an http:// url".to_string(),
        ),
        other => (
            format!("TLS handshake failed: {other}"),
            "check the url and the server's TLS setup".to_string(),
        ),
    };
    Some(SyncError::Tls {
        region: region.to_string(),
        url: redact_url(url),
        problem,
        fix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libsql_urls_map_to_https_and_tokens_are_split_off() {
        assert_eq!(
            request_url("libsql://db-org.turso.io"),
            ("https://db-org.turso.io".to_string(), None)
        );
        assert_eq!(
            request_url("libsql://db.turso.io/?authToken=SECRET"),
            ("https://db.turso.io".to_string(), Some("SECRET".to_string()))
        );
        assert_eq!(request_url("http://127.0.0.1:8080/"), ("http://127.0.0.1:8080".to_string(), None));
    }

    #[test]
    fn redaction_hides_query_and_password() {
        assert_eq!(redact_url("https://db.turso.io?authToken=SECRET"), "https://db.turso.io?***");
        assert_eq!(redact_url("https://user:pw@h:1/x"), "https://***@h:1/x");
        assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert!(!redact_url("libsql://a.b/?auth_token=SECRET").contains("SECRET"));
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error_naming_the_region() {
        let e = client_config("r1", Some(Path::new("/nonexistent/ca.pem"))).unwrap_err().to_string();
        assert!(e.contains("r1") && e.contains("ca_file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "nothing here").unwrap();
        let e = client_config("r1", Some(&p)).unwrap_err().to_string();
        assert!(e.contains("BEGIN CERTIFICATE"), "{e}");
    }
}
