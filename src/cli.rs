//! The command line as the user typed it: the clap definition (the one place each flag is
//! documented) and the rewrite that keeps the Go tool's single-dash spellings working.
//!
//! Values stay raw strings here; `config` layers them over the YAML file and defaults and
//! validates them, so an error can say where a bad value came from.

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;

const AFTER_HELP: &str = "\
Precedence: built-in defaults < YAML file < DISTLOCK_* environment < command-line flags.
An environment variable set to the empty string counts as unset. Single-dash long flags
(-lock-name=x -lock) and a command given without `--` are accepted, as the Go tool did.

The command gets DISTLOCK_LOCK_NAME, DISTLOCK_KEY, DISTLOCK_LEASE_ID, DISTLOCK_FENCING_TOKEN,
ETCD_LOCK_KEY and ETCD_LOCK_REV in its environment.

Exit codes:
  0        done: lock taken (--lock), released (--unlock), listed; or the command exited 0
  1        not acquired (busy with --nowait, --timeout passed); --unlock of a free lock
           (--conflict-exit-code changes it)
  2        usage or configuration error; nothing was changed in etcd
  3        etcd unreachable, refused the request, or rejected the credentials
  4        the lock was lost while the command ran
  126/127  the command could not be executed / was not found (the lock was released)
  128+N    the command was killed by signal N
  other    the command's own exit status

Files: /etc/distlock/distlock.yaml (default --config; missing is fine)";

/// Run a command, or hold a lock, under an etcd lock shared by a fleet of servers.
#[derive(Debug, Parser)]
#[command(
    name = "distlock",
    // "0.1.0 (1a2b3c4)" when built from a git checkout; build.rs sets it.
    version = option_env!("DISTLOCK_BUILD_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
    after_help = AFTER_HELP,
    // The command's own flags belong to it, not to us.
    trailing_var_arg = true,
)]
pub struct Cli {
    /// Name of the lock (1-255 bytes, no '/', whitespace or control characters)
    #[arg(long, env = "DISTLOCK_LOCKNAME", value_name = "NAME")]
    pub lock_name: Option<String>,

    /// Acquire the lock, print its key and fencing token, and exit 0 with the lock still held
    #[arg(long, group = "mode")]
    pub lock: bool,

    /// Release the lock, whoever holds it
    #[arg(long, group = "mode")]
    pub unlock: bool,

    /// Show all locks under the prefix
    #[arg(long, group = "mode")]
    pub list: bool,

    /// Show one lock: its holder and waiters
    #[arg(long, group = "mode")]
    pub status: bool,

    /// Stored with the lock and shown to everyone who waits or looks
    #[arg(long, env = "DISTLOCK_REASON", value_name = "TEXT")]
    pub reason: Option<String>,

    /// Fail at once when the lock is busy (same as --timeout=0)
    #[arg(long)]
    pub nowait: bool,

