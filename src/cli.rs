//! The command line as the user typed it: the clap definition, built from the settings table
//! (`settings`, where each option is documented once), and the rewrite that keeps the Go
//! tool's single-dash spellings working.
//!
//! Values stay raw strings here; `config` layers them over the YAML file and defaults and
//! validates them, so an error can say where a bad value came from.

use crate::settings::{self, OptionSpec, Yaml};
use clap::builder::FalseyValueParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;

/// The command line as typed: the mode, the switches, and each setting given by a flag or a
/// `DISTLOCK_*` variable, as text.
#[derive(Debug, Default)]
pub struct Cli {
    pub lock: bool,
    pub unlock: bool,
    /// `--unlock=KEY`: which holder, when several hold the lock.
    pub unlock_key: Option<String>,
    /// `--extend=D`, as text (`config` parses it).
    pub extend: Option<String>,
    /// `--holder=KEY`: which holder `--extend` or `--unlock` acts on.
    pub holder: Option<String>,
    pub list: bool,
    pub status: bool,
    pub history: bool,
    pub show_config: bool,
    /// `--generate=man|bash|zsh|fish`: print the man page or a completion script (packaging).
    pub generate: Option<String>,
    pub nowait: bool,
    pub config: Option<OsString>,
    pub quiet: u8,
    pub verbose: u8,
    /// The command to run under the lock, with its arguments.
    pub command: Vec<OsString>,
    /// Each setting that was given: its name in the settings table, the text, and how.
    pub values: Vec<(&'static str, String, Given)>,
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

/// The clap definition: the modes, then every option of the settings table, then the command.
pub fn command() -> Command {
    Command::new("distlock")
        // "0.1.0 (1a2b3c4)" when built from a git checkout; build.rs sets it.
        .version(option_env!("DISTLOCK_BUILD_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")))
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .after_help(after_help())
        // The command's own flags belong to it, not to us.
        .trailing_var_arg(true)
        .args(settings::MODES.iter().copied().filter_map(option_arg))
        .args(settings::OPTIONS.iter().copied().filter_map(option_arg))
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .help("The command to run under the lock, with its arguments")
                .value_parser(clap::value_parser!(OsString))
                .action(ArgAction::Append)
                .num_args(1..)
                .allow_hyphen_values(true),
        )
}

/// `--generate=WHAT`, for packaging, as ripgrep has it: hidden from `--help`, and not part of
/// `command()`, which the man page and the completions are made from.
fn generate_arg() -> Arg {
    Arg::new("generate")
        .long("generate")
        .value_name("WHAT")
        .value_parser(GENERATE)
        .require_equals(true)
        .group("mode")
        .hide(true)
}

/// The clap argument of an option, if it has a flag.
fn option_arg(spec: &'static OptionSpec) -> Option<Arg> {
    let mut arg = Arg::new(spec.name).long(spec.flag?);
    if spec.mode {
        // At most one of --lock, --unlock, --extend ...
        arg = arg.group("mode");
    }
    if let Some(short) = spec.short {
        arg = arg.short(short);
    }
    if let Some(env) = spec.env {
        arg = arg.env(env);
    }
    let help = match spec.shown_default() {
        Some("") if spec.value.is_some() => format!("{} [default: \"\"]", spec.help),
        Some(default) if spec.value.is_some() => format!("{} [default: {default}]", spec.help),
        _ => spec.help.to_string(),
    };
    arg = arg.help(help);
    Some(match spec.value {
        // `--unlock` or `--unlock=KEY`; never the next word, which may be the command.
        Some(value) if spec.name == settings::UNLOCK.name => arg
            .value_name(value)
            .num_args(0..=1)
            .require_equals(true)
            .action(ArgAction::Set),
        Some(value) => {
            let arg = arg.value_name(value).action(ArgAction::Set);
            // The file's path need not be UTF-8; every other value is text.
            let arg = if spec.name == settings::CONFIG.name {
                arg.value_parser(clap::value_parser!(OsString))
            } else {
                arg.value_parser(clap::value_parser!(String))
            };
            // `--timeout -1`; any other value that starts with '-' is a forgotten value
            // (`--lock-name --nowait`), not a lock named "--nowait".
            arg.allow_hyphen_values(spec.name == settings::TIMEOUT.spec.name)
        }
        None if spec.short.is_some() => arg.action(ArgAction::Count),
        // A switch that is also a setting (variable, YAML key): its variable counts as unset
        // when false-ish ("0", "false", "no", "off"), as a switch that was not given.
        None if spec.yaml != Yaml::No => arg
            .action(ArgAction::SetTrue)
            .value_parser(FalseyValueParser::new()),
        None => arg.action(ArgAction::SetTrue),
    })
}

