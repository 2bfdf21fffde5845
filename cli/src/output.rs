//! Output: text for people or JSON lines for scripts on stdout, and the error report
//! (`error[<code>]: <message>`) with its exit status on stderr.
//!
//! Stdout is buffered; streaming commands flush whenever they have nothing more to print at
//! once, so events appear promptly without a write per event under load.

use std::io::{self, BufWriter, Stdout, Write};
use std::process::ExitCode;

use base64::Engine as _;
use felix_client::ErrorCode;
use serde_json::Value;

/// Exit status: a negative answer (missing cache key, failed put condition).
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit status: the command line (or a name or value in it) is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the broker is unavailable, overloaded or too slow; retrying may help.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Exit status: any other error.
pub const EXIT_OTHER: u8 = 4;
/// Exit status after Ctrl-C (as a shell reports a SIGINT death).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when stdout was closed under us (as a shell reports a SIGPIPE death).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Report `error[code]: message` on stderr and exit with `exit`.
    Error {
        /// Stable code (a Felix error code, or `usage` / `io`).
        code: String,
        /// What happened.
        message: String,
        /// Exit status.
        exit: u8,
    },
    /// Exit with this status without a message (already reported, or nobody to tell).
    Quiet(u8),
}

impl Failure {
    /// A failure with an explicit code and exit status.
    pub fn new(code: impl Into<String>, message: impl Into<String>, exit: u8) -> Self {
        Failure::Error {
            code: code.into(),
            message: message.into(),
            exit,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new("usage", message, EXIT_USAGE)
    }

    /// Prefixes the message with what was being done.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Failure::Error {
                code,
                message,
                exit,
            } => Failure::Error {
                code,
                message: format!("{what}: {message}"),
                exit,
            },
            quiet => quiet,
        }
    }

    /// Prints the report (if any) and gives the exit status.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Error {
                code,
                message,
                exit,
            } => {
                let _ = writeln!(io::stderr().lock(), "error[{code}]: {message}");
                ExitCode::from(exit)
            }
            Failure::Quiet(exit) => ExitCode::from(exit),
        }
    }
}

/// The exit status for a Felix error code.
pub fn exit_status(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Conflict => EXIT_NEGATIVE,
        ErrorCode::InvalidArgument | ErrorCode::FrameTooLarge => EXIT_USAGE,
        c if c.retryable() => EXIT_UNAVAILABLE,
        _ => EXIT_OTHER,
    }
}

impl From<felix_client::Error> for Failure {
    fn from(e: felix_client::Error) -> Self {
        let code = e.code();
        let message = match &e {
            felix_client::Error::Timeout(d) => format!("no reply within {:.0} ms", millis(*d)),
            _ => e.message(),
        };
        Self::new(code.as_str(), message, exit_status(code))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::Quiet(EXIT_BROKEN_PIPE)
        } else {
            Self::new("io", e.to_string(), EXIT_OTHER)
        }
    }
}

/// Where results go: stdout, as text or JSON lines.
pub struct Out {
    json: bool,
    stdout: BufWriter<Stdout>,
}

impl Out {
    /// Output in JSON mode when `json`.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            stdout: BufWriter::with_capacity(64 * 1024, io::stdout()),
        }
    }

    /// Whether JSON lines are printed.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one result: `text()` in text mode, `json()` as one line in JSON mode. Only the
    /// chosen one is built.
    pub fn emit(
        &mut self,
        text: impl FnOnce() -> String,
        json: impl FnOnce() -> Value,
    ) -> io::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.stdout, &json())?;
            self.stdout.write_all(b"\n")
        } else {
            let mut t = text();
            t.push('\n');
            self.stdout.write_all(t.as_bytes())
        }
    }

    /// Writes bytes as they are (text mode `--raw`).
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stdout.write_all(bytes)
    }

    /// Pushes buffered output to stdout.
    pub fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()
    }
}

/// Prints a warning on stderr (never on stdout, which is for results).
pub fn warn(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "warning: {message}");
}

/// A payload as text: UTF-8 (invalid sequences replaced) or lowercase hex.
pub fn payload_text(payload: &[u8], hex: bool) -> String {
    if hex {
        let mut s = String::with_capacity(payload.len() * 2);
        for b in payload {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    } else {
        String::from_utf8_lossy(payload).into_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A payload for JSON output (standard base64 with padding).
pub fn b64(payload: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(payload))
}

/// Milliseconds with microsecond precision, for printing durations.
pub fn millis(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_rendering() {
        assert_eq!(payload_text(b"hi", false), "hi");
        assert_eq!(payload_text(&[0xff, b'a'], false), "\u{fffd}a");
        assert_eq!(payload_text(&[0x00, 0xab, 0x1f], true), "00ab1f");
        assert_eq!(b64(b"hello"), Value::String("aGVsbG8=".into()));
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(ErrorCode::InvalidArgument), EXIT_USAGE);
        assert_eq!(exit_status(ErrorCode::Unavailable), EXIT_UNAVAILABLE);
        assert_eq!(exit_status(ErrorCode::Timeout), EXIT_UNAVAILABLE);
        assert_eq!(exit_status(ErrorCode::Overloaded), EXIT_UNAVAILABLE);
        assert_eq!(exit_status(ErrorCode::Conflict), EXIT_NEGATIVE);
        assert_eq!(exit_status(ErrorCode::NotFound), EXIT_OTHER);
        assert_eq!(exit_status(ErrorCode::Unauthorized), EXIT_OTHER);
    }
}
