//! The resolved configuration the rest of distlock runs on: built-in defaults, then the YAML
//! file, then `DISTLOCK_*` variables, then flags, validated into typed values once, here.

use crate::cli::{Cli, Given};
use crate::error::{Error, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/distlock/distlock.yaml";
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
pub const DEFAULT_PREFIX: &str = "/distlock/";
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
pub const DEFAULT_MAXTIME: Duration = Duration::from_secs(5);
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
pub const MAX_REASON: usize = 64 * 1024;
/// etcd's longest lease TTL (about 285 years); no duration here needs more.
pub const LONGEST: Duration = Duration::from_secs(9_000_000_000);

/// What distlock was asked to do.
#[derive(Debug, PartialEq)]
pub enum Mode {
    /// Run this command (program and arguments) under the lock.
    Run(Vec<OsString>),
    Lock,
    Unlock,
    Status,
    List,
    ShowConfig,
}

/// How long to wait for a busy lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    Forever,
    /// `Duration::ZERO` is `--nowait`.
    Upto(Duration),
}

/// What to do when the lock is lost while the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLost {
    Kill,
    Warn,
}

/// A lock name known to be 1-255 bytes of UTF-8 without `/`, whitespace or control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct LockName(String);

impl LockName {
    pub fn parse(name: &str) -> Result<LockName, String> {
        if name.is_empty() {
            return Err("the lock name is empty".into());
        }
        if name.len() > 255 {
            return Err(format!(
                "the lock name is {} bytes long; at most 255 are allowed",
                name.len()
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "the lock name {name:?} contains {c:?}; '/', whitespace and control characters are not allowed"
            ));
        }
        Ok(LockName(name.to_string()))
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// Where a setting's value came from, for `--show-config`.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// One effective setting as `--show-config` shows it (secrets already masked).
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
}

/// How to reach etcd: TLS files and credentials.
#[derive(Debug, Default)]
pub struct Security {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    /// From DISTLOCK_PASSWORD or the password file; never printed.
    pub password: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Present for every mode but `--list` and `--show-config`.
    pub lock_name: Option<LockName>,
    pub reason: String,
    pub wait: Wait,
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// Lease TTL while waiting and while the command runs.
    pub ttl: Duration,
    /// With `--lock`: the lock expires after this instead of never.
    pub lock_ttl: Option<Duration>,
    pub maxtime: Duration,
    pub hold_at_least: Option<Duration>,
    pub on_lost: OnLost,
    pub kill_grace: Duration,
    pub conflict_exit_code: u8,
    pub output: Format,
    pub log_format: Format,
    pub security: Security,
    pub quiet: bool,
    pub verbose: u8,
    /// Every setting with its source, for `--show-config`.
    pub settings: Vec<Setting>,
}

/// The YAML file. Keys are the Go tool's, plus snake_case names for newer options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    lockname: Option<String>,
    reason: Option<String>,
    #[serde(default, deserialize_with = "endpoints_value")]
    endpoints: Option<Vec<String>>,
    #[serde(default, deserialize_with = "timeout_value")]
    timeout: Option<Wait>,
    prefix: Option<String>,
    #[serde(default, deserialize_with = "seconds_value")]
    ttl: Option<Duration>,
    #[serde(default, deserialize_with = "duration_value")]
    maxtime: Option<Duration>,
    #[serde(default, deserialize_with = "seconds_value")]
    hold_at_least: Option<Duration>,
    on_lost: Option<OnLost>,
    #[serde(default, deserialize_with = "duration_value")]
    kill_grace: Option<Duration>,
    conflict_exit_code: Option<u8>,
    output: Option<Format>,
    log_format: Option<Format>,
    cacert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
    /// The Go tool's internal lock switch; accepted so old files keep loading, then ignored.
    #[allow(dead_code)]
    internallock: Option<serde_yaml::Value>,
}

