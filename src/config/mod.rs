//! The resolved configuration the rest of distlock runs on: built-in defaults, then the YAML
//! file, then `DISTLOCK_*` variables, then flags, validated into typed values once, here.
//!
//! The settings, with their types and parsers, are the table in `crate::settings`; here `file`
//! reads the YAML file, `layers` layers each setting and `mode` chooses what to do, and this
//! module puts the settings together into a `Config` and checks the rules that tie settings
//! to each other.

#[cfg(test)]
mod docs;
mod file;
mod layers;
mod mode;

use crate::cli::Cli;
use crate::etcd::{self, Security};
use crate::exit::{Failure, Result};
use crate::settings::values::{Show, MAX_REASON};
use crate::settings::{self, KILL_GRACE_DEFAULT_DIVISOR, KILL_GRACE_MAX_DIVISOR};
use layers::Layers;
pub use mode::Mode;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
// The modes and the output take the value types from here, with `Config`.
pub use settings::values::{Expiry, Format, LockName, OnLost, Wait};

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
    /// The value typed, for `--output=json`; `null` when unset.
    pub json: serde_json::Value,
    pub source: Source,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub reason: String,
    /// How many may hold the lock at once (1: a mutex).
    pub max_holders: u32,
    /// Hold it shared with other shared holders (readers/writer).
    pub shared: bool,
    pub wait: Wait,
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// Lease TTL while waiting and while the command runs.
    pub ttl: Duration,
    /// With `--lock`: the lock expires after this instead of never.
    pub lock_ttl: Option<Duration>,
    pub maxtime: Duration,
    pub hold_at_least: Option<Duration>,
    /// `--min-interval`: at most one successful run per this, fleet-wide.
    pub min_interval: Option<Duration>,
    /// Stop the command after this long (exit 124).
    pub max_runtime: Option<Duration>,
    pub on_lost: OnLost,
    pub kill_grace: Duration,
    /// How many history entries etcd keeps per lock (0: none).
    pub history_size: u32,
    pub conflict_exit_code: u8,
    pub output: Format,
    pub log_format: Format,
    pub security: Security,
    pub quiet: bool,
    pub verbose: u8,
    /// Every setting with its source, for `--show-config`.
    pub settings: Vec<Setting>,
}

impl Config {
    /// What connecting to etcd needs of this configuration.
    pub fn etcd(&self) -> etcd::Options<'_> {
        etcd::Options {
            endpoints: &self.endpoints,
            maxtime: self.maxtime,
            ttl: self.ttl,
            prefix: &self.prefix,
            security: &self.security,
        }
    }

    pub fn resolve(cli: Cli) -> Result<Config> {
        let file = file::File::load(&cli)?;
        let mut l = Layers::new(&cli, file);
        let mode = mode::choose(&cli, l.get(&settings::LOCK_NAME)?)?;
        mode::check_run_flags(&cli, &mode)?;
        let (max_holders, shared) = sharing(&mut l)?;
        let reason = l.value(&settings::REASON)?;
        if reason.len() > MAX_REASON {
            return Err(Failure::Usage(format!(
                "the reason (from {}) is {} bytes long; at most {MAX_REASON} are allowed",
                l.source_of(&settings::REASON.spec),
                reason.len()
            )));
        }
        let wait = wait(&cli, &mut l)?;
        let prefix = l.value(&settings::PREFIX)?;
        let ttl = l.value(&settings::TTL)?;
        let maxtime = l.value(&settings::MAXTIME)?;
        let hold_at_least = l.get(&settings::HOLD_AT_LEAST)?;
        let min_interval = l.get(&settings::MIN_INTERVAL)?;
        let max_runtime = l.get(&settings::MAX_RUNTIME)?;
        let on_lost = l.value(&settings::ON_LOST)?;
        let kill_grace = kill_grace(&mut l, ttl)?;
        let history_size = l.value(&settings::HISTORY_SIZE)?;
        let conflict_exit_code = l.value(&settings::CONFLICT_EXIT_CODE)?;
        let output = l.value(&settings::OUTPUT)?;
        // Only a list of every lock is a set of metrics; other modes print nothing, or text
        // and JSON.
        if output == Format::Prometheus && !matches!(mode, Mode::List | Mode::Run(..)) {
            return Err(Failure::Usage(format!(
                "{}=prometheus is for --list (without --follow); {} prints text or json",
                l.source_of(&settings::OUTPUT.spec),
                mode.flag()
            )));
        }
        let log_format = l.value(&settings::LOG_FORMAT)?;
        let security = security(&cli, &mut l)?;
        let endpoints = endpoints(&mut l, &security)?;

        Ok(Config {
            // The file's `ttl` sets the lease TTL; only a --ttl or DISTLOCK_TTL given for this
            // run makes a --lock expire, so a fleet-wide file never silently turns locks that
            // should wait for a person into locks that vanish.
            lock_ttl: (matches!(mode, Mode::Lock(_))
                && cli.value(settings::TTL.spec.name).is_some())
            .then_some(ttl),
            mode,
            reason,
            max_holders,
            shared,
            wait,
            endpoints,
            prefix,
            ttl,
            maxtime,
            hold_at_least,
            min_interval,
            max_runtime,
            on_lost,
            kill_grace,
            history_size,
            conflict_exit_code,
            output,
            log_format,
            security,
            quiet: cli.quiet > 0,
            verbose: cli.verbose,
            settings: l.into_settings(),
        })
    }
}

