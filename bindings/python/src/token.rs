//! `token=`: a string (static) or a callable returning a fresh token, and the token exchange
//! options. The callable runs on a core blocking thread, holding the GIL only while it runs;
//! an exception it raises becomes `felix.UnauthorizedError` with its message.

use std::path::PathBuf;
use std::sync::Arc;

use felix_client::{SubjectToken, TokenCallback, TokenExchange, TokenSource};
use pyo3::prelude::*;

use crate::error::invalid_argument;

/// A core token callback calling the Python callable `f` (which must return `str`).
fn callback(f: Py<PyAny>) -> TokenCallback {
    Arc::new(move || {
        Python::with_gil(|py| {
            let r = f.call0(py).and_then(|v| v.extract::<String>(py));
            r.map_err(|e| {
                let name = e
                    .get_type(py)
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                format!("{name}: {}", e.value(py)).into()
            })
        })
    })
}

/// The static token and token source of `connect`'s arguments.
pub fn source(
    token: Option<Bound<'_, PyAny>>,
    exchange_url: Option<String>,
    subject_token: Option<String>,
    subject_token_file: Option<PathBuf>,
    exchange_ca_file: Option<PathBuf>,
) -> PyResult<(Option<String>, Option<TokenSource>)> {
    let (text, call) = match token {
        None => (None, None),
        Some(t) if t.is_callable() => (None, Some(callback(t.unbind()))),
        Some(t) => (
            Some(t.extract::<String>().map_err(|_| {
                invalid_argument("token must be a str or a callable returning one")
            })?),
            None,
        ),
    };
    let Some(url) = exchange_url else {
        if subject_token.is_some() || subject_token_file.is_some() || exchange_ca_file.is_some() {
            return Err(invalid_argument(
                "subject_token, subject_token_file and token_exchange_ca_file need \
                 token_exchange_url",
            ));
        }
        return Ok((text, call.map(TokenSource::Callback)));
    };
    // With an exchange, `token` (or the subject_token options) is the OIDC token to exchange.
    let subject =
        match (text, call, subject_token, subject_token_file) {
            (None, Some(f), None, None) => SubjectToken::Callback(f),
            (Some(t), None, None, None) | (None, None, Some(t), None) => SubjectToken::Value(t),
            (None, None, None, Some(p)) => SubjectToken::File(p),
            _ => return Err(invalid_argument(
                "token_exchange_url needs exactly one of token, subject_token, subject_token_file",
            )),
        };
    let mut x = TokenExchange::new(url, subject);
    x.ca_file = exchange_ca_file;
    Ok((None, Some(TokenSource::Exchange(x))))
}