/// Layers one setting at a time and remembers where each value came from.
struct Layers<'a> {
    cli: &'a Cli,
    file: Option<PathBuf>,
    settings: Vec<Setting>,
}

impl Layers<'_> {
    /// The clap id of the option behind a YAML key.
    fn id(key: &str) -> &str {
        if key == "lockname" {
            "lock_name"
        } else {
            key
        }
    }

    fn cli_source(&self, key: &str) -> Source {
        match self.cli.given(Self::id(key)) {
            Some(Given::Flag(name)) => Source::Flag(name.clone()),
            Some(Given::Env(name)) => Source::Env(name.clone()),
            None => Source::Default,
        }
    }

    /// Records a setting whose value and source were worked out by the caller.
    fn record<T>(
        &mut self,
        key: &'static str,
        value: T,
        source: Source,
        show: impl Fn(&T) -> String,
    ) -> T {
        self.settings.push(Setting {
            key,
            value: show(&value),
            source,
        });
        value
    }

    /// One setting: the flag or variable (text, parsed here so the error can say which), else
    /// the file's value (typed by serde, which names file, line and key on error), else the
    /// default, if any. Records the winner and its source for `--show-config`.
    fn setting<T>(
        &mut self,
        key: &'static str,
        cli: &Option<String>,
        file: Option<T>,
        default: Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
        show: impl Fn(&T) -> String,
    ) -> Result<Option<T>> {
        let cli = cli
            .as_deref()
            .map(|t| {
                let origin = self.cli.given(Self::id(key)).map_or(key, Given::name);
                parse(t).map_err(|e| Error::Usage(format!("{origin}={t:?}: {e}")))
            })
            .transpose()?;
        let (value, source) = match (cli, file, default) {
            (Some(v), ..) => (Some(v), self.cli_source(key)),
            (None, Some(v), _) => (Some(v), Source::File(self.file.clone().unwrap_or_default())),
            (None, None, v) => (v, Source::Default),
        };
        Ok(self.record(key, value, source, |v| {
            v.as_ref().map_or("(not set)".into(), &show)
        }))
    }

    /// A setting that always has a value: `default` when neither layer gives one.
    fn value<T: Clone>(
        &mut self,
        key: &'static str,
        cli: &Option<String>,
        file: Option<T>,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
        show: impl Fn(&T) -> String,
    ) -> Result<T> {
        let value = self.setting(key, cli, file, Some(default.clone()), parse, show)?;
        Ok(value.unwrap_or(default))
    }

    /// Where the value of `key` came from, for an error message about it.
    fn source_of(&self, key: &str) -> String {
        match self
            .settings
            .iter()
            .find(|s| s.key == key)
            .map(|s| &s.source)
        {
            Some(Source::File(path)) => format!("{key} in {}", path.display()),
            Some(Source::Env(name) | Source::Flag(name)) => name.clone(),
            _ => key.to_string(),
        }
    }
}

fn text(t: &str) -> Result<String, String> {
    Ok(t.to_string())
}

fn show_duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

fn show_lower<T: fmt::Debug>(v: &T) -> String {
    format!("{v:?}").to_lowercase()
}

fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err("expected \"text\" or \"json\"".into()),
    }
}

fn parse_on_lost(text: &str) -> Result<OnLost, String> {
    match text {
        "kill" => Ok(OnLost::Kill),
        "warn" => Ok(OnLost::Warn),
        _ => Err("expected \"kill\" or \"warn\"".into()),
    }
}

fn parse_endpoints(text: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    check_endpoints(&list)?;
    Ok(list)
}

fn check_endpoints(list: &[String]) -> Result<(), String> {
    if list.is_empty() {
        return Err("no etcd endpoint given".into());
    }
    list.iter().try_for_each(|e| check_endpoint(e))
}

fn parse_exit_code(text: &str) -> Result<u8, String> {
    text.parse()
        .map_err(|_| "expected an exit code from 0 to 255".into())
}

