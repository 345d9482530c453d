//! The resolved configuration the rest of distlock runs on: built-in defaults, then the YAML
//! file, then `DISTLOCK_*` variables, then flags, validated into typed values once, here.

use crate::cli::Cli;
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

/// What distlock was asked to do.
#[derive(Debug, PartialEq)]
pub enum Mode {
    /// Run this command (program and arguments) under the lock.
    Run(Vec<OsString>),
    Lock,
    Unlock,
    Status,
    List,
}

/// How long to wait for a busy lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    Forever,
    /// `Duration::ZERO` is `--nowait`.
    Upto(Duration),
}

/// What to do when the lock is lost while the command runs.
#[derive(Debug, Clone, Copy, PartialEq)]
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

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Present for every mode but `--list`.
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
    pub quiet: bool,
    pub verbose: u8,
}

/// The YAML file. Keys are the Go tool's, plus snake_case names for newer options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    lockname: Option<String>,
    reason: Option<String>,
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
    on_lost: Option<String>,
    #[serde(default, deserialize_with = "duration_value")]
    kill_grace: Option<Duration>,
    conflict_exit_code: Option<u8>,
    /// The Go tool's internal lock switch; accepted so old files keep loading, then ignored.
    #[allow(dead_code)]
    internallock: Option<serde_yaml::Value>,
}

impl Config {
    pub fn resolve(cli: Cli) -> Result<Config> {
        let file = load_file(&cli)?;
        let origin = |id: &str| cli.origin(id);

        let mode =
            match (cli.lock, cli.unlock, cli.status, cli.list) {
                (true, ..) => Mode::Lock,
                (_, true, ..) => Mode::Unlock,
                (_, _, true, _) => Mode::Status,
                (.., true) => Mode::List,
                _ if cli.command.is_empty() => return Err(Error::Usage(
                    "nothing to do: give a command to run (distlock --lock-name=NAME -- CMD ...) \
                     or one of --lock, --unlock, --status, --list"
                        .into(),
                )),
                _ => Mode::Run(cli.command.clone()),
            };
        if mode != Mode::Run(cli.command.clone()) && !cli.command.is_empty() {
            return Err(Error::Usage(format!(
                "a command ({}) cannot be combined with --lock, --unlock, --status or --list",
                cli.command[0].to_string_lossy()
            )));
        }

        let lock_name = match cli.lock_name.clone().or(file.lockname) {
            Some(name) => Some(LockName::parse(&name).map_err(|e| {
                Error::Usage(format!("{e} (from {})", origin_or_file(&cli, "lock_name")))
            })?),
            None if mode == Mode::List => None,
            None => {
                return Err(Error::Usage(
                    "no lock name: give --lock-name=NAME (or DISTLOCK_LOCKNAME, or lockname in the config file)"
                        .into(),
                ))
            }
        };

        let timeout = match &cli.timeout {
            Some(text) => Some(
                parse_timeout(text)
                    .map_err(|e| Error::Usage(format!("{}={text:?}: {e}", origin("timeout"))))?,
            ),
            None => file.timeout,
        };
        let timeout_on_command_line = cli.timeout.is_some() && !from_env(&cli, "timeout");
        let wait = if cli.nowait {
            if timeout_on_command_line && matches!(timeout, Some(Wait::Upto(d)) if !d.is_zero()) {
                return Err(Error::Usage(
                    "--nowait and a positive --timeout contradict each other: give one of them"
                        .into(),
                ));
            }
            Wait::Upto(Duration::ZERO)
        } else {
            timeout.unwrap_or(Wait::Forever)
        };

        let endpoints = match &cli.endpoints {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(String::from)
                .collect(),
            None => file
                .endpoints
                .unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_string()]),
        };
        if endpoints.is_empty() {
            return Err(Error::Usage(format!(
                "no etcd endpoint given in {}",
                origin_or_file(&cli, "endpoints")
            )));
        }
        for endpoint in &endpoints {
            check_endpoint(endpoint).map_err(|e| {
                Error::Usage(format!("{e} (from {})", origin_or_file(&cli, "endpoints")))
            })?;
        }

        let flag_duration = |id: &str,
                             text: &Option<String>,
                             parse: fn(&str) -> Result<Duration, String>|
         -> Result<Option<Duration>> {
            text.as_deref()
                .map(|t| parse(t).map_err(|e| Error::Usage(format!("{}={t:?}: {e}", origin(id)))))
                .transpose()
        };
        let cli_ttl = flag_duration("ttl", &cli.ttl, parse_whole_seconds)?;
        let ttl = cli_ttl.or(file.ttl).unwrap_or(DEFAULT_TTL);
        let maxtime = flag_duration("maxtime", &cli.maxtime, parse_positive_duration)?
            .or(file.maxtime)
            .unwrap_or(DEFAULT_MAXTIME);
        let hold_at_least =
            flag_duration("hold_at_least", &cli.hold_at_least, parse_whole_seconds)?
                .or(file.hold_at_least);
        let kill_grace = flag_duration("kill_grace", &cli.kill_grace, parse_positive_duration)?
            .or(file.kill_grace)
            .unwrap_or_else(|| DEFAULT_KILL_GRACE.min(ttl / 4));
        if kill_grace > ttl / 2 {
            return Err(Error::Usage(format!(
                "the kill grace period ({}) must be at most half the TTL ({}) so that the command \
                 is gone before etcd can expire the lock",
                humantime::format_duration(kill_grace),
                humantime::format_duration(ttl)
            )));
        }

        let on_lost = match cli.on_lost.as_deref().or(file.on_lost.as_deref()) {
            None | Some("kill") => OnLost::Kill,
            Some("warn") => OnLost::Warn,
            Some(other) => {
                return Err(Error::Usage(format!(
                    "{}={other:?}: expected \"kill\" or \"warn\"",
                    origin_or_file(&cli, "on_lost")
                )))
            }
        };

        let conflict_exit_code = match &cli.conflict_exit_code {
            Some(text) => text.parse::<u8>().map_err(|_| {
                Error::Usage(format!(
                    "{}={text:?}: expected an exit code from 0 to 255",
                    origin("conflict_exit_code")
                ))
            })?,
            None => file.conflict_exit_code.unwrap_or(1),
        };

        Ok(Config {
            // The file's `ttl` sets the lease TTL; only a --ttl or DISTLOCK_TTL given for this
            // run makes a --lock expire, so a fleet-wide file never silently turns locks that
            // should wait for a person into locks that vanish.
            lock_ttl: if mode == Mode::Lock { cli_ttl } else { None },
            mode,
            lock_name,
            reason: cli.reason.clone().or(file.reason).unwrap_or_default(),
            wait,
            endpoints,
            prefix: cli
                .prefix
                .clone()
                .or(file.prefix)
                .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
            ttl,
            maxtime,
            hold_at_least,
            on_lost,
            kill_grace,
            conflict_exit_code,
            quiet: cli.quiet > 0,
            verbose: cli.verbose,
        })
    }
}