/// What `--generate` can print.
pub const GENERATE: [&str; 4] = ["man", "bash", "zsh", "fish"];

/// The first paragraph after the options in `--help`; more DESCRIPTION in the man page.
pub const PRECEDENCE: &str = "\
Precedence: built-in defaults < YAML file < DISTLOCK_* environment < command-line flags.
An environment variable set to the empty string counts as unset. Single-dash long flags
(-lock-name=x -lock) and a command given without `--` are accepted, as the Go tool did.";

/// The variables run mode gives the command (src/app/supervise.rs sets them), and what each
/// holds.
pub const COMMAND_ENV: &[(&str, &str)] = &[
    ("DISTLOCK_LOCK_NAME", "the lock name"),
    (
        "DISTLOCK_KEY",
        "the holder key, e.g. /distlock/percona_prod/694d7e0a1b2c3d4e",
    ),
    (
        "DISTLOCK_LEASE_ID",
        "the lease id, in lower-case hex (as in the key)",
    ),
    (
        "DISTLOCK_FENCING_TOKEN",
        "the create revision of the key: it grows with every new holder of the lock",
    ),
    ("ETCD_LOCK_KEY", "the holder key, as etcdctl lock names it"),
    (
        "ETCD_LOCK_REV",
        "the create revision of the key (the fencing token)",
    ),
];

/// Variables distlock reads that no option stands for: the variable, the option it goes
/// with, and what it does.
pub const OTHER_ENV: &[(&str, &str, &str)] = &[
    (
        "DISTLOCK_LOG",
        "verbose",
        "a tracing filter for the diagnostics, which replaces the level -q and -v choose; \
         e.g. distlock=debug,etcd_client=debug",
    ),
    (
        "DISTLOCK_KEY",
        "key",
        "the client private key, etcdctl's spelling of DISTLOCK_KEY_FILE; ignored under a \
         distlock that set DISTLOCK_KEY (the lock key) for its command",
    ),
];

/// The files distlock reads or the packages install: the path, what it is, and whether only
/// the .deb and .rpm packages install it (`--help` names the others).
pub fn files() -> [(&'static str, &'static str, bool); 3] {
    [
        (
            settings::CONFIG.default.unwrap_or_default(),
            "default --config; missing is fine",
            false,
        ),
        (
            "/usr/share/doc/distlock/distlock.yaml.example",
            "Every setting of the YAML file, explained, with example values",
            true,
        ),
        (
            "/usr/share/doc/distlock/examples/",
            "cron, Puppet, Salt, systemd and rolling-upgrade examples",
            true,
        ),
    ]
}

/// `--help`'s text after the options, from the tables above and src/exit.rs's.
fn after_help() -> String {
    let (last, rest) = COMMAND_ENV.split_last().unwrap_or((&("", ""), &[]));
    let names: Vec<&str> = rest.iter().map(|(name, _)| *name).collect();
    let mut text = format!("{PRECEDENCE}\n\n");
    text.push_str(&wrap(
        &format!(
            "The command gets {} and {} in its environment.",
            names.join(", "),
            last.0
        ),
        "",
        "",
    ));
    text.push_str("\n\nExit codes:\n");
    for (code, meaning) in crate::exit::table() {
        // Under the meaning's first column.
        text.push_str(&wrap(meaning, &format!("  {code:<8}"), &" ".repeat(10)));
        text.push('\n');
    }
    for (path, what, _) in files().iter().filter(|(.., packaged)| !packaged) {
        text.push_str(&format!("\nFiles: {path} ({what})"));
    }
    text
}

/// `text` filled into lines of at most 93 characters (the width of `PRECEDENCE`), the first
/// starting with `first`, the others with `indent`.
fn wrap(text: &str, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 93 && !line.trim().is_empty() {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
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
        let mut cmd = command().arg(generate_arg());
        let args = go_style_to_gnu(&cmd, args).map_err(ParseError::UnknownOption)?;
        let matches = cmd.try_get_matches_from_mut(args)?;
        let flag = |id: &str| matches.get_flag(id);
        let count = |id: &str| matches.get_count(id);
        let values = settings::yaml_keys()
            .filter_map(|spec| given(&matches, spec))
            .collect();
        Ok(Cli {
            lock: flag(settings::LOCK.name),
            unlock: matches.contains_id(settings::UNLOCK.name),
            unlock_key: matches.get_one::<String>(settings::UNLOCK.name).cloned(),
            extend: matches
                .get_one::<String>(settings::EXTEND.spec.name)
                .cloned(),
            holder: matches.get_one::<String>(settings::HOLDER.name).cloned(),
            list: flag(settings::LIST.name),
            status: flag(settings::STATUS.name),
            history: flag(settings::HISTORY.name),
            show_config: flag(settings::SHOW_CONFIG.name),
            generate: matches.get_one::<String>("generate").cloned(),
            nowait: flag(settings::NOWAIT.name),
            config: matches.get_one::<OsString>(settings::CONFIG.name).cloned(),
            quiet: count(settings::QUIET.name),
            verbose: count(settings::VERBOSE.name),
            command: matches
                .get_many::<OsString>("command")
                .map(|c| c.cloned().collect())
                .unwrap_or_default(),
            values,
        })
    }

    /// The text of the setting `name` and how it was given, if it was.
    pub fn value(&self, name: &str) -> Option<(&str, &Given)> {
        self.values
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, text, given)| (text.as_str(), given))
    }
}