impl Config {
    pub fn resolve(cli: Cli) -> Result<Config> {
        let mode =
            match (cli.lock, cli.unlock, cli.status, cli.list, cli.show_config) {
                (true, ..) => Mode::Lock,
                (_, true, ..) => Mode::Unlock,
                (_, _, true, ..) => Mode::Status,
                (_, _, _, true, _) => Mode::List,
                (.., true) => Mode::ShowConfig,
                _ if cli.command.is_empty() => return Err(Error::Usage(
                    "nothing to do: give a command to run (distlock --lock-name=NAME -- CMD ...) \
                     or one of --lock, --unlock, --status, --list"
                        .into(),
                )),
                _ => Mode::Run(cli.command.clone()),
            };
        if !matches!(mode, Mode::Run(_)) && !cli.command.is_empty() {
            return Err(Error::Usage(format!(
                "a command ({}) cannot be combined with --lock, --unlock, --status, --list or --show-config",
                cli.command[0].to_string_lossy()
            )));
        }
        if cli.nowait && matches!(cli.given("timeout"), Some(Given::Flag(_))) {
            if let Ok(Wait::Upto(d)) = parse_timeout(cli.timeout.as_deref().unwrap_or_default()) {
                if !d.is_zero() {
                    return Err(Error::Usage(
                        "--nowait and a positive --timeout contradict each other: give one of them"
                            .into(),
                    ));
                }
            }
        }

        let (path, file) = load_file(&cli)?;
        let mut l = Layers {
            cli: &cli,
            file: path,
            settings: Vec::new(),
        };
        let lock_name = l.setting(
            "lockname",
            &cli.lock_name,
            file.lockname,
            None,
            text,
            String::clone,
        )?;
        let lock_name = match lock_name {
            Some(name) => Some(LockName::parse(&name).map_err(|e| {
                Error::Usage(format!("{e} (from {})", l.source_of("lockname")))
            })?),
            None if matches!(mode, Mode::List | Mode::ShowConfig) => None,
            None => {
                return Err(Error::Usage(
                    "no lock name: give --lock-name=NAME (or DISTLOCK_LOCKNAME, or lockname in the config file)"
                        .into(),
                ))
            }
        };
        let reason = l.value(
            "reason",
            &cli.reason,
            file.reason,
            String::new(),
            text,
            String::clone,
        )?;
        // etcd refuses requests over 1.5 MiB; a reason is a sentence, not a file.
        if reason.len() > MAX_REASON {
            return Err(Error::Usage(format!(
                "the reason (from {}) is {} bytes long; at most {MAX_REASON} are allowed",
                l.source_of("reason"),
                reason.len()
            )));
        }
        let show_wait = |w: &Wait| match w {
            Wait::Forever => "-1 (wait forever)".to_string(),
            Wait::Upto(d) => show_duration(d),
        };
        let wait = if cli.nowait {
            // --nowait overrides a timeout from the environment or the file.
            let nowait = Source::Flag("--nowait".into());
            l.record("timeout", Wait::Upto(Duration::ZERO), nowait, show_wait)
        } else {
            l.value(
                "timeout",
                &cli.timeout,
                file.timeout,
                Wait::Forever,
                parse_timeout,
                show_wait,
            )?
        };
        let default_endpoints = vec![DEFAULT_ENDPOINT.to_string()];
        let endpoints = l.value(
            "endpoints",
            &cli.endpoints,
            file.endpoints,
            default_endpoints,
            parse_endpoints,
            |v| v.join(","),
        )?;
        let prefix = l.value(
            "prefix",
            &cli.prefix,
            file.prefix,
            DEFAULT_PREFIX.to_string(),
            text,
            String::clone,
        )?;
        let ttl = l.value(
            "ttl",
            &cli.ttl,
            file.ttl,
            DEFAULT_TTL,
            parse_whole_seconds,
            show_duration,
        )?;
        let maxtime = l.value(
            "maxtime",
            &cli.maxtime,
            file.maxtime,
            DEFAULT_MAXTIME,
            parse_positive_duration,
            show_duration,
        )?;
        let hold_at_least = l.setting(
            "hold_at_least",
            &cli.hold_at_least,
            file.hold_at_least,
            None,
            parse_whole_seconds,
            show_duration,
        )?;
        let on_lost = l.value(
            "on_lost",
            &cli.on_lost,
            file.on_lost,
            OnLost::Kill,
            parse_on_lost,
            show_lower,
        )?;
        let default_grace = DEFAULT_KILL_GRACE.min(ttl / 4);
        let kill_grace = l.value(
            "kill_grace",
            &cli.kill_grace,
            file.kill_grace,
            default_grace,
            parse_positive_duration,
            show_duration,
        )?;
        if kill_grace > ttl / 2 {
            return Err(Error::Usage(format!(
                "the kill grace period ({}, from {}) must be at most half the TTL ({}) so that the \
                 command is gone before etcd can expire the lock",
                show_duration(&kill_grace),
                l.source_of("kill_grace"),
                show_duration(&ttl)
            )));
        }
        let conflict_exit_code = l.value(
            "conflict_exit_code",
            &cli.conflict_exit_code,
            file.conflict_exit_code,
            1,
            parse_exit_code,
            u8::to_string,
        )?;
        let output = l.value(
            "output",
            &cli.output,
            file.output,
            Format::Text,
            parse_format,
            show_lower,
        )?;
        let log_format = l.value(
            "log_format",
            &cli.log_format,
            file.log_format,
            Format::Text,
            parse_format,
            show_lower,
        )?;

        let cacert = l.setting(
            "cacert",
            &cli.cacert,
            file.cacert,
            None,
            text,
            String::clone,
        )?;
        let cert = l.setting("cert", &cli.cert, file.cert, None, text, String::clone)?;
        let key = match (&cli.key, etcdctl_style_key()) {
            (None, Some(path)) => {
                let source = Source::Env("DISTLOCK_KEY".into());
                Some(l.record("key", path, source, String::clone))
            }
            _ => l.setting("key", &cli.key, file.key, None, text, String::clone)?,
        };
        if cert.is_some() != key.is_some() {
            let (given, missing) = if cert.is_some() {
                ("cert", "key")
            } else {
                ("key", "cert")
            };
            return Err(Error::Usage(format!(
                "a client certificate needs both cert and key: {given} is set (by {}) but {missing} is not",
                l.source_of(given)
            )));
        }
        let user = l.setting("user", &cli.user, file.user, None, text, String::clone)?;
        let password_file = l.setting(
            "password_file",
            &cli.password_file,
            file.password_file,
            None,
            text,
            String::clone,
        )?;
        let password = read_password(password_file.as_deref())
            .map_err(|e| Error::Usage(format!("{e} (from {})", l.source_of("password_file"))))?;
        // Where the password file was named, or the variable.
        let source = match (&password, &password_file) {
            (None, _) => Source::Default,
            (Some(_), Some(_)) => l
                .settings
                .iter()
                .find(|s| s.key == "password_file")
                .map_or(Source::Default, |s| s.source.clone()),
            (Some(_), None) => Source::Env("DISTLOCK_PASSWORD".into()),
        };
        let shown = if password.is_some() {
            "(set, hidden)"
        } else {
            "(not set)"
        };
        l.record("password", shown.to_string(), source, String::clone);
        if password.is_some() && user.is_none() {
            return Err(Error::Usage(
                "a password was given but no --user (DISTLOCK_USER, user)".into(),
            ));
        }

        Ok(Config {
            // The file's `ttl` sets the lease TTL; only a --ttl or DISTLOCK_TTL given for this
            // run makes a --lock expire, so a fleet-wide file never silently turns locks that
            // should wait for a person into locks that vanish.
            lock_ttl: (mode == Mode::Lock && cli.ttl.is_some()).then_some(ttl),
            mode,
            lock_name,
            reason,
            wait,
            endpoints,
            prefix,
            ttl,
            maxtime,
            hold_at_least,
            on_lost,
            kill_grace,
            conflict_exit_code,
            output,
            log_format,
            security: Security {
                cacert: cacert.map(PathBuf::from),
                cert: cert.map(PathBuf::from),
                key: key.map(PathBuf::from),
                user,
                password,
            },
            quiet: cli.quiet > 0,
            verbose: cli.verbose,
            settings: l.settings,
        })
    }
}

