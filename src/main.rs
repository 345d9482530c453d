//! distlock: parse the command line, resolve the configuration, run one mode, and turn the
//! result into an exit code. Every fatal error comes back here and is printed once.
//!
//! The binary is the library's command-line user: the CLI and settings (settings/, cli.rs,
//! config/), the modes (app/), running and supervising a command (command.rs), what it prints
//! (output.rs), and its man page and completions (manual.rs).

mod app;
mod cli;
mod command;
mod config;
mod exit;
mod manual;
mod output;
#[cfg(test)]
mod proptests;
mod settings;

// The lock itself is the library (src/lib.rs); the binary's modules name its parts as if they
// were their own (`crate::etcd`).
use distlock::{
    access, acquire, error, etcd, feed, held, history, holders, name, queue, record, stamp, view,
};

use exit::Failure;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::parse_args() {
        Ok(cli) => cli,
        Err(cli::ParseError::Clap(e)) if !e.use_stderr() => {
            // --help and --version: print and exit 0.
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        Err(e) => return fail(&Failure::Usage(e.to_string()), false),
    };
    if let Some(what) = &cli.generate {
        return generate(what);
    }
    // A configuration error comes before logging is set up from the configuration; a log
    // shipper that asked for JSON on the command line or in the environment still gets JSON.
    let log_format = cli.value(settings::LOG_FORMAT.spec.name);
    let json_asked = log_format.is_some_and(|(text, _)| text == "json");
    let config = match config::Config::resolve(cli) {
        Ok(config) => config,
        Err(e) => {
            if json_asked {
                output::init_logging(config::Format::Json, false, 0);
            }
            return fail(&e, json_asked);
        }
    };
    output::init_logging(config.log_format, config.quiet, config.verbose);
    let json_logs = config.log_format == config::Format::Json;
    let conflict_exit_code = config.conflict_exit_code;
    let quiet = config.quiet;
    // One lease, one watch and one child need no thread pool.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start: {e}")))
        .and_then(|runtime| runtime.block_on(app::dispatch(config)));
    match result {
        Ok(app::Outcome::Code(code)) => ExitCode::from(code),
        Ok(app::Outcome::Signal(signal)) => die_of(signal),
        // Ctrl-C while waiting: die of SIGINT too, so a calling script stops.
        Err(
            e @ (Failure::Interrupted(nix::libc::SIGINT, _)
            | Failure::InterruptedWaiting(nix::libc::SIGINT, _)),
        ) => {
            fail(&e, json_logs);
            die_of(nix::libc::SIGINT)
        }
        // A skip says nothing with -q, like `flock -n`: the exit code tells.
        Err(e) if e.is_skip() && quiet => ExitCode::from(conflict_exit_code),
        // "Not acquired" exits with the code the configuration chose.
        Err(e @ (Failure::NotAcquired(_) | Failure::Skipped(_))) => {
            fail_with(&e, json_logs, conflict_exit_code)
        }
        Err(e) => fail(&e, json_logs),
    }
}

/// `--generate=WHAT`: the man page or a completion script on stdout, for packaging.
fn generate(what: &str) -> ExitCode {
    use std::io::Write;
    match manual::render(what).and_then(|text| std::io::stdout().lock().write_all(&text)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => fail(
            &Failure::Usage(format!("cannot generate {what}: {e}")),
            false,
        ),
    }
}

/// Prints the one line of a fatal error and returns its exit code.
fn fail(e: &Failure, json_logs: bool) -> ExitCode {
    fail_with(e, json_logs, e.code())
}

/// Prints the one line of a fatal error and returns `code`.
fn fail_with(e: &Failure, json_logs: bool, code: u8) -> ExitCode {
    if json_logs {
        tracing::error!(exit_code = code, "{e}");
    } else {
        eprintln!("distlock: {e}");
    }
    ExitCode::from(code)
}

/// Ends the process by `signal` with its default action, so a calling shell sees the command's
/// own death (for SIGINT, bash then stops its script too). Falls back to 128+N.
fn die_of(signal: i32) -> ExitCode {
    use nix::sys::signal::{raise, signal as set_handler, SigHandler, Signal};
    if let Ok(sig) = Signal::try_from(signal) {
        // SAFETY: restoring the default disposition installs no handler code.
        unsafe {
            let _ = set_handler(sig, SigHandler::SigDfl);
        }
        let _ = raise(sig);
    }
    ExitCode::from(exit::killed_by(signal))
}
