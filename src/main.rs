//! distlock: parse the command line, resolve the configuration, run one mode, and turn the
//! result into an exit code. Every fatal error comes back here and is printed once.

mod app;
mod cli;
mod config;
mod error;
mod etcd;
mod lock;
mod output;
mod record;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::parse_args() {
        Ok(cli) => cli,
        // Help and --version print to stdout and exit 0; usage errors exit 2.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = config::Config::resolve(cli).and_then(|config| {
        init_logging(&config);
        // One lease, one watch and one child need no thread pool, and spawning the child
        // from the main thread keeps its parent-death signal tied to distlock's lifetime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| error::Error::Usage(format!("cannot start: {e}")))?;
        runtime.block_on(app::main(config))
    });
    match result {
        Ok(app::Outcome::Code(code)) => ExitCode::from(code),
        Ok(app::Outcome::Signal(signal)) => die_of(signal),
        Err(e) => {
            eprintln!("distlock: {e}");
            ExitCode::from(e.exit_code())
        }
    }
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
    ExitCode::from((128 + signal).clamp(0, 255) as u8)
}

fn init_logging(config: &config::Config) {
    use tracing_subscriber::EnvFilter;
    let level = match (config.quiet, config.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("DISTLOCK_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("distlock={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}