/// `--max-holders` and `--shared`: a semaphore of N, or readers/writer, not both (a shared
/// holder runs beside any number of others).
fn sharing(l: &mut Layers) -> Result<(u32, bool)> {
    let max_holders = l.value(&settings::MAX_HOLDERS)?;
    let shared = l.value(&settings::SHARED)?;
    if shared && max_holders != 1 {
        return Err(Failure::Usage(format!(
            "{} and {}={max_holders} cannot be combined: a shared lock already lets any \
             number of shared holders in",
            l.source_of(&settings::SHARED.spec),
            l.source_of(&settings::MAX_HOLDERS.spec)
        )));
    }
    Ok((max_holders, shared))
}

/// `--nowait` overrides a timeout from the environment or the file; a positive `--timeout` on
/// the command line with it is a contradiction.
fn wait(cli: &Cli, l: &mut Layers) -> Result<Wait> {
    let def = &settings::TIMEOUT;
    let timeout = l.layer(def, Layers::default(def)?)?;
    let (wait, source) = match timeout {
        Some((Wait::Upto(d), Source::Flag(_))) if cli.nowait && !d.is_zero() => {
            return Err(Failure::Usage(
                "--nowait and a positive --timeout contradict each other: give one of them".into(),
            ))
        }
        _ if cli.nowait => (
            Wait::Upto(Duration::ZERO),
            Source::Flag(format!("--{}", settings::NOWAIT.name)),
        ),
        Some(layered) => layered,
        None => (Wait::Forever, Source::Default),
    };
    Ok(l.record(&def.spec, wait, source))
}

/// Endpoints without a scheme (`127.0.0.1:2379`, as etcdctl takes them) are http://, or
/// https:// when a TLS file (cacert, cert, key) is given, as etcdctl decides.
fn endpoints(l: &mut Layers, security: &Security) -> Result<Vec<String>> {
    let def = &settings::ENDPOINTS;
    let (list, source) = l
        .layer(def, Layers::default(def)?)?
        .ok_or_else(|| Failure::Usage(format!("{} has no built-in default", def.spec.name)))?;
    let tls = security.cacert.is_some() || security.cert.is_some() || security.key.is_some();
    let scheme = if tls { "https://" } else { "http://" };
    let list = list
        .into_iter()
        .map(|e| match e.contains("://") {
            true => e,
            false => format!("{scheme}{e}"),
        })
        .collect();
    Ok(l.record(&def.spec, list, source))
}

/// By default at most TTL/4, and never over TTL/2, so that the command is gone before etcd can
/// expire the lock.
fn kill_grace(l: &mut Layers, ttl: Duration) -> Result<Duration> {
    let def = &settings::KILL_GRACE;
    let default = Layers::default(def)?.map(|d| d.min(ttl / KILL_GRACE_DEFAULT_DIVISOR));
    let kill_grace = l.get_or(def, default)?.unwrap_or_default();
    if kill_grace > ttl / KILL_GRACE_MAX_DIVISOR {
        return Err(Failure::Usage(format!(
            "the kill grace period ({}, from {}) must be at most half the TTL ({}) so that the \
             command is gone before etcd can expire the lock",
            kill_grace.show(),
            l.source_of(&def.spec),
            ttl.show()
        )));
    }
    Ok(kill_grace)
}