/// The client key from DISTLOCK_KEY, etcdctl-style, unless distlock itself set that variable:
/// run mode gives the command DISTLOCK_KEY (the lock's key) together with
/// DISTLOCK_LOCK_NAME, and `eval "$(distlock --lock)"` sets it with DISTLOCK_FENCING_TOKEN. A
/// distlock started under either must not read the lock key as a TLS key file.
/// DISTLOCK_KEY_FILE says the same without that ambiguity.
fn etcdctl_style_key() -> Option<String> {
    let set_by_distlock = ["DISTLOCK_LOCK_NAME", "DISTLOCK_FENCING_TOKEN"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    std::env::var("DISTLOCK_KEY")
        .ok()
        .filter(|k| !k.is_empty() && !set_by_distlock)
}

/// The password from DISTLOCK_PASSWORD, else the first line of the password file: never from
/// the command line, where `ps` would show it.
fn read_password(file: Option<&str>) -> Result<Option<String>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::Usage(format!(
                "cannot read password file {file}: {}",
                io_reason(&e)
            ))
        })?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(std::env::var("DISTLOCK_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}

fn load_file(cli: &Cli) -> Result<(Option<PathBuf>, FileConfig)> {
    let (path, named) = match &cli.config {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            return Ok((None, FileConfig::default()))
        }
        Err(e) => {
            return Err(Error::Usage(format!(
                "cannot read config file {}: {}",
                path.display(),
                io_reason(&e)
            )))
        }
    };
    Ok((Some(path.clone()), parse_file(&path, &text)?))
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<FileConfig> {
    let bad = |what: String| Error::Usage(format!("config file {}: {what}", path.display()));
    let text =
        std::str::from_utf8(bytes).map_err(|_| bad("not a text file (invalid UTF-8)".into()))?;
    // An empty or all-comment file (the packaged default) is an empty configuration.
    let parsed: Option<FileConfig> = serde_yaml::from_str(text).map_err(|e| {
        let message = e.to_string();
        if message.contains(" line ") {
            bad(message)
        } else {
            bad(format!("line {}: {message}", line_of_error(text, &message)))
        }
    })?;
    Ok(parsed.unwrap_or_default())
}

/// serde_yaml gives some errors no position (a duplicate key, a key in a flow mapping, a
/// document that is not a mapping). Find the line of the key the message names, in backticks;
/// a duplicate is reported where it is repeated, so take the last line that has it.
fn line_of_error(text: &str, message: &str) -> usize {
    let key = message.split('`').nth(1).unwrap_or_default();
    let starts_with_key = |line: &str| {
        let line = line.trim_start().trim_start_matches(['{', '-', ' ']);
        let line = line.trim_start_matches(['"', '\'']);
        !key.is_empty() && line.starts_with(key)
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| starts_with_key(line))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(1)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ if e.raw_os_error() == Some(nix::libc::EISDIR) => "it is a directory".into(),
        _ => e.to_string(),
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| format!("endpoint {endpoint:?} is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    Ok(())
}

/// `30` (seconds) or a duration such as `90s`, `5m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).map_err(|_| {
            "expected whole seconds (30) or a duration (90s, 5m, 1h30m)".to_string()
        })?,
    };
    if d > LONGEST {
        return Err(format!(
            "{} is longer than etcd's longest lease ({}s)",
            humantime::format_duration(d),
            LONGEST.as_secs()
        ));
    }
    Ok(d)
}

