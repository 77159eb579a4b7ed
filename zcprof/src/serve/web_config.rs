//! `--web.config.file`: TLS and basic authentication for serve, read from a file in the format
//! of the Prometheus exporters' toolkit (exporter-toolkit), so that a config written for
//! `node_exporter` works here:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt    # PEM: the certificate, then any intermediates
//!   key_file: server.key     # PEM: PKCS#8, PKCS#1 or SEC1
//!   min_version: TLS12       # or TLS13; TLS12 by default
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Relative paths are relative to the file's own directory, as in the toolkit. Settings of the
//! toolkit that zcprof does not implement (client certificates, cipher and curve choices,
//! HTTP/2, extra headers) are refused by name rather than ignored: a config that asks for
//! client certificates must not quietly accept any client.
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;

/// Errors of the web config, each one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("--web.config.file {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("--web.config.file {path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// The file as the toolkit writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    cipher_suites: Option<serde_yaml_ng::Value>,
    curve_preferences: Option<serde_yaml_ng::Value>,
    prefer_server_cipher_suites: Option<bool>,
    cert: Option<String>,
    key: Option<String>,
}

/// What serve enforces.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// TLS, when the file has a `tls_server_config`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users and their bcrypt hashes; empty: no authentication.
    pub users: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads and checks `path`: the YAML, every setting, the certificate and key, each hash.
    ///
    /// # Errors
    /// When the file cannot be read, is not the toolkit's format, names a setting zcprof does
    /// not implement, or its certificate, key or a hash is unusable.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |why: String| WebConfigError::Invalid {
            path: path.to_owned(),
            why,
        };
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut crate::files::open_regular(path).map_err(|e| WebConfigError::Read {
                path: path.to_owned(),
                why: e.to_string(),
            })?,
            &mut text,
        )
        .map_err(|e| WebConfigError::Read {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?
        };
        if file.http_server_config.is_some() {
            return Err(invalid(
                "http_server_config is not implemented by zcprof serve (HTTP/1.1 only, no extra \
                 headers)"
                    .to_owned(),
            ));
        }
        for (user, hash) in &file.basic_auth_users {
            if user.contains(':') {
                return Err(invalid(format!("user {user:?}: a name cannot hold ':'")));
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| invalid(format!("user {user:?}: not a bcrypt hash ({e})")))?;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(t) => Some(Arc::new(tls(&t, dir).map_err(invalid)?)),
            None => None,
        };
        Ok(WebConfig {
            tls,
            users: file.basic_auth_users,
        })
    }
}

/// The TLS settings, checked and loaded.
fn tls(t: &TlsFile, dir: &Path) -> Result<rustls::ServerConfig, String> {
    let unsupported = [
        ("client_auth_type", t.client_auth_type.is_some()),
        ("client_ca_file", t.client_ca_file.is_some()),
        ("cipher_suites", t.cipher_suites.is_some()),
        ("curve_preferences", t.curve_preferences.is_some()),
        (
            "prefer_server_cipher_suites",
            t.prefer_server_cipher_suites.is_some(),
        ),
        ("max_version", t.max_version.is_some()),
        ("cert (inline)", t.cert.is_some()),
        ("key (inline)", t.key.is_some()),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(format!(
            "tls_server_config.{name} is not implemented by zcprof serve (it takes cert_file, \
             key_file and min_version)"
        ));
    }
    let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
        return Err("tls_server_config needs both cert_file and key_file".to_owned());
    };
    let (cert, key) = (dir.join(cert), dir.join(key));
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "cert_file {}: no certificate in it",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("key_file {}: {e}", key.display()))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
        None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(v) => {
            return Err(format!(
                "min_version {v}: zcprof serve speaks TLS12 and TLS13"
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Basic authentication: the users' hashes, and the credentials already verified (bcrypt
/// costs tens of milliseconds a check by design; a scraper sends the same header every time).
#[derive(Debug)]
pub struct Auth {
    users: BTreeMap<String, String>,
    verified: std::cell::RefCell<HashSet<String>>,
}

/// How many verified credentials are remembered.
const VERIFIED_MAX: usize = 64;

impl Auth {
    /// None when `users` is empty: everyone is let in.
    #[must_use]
    pub fn new(users: BTreeMap<String, String>) -> Option<Auth> {
        (!users.is_empty()).then(|| Auth {
            users,
            verified: std::cell::RefCell::new(HashSet::new()),
        })
    }

    /// Whether an `Authorization` header value names a user with the right password.
    #[must_use]
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        if self.verified.borrow().contains(value) {
            return true;
        }
        let Some(encoded) = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, rest)| rest.trim())
        else {
            return false;
        };
        let Some(pair) = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return false;
        };
        let ok = self
            .users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if ok {
            let mut verified = self.verified.borrow_mut();
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
            verified.insert(value.to_owned());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zcprof-webcfg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn error(dir: &Path, text: &str) -> String {
        let p = write(dir, "web.yml", text);
        WebConfig::load(&p).unwrap_err().to_string()
    }

    #[test]
    fn settings_zcprof_does_not_implement_are_refused_by_name() {
        let d = scratch("refused");
        for (text, says) in [
            (
                "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_auth_type",
            ),
            ("http_server_config:\n  http2: true\n", "http_server_config"),
            (
                "tls_server_config:\n  cert_file: a.crt\n",
                "both cert_file and key_file",
            ),
            ("no_such_thing: 1\n", "no_such_thing"),
            ("basic_auth_users:\n  alice: hunter2\n", "not a bcrypt hash"),
            (
                "tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n",
                "none.crt",
            ),
        ] {
            let e = error(&d, text);
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn an_empty_file_asks_for_nothing() {
        let d = scratch("empty");
        let c = WebConfig::load(&write(&d, "web.yml", "")).unwrap();
        assert!(c.tls.is_none() && c.users.is_empty());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn basic_auth_lets_in_only_the_right_password() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Auth::new(BTreeMap::from([("prom".to_owned(), hash)])).unwrap();
        let header = |pair: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        assert!(auth.allows(Some(header("prom:s3cret").as_bytes())));
        // Remembered: the second check needs no bcrypt.
        assert!(auth.verified.borrow().contains(&header("prom:s3cret")));
        assert!(auth.allows(Some(header("prom:s3cret").as_bytes())));
        for wrong in ["prom:S3cret", "other:s3cret", "prom", ""] {
            assert!(!auth.allows(Some(header(wrong).as_bytes())), "{wrong}");
        }
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some(b"Bearer abc")));
        assert!(Auth::new(BTreeMap::new()).is_none());
    }
}
