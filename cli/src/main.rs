//! `felix`: the Felix command line, for people and scripts.
//!
//! `felix pub`, `felix sub`, `felix queue ...`, `felix cache ...` and `felix ping` over the
//! client core ([`felix_client`]). Results go to stdout as text or, with `--json`, one JSON
//! object per line; errors go to stderr as `error[<code>]: <message>` with an exit status
//! that tells scripts what kind of failure it was (see `felix --help`).
//!
//! - [`args`]: the command line (clap derive) and its help text;
//! - [`commands`]: what each subcommand does;
//! - [`output`]: text / JSON output, error reports and exit statuses.

mod args;
mod commands;
mod output;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return output::Failure::new("internal", format!("runtime: {e}"), 4).report(),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// Help and version go to stdout with status 0; real usage errors are reported as
/// `error[usage]: ...` (with clap's hints) and exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let text = e.render().to_string();
    let text = match text.strip_prefix("error: ") {
        Some(rest) => format!("error[usage]: {rest}"),
        None => text,
    };
    let _ = write!(std::io::stderr().lock(), "{text}");
    ExitCode::from(output::EXIT_USAGE)
}