/// TTLs and minimum holds: etcd leases count whole seconds.
fn parse_whole_seconds(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
        return Err(
            "expected a positive whole number of seconds (30) or a duration (90s, 5m)".into(),
        );
    }
    Ok(d)
}

/// Deadlines and grace periods may be shorter than a second (`500ms`).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("expected a positive duration (500ms, 5s)".into());
    }
    Ok(d)
}

/// `-1` waits forever, `0` is `--nowait`, anything else is a longest wait.
pub fn parse_timeout(text: &str) -> Result<Wait, String> {
    if text.trim() == "-1" {
        return Ok(Wait::Forever);
    }
    parse_duration(text)
        .map(Wait::Upto)
        .map_err(|e| format!("{e}, or -1 to wait forever"))
}

/// Accepts a YAML integer (seconds) or a string duration for the file's duration keys.
struct DurationVisitor {
    parse: fn(&str) -> Result<Wait, String>,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Wait;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("whole seconds (30) or a duration string (\"90s\", \"5m\")")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Wait, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Wait, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Wait, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

fn endpoints_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    check_endpoints(&list).map_err(de::Error::custom)?;
    Ok(Some(list))
}

fn timeout_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Wait>, D::Error> {
    d.deserialize_any(DurationVisitor {
        parse: parse_timeout,
    })
    .map(Some)
}