fn security(cli: &Cli, l: &mut Layers) -> Result<Security> {
    let cacert = l.get(&settings::CACERT)?;
    let cert = l.get(&settings::CERT)?;
    let key = match (cli.value(settings::KEY.spec.name), etcdctl_style_key()) {
        (None, Some(path)) => {
            let source = Source::Env("DISTLOCK_KEY".into());
            Some(l.record(&settings::KEY.spec, path, source))
        }
        _ => l.get(&settings::KEY)?,
    };
    if cert.is_some() != key.is_some() {
        let (given, missing) = if cert.is_some() {
            (&settings::CERT.spec, &settings::KEY.spec)
        } else {
            (&settings::KEY.spec, &settings::CERT.spec)
        };
        return Err(Failure::Usage(format!(
            "a client certificate needs both cert and key: {} is set (by {}) but {} is not",
            given.name,
            l.source_of(given),
            missing.name
        )));
    }
    let user = l.get(&settings::USER)?;
    let password_file = l.get(&settings::PASSWORD_FILE)?;
    let password = read_password(password_file.as_deref()).map_err(|e| {
        Failure::Usage(format!(
            "{e} (from {})",
            l.source_of(&settings::PASSWORD_FILE.spec)
        ))
    })?;
    // Where the password file was named, or the variable.
    let source = match (&password, &password_file) {
        (None, _) => Source::Default,
        (Some(_), Some(_)) => l
            .setting(&settings::PASSWORD_FILE.spec)
            .map_or(Source::Default, |s| s.source.clone()),
        (Some(_), None) => Source::Env(settings::PASSWORD.env.unwrap_or_default().into()),
    };
    let shown = if password.is_some() {
        "(set, hidden)"
    } else {
        "(not set)"
    };
    let json = match password {
        Some(_) => shown.into(),
        None => serde_json::Value::Null,
    };
    l.show(&settings::PASSWORD, shown.into(), json, source);
    if password.is_some() && user.is_none() {
        return Err(Failure::Usage(
            "a password was given but no --user (DISTLOCK_USER, user)".into(),
        ));
    }
    Ok(Security {
        cacert: cacert.map(PathBuf::from),
        cert: cert.map(PathBuf::from),
        key: key.map(PathBuf::from),
        user,
        password,
    })
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
            Failure::Usage(format!(
                "cannot read password file {file}: {}",
                file::io_reason(&e)
            ))
        })?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(settings::PASSWORD
        .env
        .and_then(|var| std::env::var(var).ok())
        .filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str]) -> Result<Config> {
        let mut words = vec!["distlock", "--config=/dev/null"];
        words.extend(args);
        let cli = Cli::parse_from_args(words.iter().map(Into::into).collect())
            .map_err(|e| Failure::Usage(e.to_string()))?;
        Config::resolve(cli)
    }

    #[test]
    fn the_built_in_defaults_parse_and_apply() {
        let config = resolve(&["--show-config"]).unwrap();
        assert_eq!(config.wait, Wait::Forever);
        assert_eq!(config.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(config.prefix, "/distlock/");
        assert_eq!(config.ttl, Duration::from_secs(10));
        assert_eq!(config.maxtime, Duration::from_secs(5));
        assert_eq!(config.kill_grace, Duration::from_secs(2));
        assert_eq!(config.conflict_exit_code, 1);
        assert_eq!(config.on_lost, OnLost::Kill);
        assert_eq!(config.output, Format::Text);
        let shown: Vec<&str> = config.settings.iter().map(|s| s.key).collect();
        let table: Vec<&str> = settings::yaml_keys().map(|d| d.name).collect();
        assert_eq!(
            shown[..table.len()],
            table,
            "--show-config follows the table"
        );
    }

    #[test]
    fn kill_grace_is_at_most_a_quarter_of_the_ttl_by_default_and_half_when_given() {
        let config = resolve(&["--show-config", "--ttl=4"]).unwrap();
        assert_eq!(config.kill_grace, Duration::from_secs(1));
        let config = resolve(&["--show-config", "--ttl=4", "--kill-grace=2s"]).unwrap();
        assert_eq!(config.kill_grace, Duration::from_secs(2));
        let err = resolve(&["--show-config", "--ttl=4", "--kill-grace=3s"]).unwrap_err();
        assert!(err.to_string().contains("--kill-grace"), "{err}");
    }

    #[test]
    fn the_modes_settings_resolve_and_exclude_each_other() {
        let config = resolve(&["--show-config"]).unwrap();
        assert_eq!((config.max_holders, config.shared), (1, false));
        assert_eq!(config.max_runtime, None);
        let config = resolve(&[
            "--lock-name=x",
            "--max-holders=3",
            "--max-runtime=90s",
            "true",
        ])
        .unwrap();
        assert_eq!(config.max_holders, 3);
        assert_eq!(config.max_runtime, Some(Duration::from_secs(90)));
        let err = resolve(&["--lock-name=x", "--max-holders=3", "--shared", "true"]).unwrap_err();
        assert!(err.to_string().contains("--shared"), "{err}");
        let err = resolve(&["--lock-name=x", "--extend=1h", "true"]).unwrap_err();
        assert!(err.to_string().contains("--extend"), "{err}");
        let config = resolve(&["--lock-name=x", "--extend=never"]).unwrap();
        assert_eq!(
            config.mode,
            Mode::Extend(LockName::parse("x").unwrap(), Expiry::Never, None)
        );
        let config = resolve(&["--lock-name=x", "--extend=1h", "--holder=1f"]).unwrap();
        assert_eq!(
            config.mode,
            Mode::Extend(
                LockName::parse("x").unwrap(),
                Expiry::After(Duration::from_secs(3600)),
                Some("1f".into())
            )
        );
        let config = resolve(&["--lock-name=x", "--unlock", "--holder=1f"]).unwrap();
        assert_eq!(
            config.mode,
            Mode::Unlock(LockName::parse("x").unwrap(), Some("1f".into()))
        );
        for bad in [
            &["--lock-name=x", "--holder=1f", "true"][..],
            &["--lock-name=x", "--status", "--holder=1f"],
            &["--lock-name=x", "--unlock=1f", "--holder=2f"],
        ] {
            let err = resolve(bad).unwrap_err();
            assert!(err.to_string().contains("--holder"), "{bad:?}: {err}");
        }
        let config = resolve(&["--lock-name=x", "--unlock"]).unwrap();
        assert_eq!(
            config.mode,
            Mode::Unlock(LockName::parse("x").unwrap(), None)
        );
        let config = resolve(&["--lock-name=x", "--unlock=/distlock/x/1f"]).unwrap();
        assert_eq!(
            config.mode,
            Mode::Unlock(LockName::parse("x").unwrap(), Some("/distlock/x/1f".into()))
        );
        assert!(resolve(&["--lock-name=x", "--extend=1h", "--lock"]).is_err());
        for flag in [
            "--max-runtime=1h",
            "--hold-at-least=5m",
            "--min-interval=1h",
            "--on-lost=warn",
            "--kill-grace=1s",
        ] {
            let err = resolve(&["--lock-name=x", "--lock", flag]).unwrap_err();
            assert!(err.to_string().contains("--ttl"), "{flag}: {err}");
            let err = resolve(&["--lock-name=x", "--status", flag]).unwrap_err();
            assert!(
                err.to_string().contains("--status runs none"),
                "{flag}: {err}"
            );
            assert!(resolve(&["--lock-name=x", flag, "true"]).is_ok(), "{flag}");
        }
    }

    #[test]
    fn endpoints_without_a_scheme_are_http_or_with_tls_files_https() {
        let config = resolve(&["--show-config", "--endpoints=127.0.0.1:2379,http://b:1"]).unwrap();
        assert_eq!(config.endpoints, ["http://127.0.0.1:2379", "http://b:1"]);
        let config = resolve(&[
            "--show-config",
            "--endpoints=e1:2379,http://b:1",
            "--cacert=/etc/ca.pem",
        ])
        .unwrap();
        assert_eq!(config.endpoints, ["https://e1:2379", "http://b:1"]);
    }

    #[test]
    fn nowait_overrides_a_timeout_but_contradicts_a_positive_timeout_flag() {
        let config = resolve(&["--show-config", "--nowait", "--timeout=0"]).unwrap();
        assert_eq!(config.wait, Wait::Upto(Duration::ZERO));
        let err = resolve(&["--show-config", "--nowait", "--timeout=5"]).unwrap_err();
        assert!(err.to_string().contains("--nowait"), "{err}");
    }
}