/// A setting's text and how it was given, when a flag or a variable gave it.
fn given(matches: &ArgMatches, spec: &'static OptionSpec) -> Option<(&'static str, String, Given)> {
    let given = match matches.value_source(spec.name)? {
        ValueSource::EnvVariable => Given::Env(spec.env?.to_string()),
        ValueSource::CommandLine => Given::Flag(format!("--{}", spec.flag?)),
        _ => return None,
    };
    // A switch's text is what its YAML key would say.
    let text = match spec.value {
        Some(_) => matches.get_one::<String>(spec.name)?.clone(),
        None => matches.get_flag(spec.name).to_string(),
    };
    Some((spec.name, text, given))
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
            // `--unlock=KEY` takes its value only after '='.
            .map(|a| a.get_action().takes_values() && !a.is_require_equals_set()),
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
        go_style_to_gnu(&command(), args.iter().map(OsString::from).collect())
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn definition_is_consistent() {
        command().arg(generate_arg()).debug_assert();
    }

    #[test]
    fn generate_is_a_mode_of_its_own() {
        let cli = Cli::parse_from_args(args(&["distlock", "--generate=man"])).unwrap();
        assert_eq!(cli.generate.as_deref(), Some("man"));
        for bad in [
            &["distlock", "--generate=man", "--lock"][..],
            &["distlock", "--generate=html"],
            &["distlock", "--generate", "man"],
        ] {
            assert!(Cli::parse_from_args(args(bad)).is_err(), "{bad:?}");
        }
    }

    /// A switch that is a setting, as --shared is: its text is what YAML would say.
    #[test]
    fn a_switch_can_be_a_setting() {
        static SWITCH: OptionSpec = OptionSpec {
            yaml: Yaml::Scalar,
            flag: Some("switch"),
            env: Some("DISTLOCK_TEST_SWITCH_UNSET"),
            ..settings::NOWAIT
        };
        let cmd = Command::new("t").arg(option_arg(&SWITCH).unwrap());
        let matches = cmd.clone().get_matches_from(["t", "--switch"]);
        assert_eq!(
            given(&matches, &SWITCH),
            Some(("nowait", "true".into(), Given::Flag("--switch".into())))
        );
        assert_eq!(given(&cmd.get_matches_from(["t"]), &SWITCH), None);
    }

    #[test]
    fn settings_come_with_how_they_were_given() {
        let cli =
            Cli::parse_from_args(args(&["distlock", "--ttl=5", "--lock-name", "x", "-q"])).unwrap();
        assert_eq!(cli.value("ttl"), Some(("5", &Given::Flag("--ttl".into()))));
        assert_eq!(
            cli.value("lockname"),
            Some(("x", &Given::Flag("--lock-name".into())))
        );
        assert_eq!(cli.value("reason"), None);
        assert_eq!(cli.quiet, 1);
    }

    #[test]
    fn only_the_timeout_takes_a_value_that_starts_with_a_dash() {
        let cli = Cli::parse_from_args(args(&["distlock", "--timeout", "-1", "--lock"])).unwrap();
        assert_eq!(cli.value("timeout").map(|(t, _)| t), Some("-1"));
        assert!(
            Cli::parse_from_args(args(&["distlock", "--lock-name", "--nowait", "true"])).is_err()
        );
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
            go_style_to_gnu(&command(), args(&["distlock", "--nowiat", "backup.sh"])),
            Err("--nowiat".to_string())
        );
        assert_eq!(
            go_style_to_gnu(&command(), args(&["distlock", "-x", "backup.sh"])),
            Err("-x".to_string())
        );
        assert!(go_style_to_gnu(&command(), args(&["distlock", "--", "--nowiat"])).is_ok());
        assert!(go_style_to_gnu(&command(), args(&["distlock", "--help"])).is_ok());
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
