//! Native TLS for the two listeners: PEM certificate chain and key from files, optional client-certificate
//! verification (mutual TLS) against a CA bundle, ALPN offering `h2` and `http/1.1`.
//!
//! Why a reloader: certificates rotate (cert-manager renews a Kubernetes Secret, the kubelet swaps the mounted
//! files) and restarting a relay to pick them up would drop connections. [`TlsReloader`] holds the current
//! `rustls::ServerConfig`; every new connection takes the one current at accept, connections already open keep
//! theirs. [`TlsReloader::watch`] re-reads the files when their contents change (checked every
//! `watch_interval_ms`) or on SIGHUP. A reload that fails (half-written file, key not matching the certificate)
//! keeps the previous config, logs why and counts it; it never takes the listener down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("the certificate and key do not make a usable server identity: {0}")]
    Identity(String),
    #[error("client CA bundle {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
}

impl TlsError {
    /// Could loading again succeed without a change to the files? A file read mid-rotation may be complete later.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Read { .. })
    }
}

/// TLS counters, registered once and labelled by listener (`ingress`, `admin`).
#[derive(Clone)]
pub struct TlsMetrics {
    reloads: IntCounterVec,
}

impl TlsMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "trigger_relay_tls_reloads_total",
                "Certificate reloads by listener and result (ok, error: the previous certificate stays)",
            ),
            &["listener", "result"],
        )?;
        r.register(Box::new(reloads.clone()))?;
        Ok(Self { reloads })
    }
}

/// Build a rustls server config from the files `c` names.
pub fn load(c: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })
    };
    let cert_pem = read(&c.cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: c.cert_file.clone(),
            message: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: c.cert_file.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&c.key_file)?).map_err(|e| TlsError::Read {
        path: c.key_file.clone(),
        message: format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    let builder =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Identity(e.to_string()))?;
    let builder = match &c.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_err = |message: String| TlsError::ClientCa {
                path: ca.clone(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                let cert = cert.map_err(|e| ca_err(format!("not PEM: {e}")))?;
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_err("holds no certificate".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The current TLS config of one listener, replaced whole on reload.
pub struct TlsReloader {
    listener: &'static str,
    config: TlsConfig,
    current: ArcSwap<ServerConfig>,
    metrics: TlsMetrics,
}

impl TlsReloader {
    pub fn new(
        listener: &'static str,
        config: TlsConfig,
        metrics: TlsMetrics,
    ) -> Result<Arc<Self>, TlsError> {
        let current = ArcSwap::from_pointee(load(&config)?);
        Ok(Arc::new(Self {
            listener,
            config,
            current,
            metrics,
        }))
    }

    /// The config a connection accepted now uses.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Load the files again; on failure keep the previous config.
    pub fn reload(&self, why: &str) {
        match load(&self.config) {
            Ok(c) => {
                self.current.store(Arc::new(c));
                self.metrics
                    .reloads
                    .with_label_values(&[self.listener, "ok"])
                    .inc();
                tracing::info!(listener = self.listener, why, "TLS certificate reloaded");
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .with_label_values(&[self.listener, "error"])
                    .inc();
                tracing::error!(listener = self.listener, why, error = %e,
                    "TLS certificate reload failed; still serving the previous certificate");
            }
        }
    }

    /// Reload when the files' contents change or on SIGHUP, until `stop`. The SIGHUP handler is installed
    /// before this returns, so a SIGHUP sent after `Relay::start` reloads and never kills the process.
    pub fn watch(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| {
                tracing::warn!(listener = self.listener, error = %e,
                    "cannot listen for SIGHUP; certificates reload on file change only");
            })
            .ok();
        self.watch_with(hup, stop)
    }

    async fn watch_with(
        self: Arc<Self>,
        mut hup: Option<tokio::signal::unix::Signal>,
        stop: CancellationToken,
    ) {
        let interval = Duration::from_millis(self.config.watch_interval_ms);
        let mut seen = self.fingerprint();
        loop {
            let tick = async {
                if interval.is_zero() {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep(interval).await
                }
            };
            let signal = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await.is_some(),
                    None => std::future::pending::<bool>().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                got = signal => {
                    if !got {
                        // The signal driver is gone: stop listening instead of spinning.
                        hup = None;
                        continue;
                    }
                    seen = self.fingerprint();
                    self.reload("SIGHUP");
                }
                _ = tick => {
                    let now = self.fingerprint();
                    if now != seen {
                        seen = now;
                        self.reload("files changed");
                    }
                }
            }
        }
    }

    /// The files' contents (a few KiB): compared whole, so a symlink swap or a same-second rewrite counts.
    fn fingerprint(&self) -> Vec<Option<Vec<u8>>> {
        [
            Some(&self.config.cert_file),
            Some(&self.config.key_file),
            self.config.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| std::fs::read(p).ok())
        .collect()
    }
}