    /// Longest wait: seconds (30) or a duration (90s, 5m); -1 waits forever [default: -1]
    #[arg(
        long,
        env = "DISTLOCK_TIMEOUT",
        value_name = "T",
        allow_hyphen_values = true
    )]
    pub timeout: Option<String>,

    /// Comma-separated etcd URLs; https:// means TLS [default: http://127.0.0.1:2379]
    #[arg(long, env = "DISTLOCK_ENDPOINTS", value_name = "URLS")]
    pub endpoints: Option<String>,

    /// Key namespace in etcd, e.g. one for staging and one for prod [default: /distlock/]
    #[arg(long, env = "DISTLOCK_PREFIX", value_name = "P")]
    pub prefix: Option<String>,

    /// YAML configuration file [default: /etc/distlock/distlock.yaml]
    #[arg(long, env = "DISTLOCK_CONFIG", value_name = "FILE")]
    pub config: Option<OsString>,

    /// Lease TTL while the command runs; with --lock the lock expires after T instead of never
    /// [default: 10s]
    #[arg(long, env = "DISTLOCK_TTL", value_name = "T")]
    pub ttl: Option<String>,

    /// Deadline for dialing etcd and for each etcd request [default: 5s]
    #[arg(long, env = "DISTLOCK_MAXTIME", value_name = "T")]
    pub maxtime: Option<String>,

    /// Keep the lock at least D after taking it, even if the command ends sooner
    #[arg(long, env = "DISTLOCK_HOLD_AT_LEAST", value_name = "D")]
    pub hold_at_least: Option<String>,

    /// When the lock is lost while the command runs: kill it (default) or only warn
    #[arg(long, env = "DISTLOCK_ON_LOST", value_name = "POLICY")]
    pub on_lost: Option<String>,

    /// Time between SIGTERM and SIGKILL when the command must stop [default: 2s, at most TTL/3]
    #[arg(long, env = "DISTLOCK_KILL_GRACE", value_name = "D")]
    pub kill_grace: Option<String>,

    /// Exit code for "not acquired" and "unlock of a free lock", like flock -E [default: 1]
    #[arg(long, env = "DISTLOCK_CONFLICT_EXIT_CODE", value_name = "N")]
    pub conflict_exit_code: Option<String>,

    /// Print every effective setting and where it came from, then exit
    #[arg(long, group = "mode")]
    pub show_config: bool,

    /// Output of --status, --list, --lock and --show-config: text or json [default: text]
    #[arg(long, env = "DISTLOCK_OUTPUT", value_name = "FORMAT")]
    pub output: Option<String>,

    /// Diagnostics on stderr as text or json lines, for log shippers [default: text]
    #[arg(long, env = "DISTLOCK_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// CA certificate (PEM) to verify etcd's server certificate [default: system roots]
    #[arg(long, env = "DISTLOCK_CACERT", value_name = "FILE")]
    pub cacert: Option<String>,

    /// Client certificate (PEM) for mutual TLS
    #[arg(long, env = "DISTLOCK_CERT", value_name = "FILE")]
    pub cert: Option<String>,

    /// Client private key (PEM) for mutual TLS. Also DISTLOCK_KEY, etcdctl-style, except under
    /// a distlock that set DISTLOCK_KEY (the lock key) itself
    #[arg(long, env = "DISTLOCK_KEY_FILE", value_name = "FILE")]
    pub key: Option<String>,

    /// etcd user; the password comes from DISTLOCK_PASSWORD or --password-file, never argv
    #[arg(long, env = "DISTLOCK_USER", value_name = "NAME")]
    pub user: Option<String>,

    /// File whose first line is the etcd password
    #[arg(long, env = "DISTLOCK_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<String>,

    /// Say less: no progress messages while waiting
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,

    /// Say more (-vv for etcd-level detail); DISTLOCK_LOG takes a tracing filter
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// The command to run under the lock, with its arguments
    #[arg(value_name = "COMMAND", allow_hyphen_values = true)]
    pub command: Vec<OsString>,

    /// How each option that was given was spelled, by clap id, worked out while parsing.
    #[arg(skip)]
    pub given: Vec<(String, Given)>,
}

/// How the user gave an option: the flag typed, or the variable that was set.
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    Flag(String),
    Env(String),
}

impl Given {
    /// `--lock-name` or `DISTLOCK_LOCKNAME`.
    pub fn name(&self) -> &str {
        match self {
            Given::Flag(name) | Given::Env(name) => name,
        }
    }
}

impl Cli {
    /// Parses the process's arguments, accepting the Go tool's single-dash long flags.
    pub fn parse_args() -> Result<Cli, ParseError> {
        // docs/CONTRACT.md says an empty DISTLOCK_* variable counts as unset, but clap takes ""
        // as a value. Dropping them first is simplest; we are still single-threaded here.
        for (name, value) in std::env::vars_os() {
            if value.is_empty() && name.to_string_lossy().starts_with("DISTLOCK_") {
                std::env::remove_var(name);
            }
        }
        Self::parse_from_args(std::env::args_os().collect())
    }

    pub fn parse_from_args(args: Vec<OsString>) -> Result<Cli, ParseError> {
        let mut cmd = Cli::command();
        let args = go_style_to_gnu(&cmd, args).map_err(ParseError::UnknownOption)?;
        let matches = cmd.try_get_matches_from_mut(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.given = cmd
            .get_arguments()
            .filter_map(|arg| {
                let id = arg.get_id().as_str();
                let given = match matches.value_source(id)? {
                    ValueSource::EnvVariable => Given::Env(arg.get_env()?.to_string_lossy().into()),
                    ValueSource::CommandLine => Given::Flag(format!("--{}", arg.get_long()?)),
                    _ => return None,
                };
                Some((id.to_string(), given))
            })
            .collect();
        Ok(cli)
    }

    /// How the option with clap id `id` was given, if it was.
    pub fn given(&self, id: &str) -> Option<&Given> {
        self.given.iter().find(|(i, _)| i == id).map(|(_, g)| g)
    }
}

/// Why the command line was rejected, as one line.
#[derive(Debug)]
pub enum ParseError {
    /// Also carries `--help` and `--version`, which are not errors.
    Clap(clap::Error),
    UnknownOption(String),
}

impl From<clap::Error> for ParseError {
    fn from(e: clap::Error) -> Self {
        ParseError::Clap(e)
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // clap explains over several lines; the first one says what is wrong.
            ParseError::Clap(e) => {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                write!(f, "{first}; see distlock --help")
            }
            ParseError::UnknownOption(option) => write!(
                f,
                "unknown option {option}; see distlock --help (a command that starts with '-' goes after --)"
            ),
        }
    }
}

