//! The one error type of the crate.
//!
//! Callers mostly log these and exit (they only happen while building
//! endpoints), so variants carry human-readable context rather than
//! structured sources wherever the underlying library error is opaque anyway.

use std::path::PathBuf;

/// Everything that can go wrong while building Felix endpoints and their TLS
/// configuration. Runtime connection failures are reported by quinn itself
/// (`quinn::ConnectionError`), not by this type.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// Creating, configuring or binding a UDP socket, or writing a file, failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// rustls or quinn refused the TLS configuration (e.g. key does not match certificate).
    #[error("TLS configuration error: {0}")]
    Tls(String),

    /// A certificate or key could not be read or parsed; `path` is `<inline PEM>` for in-memory input.
    #[error("certificate material {}: {reason}", path.display())]
    Certificate {
        /// File the material came from.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// Generating the development CA or leaf certificate failed.
    #[error("dev certificate generation failed: {0}")]
    CertGeneration(String),

    /// A [`crate::TransportConfig`] knob is out of range or inconsistent with another one.
    #[error("invalid transport config: {0}")]
    InvalidConfig(String),

    /// An endpoint was built outside a Tokio runtime (quinn spawns its driver task on it).
    #[error("no Tokio runtime: Felix endpoints must be created from inside a Tokio runtime")]
    NoRuntime,
}

impl TransportError {
    pub(crate) fn cert(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Certificate {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