/// The binary's settings come in layers, settings -> cli -> config: each imports only those
/// below it, so that the table can be read, and changed, without the code that uses it.
#[cfg(test)]
mod layering {
    use std::path::Path;

    /// The files of `layer` (a file, or a directory's files) under src/, as text.
    fn sources(layer: &str) -> Vec<(String, String)> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(layer);
        let files = match std::fs::read_dir(&path) {
            Ok(dir) => dir.map(|entry| entry.unwrap().path()).collect(),
            Err(_) => vec![path],
        };
        files
            .into_iter()
            // The tests that make the README's tables may use anything.
            .filter(|file| !file.ends_with("config/docs.rs"))
            .map(|file| {
                let text = std::fs::read_to_string(&file).unwrap();
                (file.display().to_string(), text)
            })
            .collect()
    }

    #[test]
    fn no_settings_layer_names_a_module_above_it() {
        let layers: [(&str, &[&str]); 3] = [
            ("settings", &["cli", "config", "app", "output", "manual"]),
            ("cli.rs", &["config", "app", "output", "manual"]),
            ("config", &["app", "output", "manual"]),
        ];
        for (layer, above) in layers {
            let files = sources(layer);
            assert!(!files.is_empty(), "{layer}");
            for (file, text) in files {
                for module in above {
                    let path = format!("crate::{module}");
                    let named = text.match_indices(&path).any(|(at, _)| {
                        !text[at + path.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    assert!(!named, "{file} names {path}, a layer above its own");
                }
            }
        }
    }
}