/// Rewrites `-lock-name=x` to `--lock-name=x` for every long flag we know, up to the start of
/// the command (`--` or the first word that is not a flag), so the command's own arguments are
/// never touched. Go's `flag` package accepted both spellings, and crontabs use both.
///
/// A word that looks like an option but is not one of ours is an error, not the start of the
/// command: a typo such as `--nowiat backup.sh` must not run backup.sh under a waiting lock.
pub fn go_style_to_gnu(cmd: &clap::Command, args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let takes_value = |long: &str| match long {
        "help" | "version" => Some(false),
        _ => cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .map(|a| a.get_action().takes_values()),
    };
    let is_short =
        |c: char| matches!(c, 'h' | 'V') || cmd.get_arguments().any(|a| a.get_short() == Some(c));
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            break; // not a flag of ours: the command starts here
        };
        if text == "--" || !text.starts_with('-') || text == "-" {
            out.push(arg);
            break;
        }
        let body = text.strip_prefix("--").unwrap_or(&text[1..]);
        let name = body.split('=').next().unwrap_or(body);
        match takes_value(name) {
            Some(needs_value) => {
                out.push(OsString::from(format!("--{body}")));
                // `-timeout 30`: the next word is the value, not the command.
                if needs_value && !body.contains('=') {
                    if let Some(value) = iter.next() {
                        out.push(value);
                    }
                }
            }
            // Bundled short flags: -q, -vv.
            None if !text.starts_with("--") && body.chars().all(is_short) => out.push(arg),
            None => return Err(text.split('=').next().unwrap_or(text).to_string()),
        }
    }
    out.extend(iter);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn rewrite(args: &[&str]) -> Vec<String> {
        go_style_to_gnu(&Cli::command(), args.iter().map(OsString::from).collect())
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            rewrite(&["distlock", "-lock-name=x", "-lock", "-timeout", "30"]),
            ["distlock", "--lock-name=x", "--lock", "--timeout", "30"]
        );
    }

    #[test]
    fn the_commands_own_flags_are_untouched() {
        assert_eq!(
            rewrite(&["distlock", "-lock-name", "x", "ls", "-lock", "-la"]),
            ["distlock", "--lock-name", "x", "ls", "-lock", "-la"]
        );
        assert_eq!(
            rewrite(&["distlock", "--lock-name=x", "--", "-lock"]),
            ["distlock", "--lock-name=x", "--", "-lock"]
        );
    }

    #[test]
    fn short_flags_stay_short() {
        assert_eq!(
            rewrite(&["distlock", "-q", "-vv", "--nowait"]),
            ["distlock", "-q", "-vv", "--nowait"]
        );
    }

    #[test]
    fn unknown_options_before_the_command_are_errors() {
        assert_eq!(
            go_style_to_gnu(
                &Cli::command(),
                args(&["distlock", "--nowiat", "backup.sh"])
            ),
            Err("--nowiat".to_string())
        );
        assert_eq!(
            go_style_to_gnu(&Cli::command(), args(&["distlock", "-x", "backup.sh"])),
            Err("-x".to_string())
        );
        assert!(go_style_to_gnu(&Cli::command(), args(&["distlock", "--", "--nowiat"])).is_ok());
        assert!(go_style_to_gnu(&Cli::command(), args(&["distlock", "--help"])).is_ok());
    }

    #[test]
    fn a_command_without_double_dash_is_taken_whole() {
        let cli =
            Cli::parse_from_args(args(&["distlock", "-lock-name=x", "yum", "-y", "--nowait"]))
                .unwrap();
        assert_eq!(cli.command, ["yum", "-y", "--nowait"]);
        assert!(!cli.nowait);
    }
}