fn seconds_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let parse = |t: &str| parse_whole_seconds(t).map(Wait::Upto);
    match d.deserialize_any(DurationVisitor { parse })? {
        Wait::Upto(duration) => Ok(Some(duration)),
        Wait::Forever => Err(de::Error::custom("expected a positive duration")),
    }
}

fn duration_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let parse = |t: &str| parse_positive_duration(t).map(Wait::Upto);
    match d.deserialize_any(DurationVisitor { parse })? {
        Wait::Upto(duration) => Ok(Some(duration)),
        Wait::Forever => Err(de::Error::custom("expected a positive duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names() {
        for good in [
            "percona_prod",
            "a",
            "nightly-backup.v2",
            "ünïcode",
            &"x".repeat(255),
        ] {
            assert!(LockName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "tab\there",
            "nl\n",
            "bell\u{7}",
            &"x".repeat(256),
        ] {
            assert!(LockName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5").is_err());
        assert_eq!(parse_timeout("-1"), Ok(Wait::Forever));
        assert_eq!(parse_timeout("0"), Ok(Wait::Upto(Duration::ZERO)));
        assert!(parse_whole_seconds("0").is_err());
        assert!(parse_whole_seconds("1500ms").is_err());
        assert_eq!(
            parse_positive_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn yaml_errors_name_line_and_key() {
        let path = Path::new("/etc/x.yaml");
        let err = parse_file(path, b"lockname: a\nlcokname: b\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/etc/x.yaml") && text.contains("lcokname") && text.contains("line 2"),
            "{text}"
        );
        let err = parse_file(path, b"lockname: a\ntimeout: soon\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("timeout") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn yaml_errors_without_a_position_still_name_a_line() {
        let path = Path::new("x.yaml");
        let err = parse_file(path, b"reason: a\nttl: 5\nttl: 6\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = parse_file(path, b"just a sentence").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_configs() {
        let path = Path::new("x.yaml");
        assert!(parse_file(path, b"").is_ok());
        assert!(parse_file(path, b"# lockname: x\n").is_ok());
        let file = parse_file(path, b"timeout: 90s\nmaxtime: 3\ninternallock: true\n").unwrap();
        assert_eq!(file.timeout, Some(Wait::Upto(Duration::from_secs(90))));
        assert_eq!(file.maxtime, Some(Duration::from_secs(3)));
    }
}
