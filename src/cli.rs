//! The command line as the user typed it: the clap definition, built from the settings table
//! (`settings`, where each option is documented once), and the rewrite that keeps the Go
//! tool's single-dash spellings working.
//!
//! Values stay raw strings here; `config` layers them over the YAML file and defaults and
//! validates them, so an error can say where a bad value came from.

use crate::settings::{self, OptionSpec, Yaml};
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
    /// `--follow`, with `--list` or `--status`.
    pub follow: bool,
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
    if spec.name == settings::SHELL_COMMAND.name {
        // flock's -c: one shell command line, or a command after --, not both.
        arg = arg.conflicts_with("command");
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
        // -q, -qq, -v, -vv.
        None if [settings::QUIET.name, settings::VERBOSE.name].contains(&spec.name) => {
            arg.action(ArgAction::Count)
        }
        // A switch that is also a setting (variable, YAML key): its variable is read by the
        // same rule as the YAML key (`values::switch`), and a false one counts as a switch
        // that was not given.
        None if spec.yaml != Yaml::No => arg
            .action(ArgAction::SetTrue)
            .value_parser(settings::values::switch),
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

/// The files distlock reads or the packages install: the path, what it is, where each package
/// format puts it (the .deb and .rpm install it at the path; the tarball holds some at its
/// top), and whether `--help` names it (the packages' documentation it leaves to the man page).
pub fn files() -> [(&'static str, &'static str, &'static str, bool); 3] {
    [
        (
            settings::CONFIG.default.unwrap_or_default(),
            "default --config; missing is fine",
            "The .deb and .rpm install it with every key commented out; the tarball has the \
             same file as distlock.yaml, to copy there.",
            true,
        ),
        (
            "/usr/share/doc/distlock/distlock.yaml.example",
            "Every setting of the YAML file, explained, with example values",
            "Installed by the .deb and .rpm; the tarball has it as distlock.yaml.example.",
            false,
        ),
        (
            "/usr/share/doc/distlock/examples/",
            "cron, Puppet, Salt, Ansible, systemd and rolling-upgrade examples, each saying \
             how to install it",
            "Installed by the .deb and .rpm.",
            false,
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
    for (path, what, ..) in files().iter().filter(|(.., in_help)| *in_help) {
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
        check_switch_variables()?;
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
            follow: flag(settings::FOLLOW.name),
            history: flag(settings::HISTORY.name),
            show_config: flag(settings::SHOW_CONFIG.name),
            generate: matches.get_one::<String>("generate").cloned(),
            nowait: flag(settings::NOWAIT.name),
            config: matches.get_one::<OsString>(settings::CONFIG.name).cloned(),
            quiet: count(settings::QUIET.name),
            verbose: count(settings::VERBOSE.name),
            command: match matches.get_one::<String>(settings::SHELL_COMMAND.name) {
                Some(line) => shell_command(line),
                None => matches
                    .get_many::<OsString>("command")
                    .map(|c| c.cloned().collect())
                    .unwrap_or_default(),
            },
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

/// A switch's variable (`DISTLOCK_SHARED=maybe`) is refused here, naming it, as every other
/// bad variable is refused by `config`; clap would name only the flag.
fn check_switch_variables() -> Result<(), ParseError> {
    let switches = settings::OPTIONS
        .iter()
        .filter(|spec| spec.value.is_none() && spec.yaml != Yaml::No);
    for var in switches.filter_map(|spec| spec.env) {
        let Some(text) = std::env::var_os(var) else {
            continue;
        };
        let text = text.to_string_lossy();
        if let Err(e) = settings::values::switch(&text) {
            return Err(ParseError::Invalid(format!("{var}={text:?}: {e}")));
        }
    }
    Ok(())
}

/// `-c CMD`: the command that runs the line, as flock runs it (`sh -c`).
fn shell_command(line: &str) -> Vec<OsString> {
    ["/bin/sh", "-c", line].map(OsString::from).to_vec()
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
    /// A value clap would explain less well.
    Invalid(String),
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
            ParseError::Invalid(message) => f.write_str(message),
            ParseError::UnknownOption(option) if option.contains("did you mean") => {
                write!(f, "unknown option {option} (see distlock --help)")
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
    // Whether `c` is a short flag of ours, and whether it takes a value (`-w 30`, `-w30`).
    let short = |c: char| match c {
        'h' | 'V' => Some(false),
        _ => cmd
            .get_arguments()
            .find(|a| a.get_short() == Some(c))
            .map(|a| a.get_action().takes_values()),
    };
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
            // Short flags, bundled (-q, -vv, -nq), the last one perhaps with its value (-w 30,
            // -w30, -qw 30): the value is never the start of the command. An attached value
            // becomes a word of its own, or clap would take `-E75` for the command.
            None if !text.starts_with("--") => match shorts_and_value(body, short) {
                Some((flags, Value::Next)) => {
                    out.push(OsString::from(format!("-{flags}")));
                    out.extend(iter.next());
                }
                Some((flags, Value::Attached(value))) => {
                    out.push(OsString::from(format!("-{flags}")));
                    out.push(OsString::from(value));
                }
                Some((_, Value::None)) => out.push(arg),
                None => return Err(unknown(cmd, text)),
            },
            None => return Err(unknown(cmd, text)),
        }
    }
    out.extend(iter);
    Ok(out)
}

/// Where the value of bundled short flags is.
enum Value<'a> {
    None,
    /// The next word (`-w 30`).
    Next,
    /// The rest of the bundle (`-w30`).
    Attached(&'a str),
}

/// Bundled short flags (`qw30` of `-qw30`): the flags up to the one that takes a value, and
/// where that value is; `None` if one of them is not ours.
fn shorts_and_value(
    bundle: &str,
    short: impl Fn(char) -> Option<bool>,
) -> Option<(&str, Value<'_>)> {
    for (at, c) in bundle.char_indices() {
        if short(c)? {
            let (flags, rest) = bundle.split_at(at + c.len_utf8());
            return Some(match rest {
                "" => (flags, Value::Next),
                // `-E=75`, as clap takes it.
                _ => (
                    flags,
                    Value::Attached(rest.strip_prefix('=').unwrap_or(rest)),
                ),
            });
        }
    }
    Some((bundle, Value::None))
}

/// An unknown option, as the error shows it: the option, and the flag it was probably meant to
/// be (`--lockname`, `--lock_name` and `DISTLOCK_LOCKNAME` are `--lock-name`).
fn unknown(cmd: &clap::Command, text: &str) -> String {
    let typed = text.split('=').next().unwrap_or(text);
    match suggest(cmd, typed) {
        Some(flag) => format!("{typed}; did you mean --{flag}?"),
        None => typed.to_string(),
    }
}

/// The long flag `typed` most likely means: the same in another spelling (a YAML key, a
/// variable, `_` for `-`, any case), else one at most two typos away.
fn suggest(cmd: &clap::Command, typed: &str) -> Option<String> {
    let plain = |s: &str| -> String {
        let s: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect();
        s.strip_prefix("distlock").map(str::to_string).unwrap_or(s)
    };
    let want = plain(typed);
    if want.len() < 2 {
        return None;
    }
    // Each flag with the spellings it goes by: the flag, its YAML key and its variable.
    let flags: Vec<(&str, Vec<String>)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            let mut names = vec![plain(long), plain(a.get_id().as_str())];
            names.extend(a.get_env().map(|e| plain(&e.to_string_lossy())));
            Some((long, names))
        })
        .collect();
    if let Some((long, _)) = flags.iter().find(|(_, names)| names.contains(&want)) {
        return Some(long.to_string());
    }
    flags
        .iter()
        .map(|(long, names)| {
            let nearest = names
                .iter()
                .map(|n| edits(n, &want))
                .min()
                .unwrap_or(usize::MAX);
            (nearest, *long)
        })
        .filter(|(n, _)| *n <= 2 && *n < want.len() / 2 + 1)
        .min_by_key(|(n, _)| *n)
        .map(|(_, long)| long.to_string())
}

/// The edit distance between `a` and `b` (insertions, deletions, substitutions, swaps).
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
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
            go_style_to_gnu(&command(), args(&["distlock", "-x", "backup.sh"])),
            Err("-x".to_string())
        );
        assert_eq!(
            go_style_to_gnu(&command(), args(&["distlock", "--nowiat", "backup.sh"])),
            Err("--nowiat; did you mean --nowait?".to_string())
        );
        assert!(go_style_to_gnu(&command(), args(&["distlock", "--", "--nowiat"])).is_ok());
        assert!(go_style_to_gnu(&command(), args(&["distlock", "--help"])).is_ok());
    }

    #[test]
    fn flocks_short_flags_take_their_values() {
        assert_eq!(
            rewrite(&[
                "distlock",
                "-n",
                "-w",
                "-1",
                "-lock-name=x",
                "-E",
                "75",
                "cmd"
            ]),
            [
                "distlock",
                "-n",
                "-w",
                "-1",
                "--lock-name=x",
                "-E",
                "75",
                "cmd"
            ]
        );
        assert_eq!(
            rewrite(&["distlock", "-qw", "0.5", "-E75", "-sn", "-lock", "cmd", "-w"]),
            ["distlock", "-qw", "0.5", "-E", "75", "-sn", "--lock", "cmd", "-w"]
        );
        assert_eq!(
            rewrite(&["distlock", "-qw0.5", "-E=75", "-w", "-1", "cmd"]),
            ["distlock", "-qw", "0.5", "-E", "75", "-w", "-1", "cmd"]
        );
        let cli =
            Cli::parse_from_args(args(&["distlock", "-E75", "--lock-name=q", "--status"])).unwrap();
        assert!(cli.status && cli.command.is_empty());
        assert_eq!(cli.value("conflict_exit_code").map(|(t, _)| t), Some("75"));
        let cli = Cli::parse_from_args(args(&[
            "distlock",
            "-n",
            "-s",
            "-E",
            "75",
            "-w",
            "0.5",
            "-lock-name=x",
            "true",
        ]))
        .unwrap();
        assert!(cli.nowait);
        assert_eq!(cli.value("shared").map(|(t, _)| t), Some("true"));
        assert_eq!(cli.value("conflict_exit_code").map(|(t, _)| t), Some("75"));
        assert_eq!(cli.value("timeout").map(|(t, _)| t), Some("0.5"));
        assert_eq!(cli.command, ["true"]);
    }

    #[test]
    fn dash_c_runs_a_shell_line_and_excludes_a_command() {
        let cli =
            Cli::parse_from_args(args(&["distlock", "-lock-name=x", "-c", "a && b"])).unwrap();
        assert_eq!(cli.command, ["/bin/sh", "-c", "a && b"]);
        let cli =
            Cli::parse_from_args(args(&["distlock", "--command=a;b", "--lock-name=x"])).unwrap();
        assert_eq!(cli.command, ["/bin/sh", "-c", "a;b"]);
        for both in [
            &["distlock", "-c", "a", "--", "b"][..],
            &["distlock", "-c", "a", "b"],
        ] {
            assert!(Cli::parse_from_args(args(both)).is_err(), "{both:?}");
        }
    }

    #[test]
    fn other_spellings_of_a_flag_point_at_it() {
        for typed in [
            "--lockname",
            "--lock_name",
            "-lockname=x",
            "--LOCK-NAME",
            "--DISTLOCK_LOCKNAME",
            "--lock-nmae",
        ] {
            let err = go_style_to_gnu(&command(), args(&["distlock", typed, "x", "true"]));
            let typed = typed.split('=').next().unwrap();
            assert_eq!(
                err,
                Err(format!("{typed}; did you mean --lock-name?")),
                "{typed}"
            );
        }
        let err = go_style_to_gnu(&command(), args(&["distlock", "--hold_at_least=5", "t"]));
        assert_eq!(
            err,
            Err("--hold_at_least; did you mean --hold-at-least?".into())
        );
        // Nothing close: no guess.
        let err = go_style_to_gnu(&command(), args(&["distlock", "--frobnicate", "t"]));
        assert_eq!(err, Err("--frobnicate".into()));
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