fn from_env(cli: &Cli, id: &str) -> bool {
    cli.from_env.iter().any(|e| e == id)
}

/// Where a value that may also come from the file was given, for error messages.
fn origin_or_file(cli: &Cli, id: &str) -> String {
    let given = match id {
        "lock_name" => cli.lock_name.is_some(),
        "endpoints" => cli.endpoints.is_some(),
        "on_lost" => cli.on_lost.is_some(),
        _ => true,
    };
    if given {
        cli.origin(id)
    } else {
        "the config file".to_string()
    }
}

fn load_file(cli: &Cli) -> Result<FileConfig> {
    let (path, named) = match &cli.config {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            return Ok(FileConfig::default())
        }
        Err(e) => {
            return Err(Error::Usage(format!(
                "cannot read config file {}: {}",
                path.display(),
                io_reason(&e)
            )))
        }
    };
    parse_file(&path, &text)
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<FileConfig> {
    let bad = |what: String| Error::Usage(format!("config file {}: {what}", path.display()));
    let text =
        std::str::from_utf8(bytes).map_err(|_| bad("not a text file (invalid UTF-8)".into()))?;
    // An empty or all-comment file (the packaged default) is an empty configuration.
    let parsed: Option<FileConfig> = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    Ok(parsed.unwrap_or_default())
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
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("endpoint {endpoint:?} has no host"));
    }
    Ok(())
}

/// `30` (seconds) or a duration such as `90s`, `5m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|_| "expected whole seconds (30) or a duration (90s, 5m, 1h30m)".to_string())
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
    fn empty_and_comment_only_files_are_empty_configs() {
        let path = Path::new("x.yaml");
        assert!(parse_file(path, b"").is_ok());
        assert!(parse_file(path, b"# lockname: x\n").is_ok());
        let file = parse_file(path, b"timeout: 90s\nmaxtime: 3\ninternallock: true\n").unwrap();
        assert_eq!(file.timeout, Some(Wait::Upto(Duration::from_secs(90))));
        assert_eq!(file.maxtime, Some(Duration::from_secs(3)));
    }
}
