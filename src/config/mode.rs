//! Which mode distlock runs in (run a command, `--lock`, `--unlock`, `--extend`, `--status`,
//! `--list`, `--show-config`), chosen from the command line, with the lock name each needs and
//! the combinations that make no sense refused.

use crate::cli::{Cli, Given};
use crate::exit::{Failure, Result};
use crate::settings::{self, values::Expiry, values::LockName, OptionSpec};
use std::ffi::OsString;

/// What distlock was asked to do, with the lock it needs (so code past this point never
/// checks that a name was given).
#[derive(Debug, PartialEq)]
pub enum Mode {
    /// Run this command (program and arguments) under the lock.
    Run(LockName, Vec<OsString>),
    Lock(LockName),
    /// Release the holder, or the one with this key when several hold the lock.
    Unlock(LockName, Option<String>),
    /// Make the lock taken with `--lock` expire from now on as this says; the holder with this
    /// key when several hold the lock.
    Extend(LockName, Expiry, Option<String>),
    Status(LockName),
    History(LockName),
    List,
    /// `--list --follow` (every lock) or `--status --follow` (this one).
    Follow(Option<LockName>),
    ShowConfig,
}

/// An option as messages spell it: `--lock`.
fn long(spec: &OptionSpec) -> String {
    format!("--{}", spec.flag.unwrap_or(spec.name))
}

/// The modes other than `--show-config`, as messages list them: `--lock, --unlock, ...`.
fn modes() -> String {
    [
        &settings::LOCK,
        &settings::UNLOCK,
        &settings::EXTEND.spec,
        &settings::STATUS,
        &settings::HISTORY,
        &settings::LIST,
    ]
    .map(long)
    .join(", ")
}

/// Which holder `--unlock` or `--extend` acts on: `--holder=KEY`, or `--unlock=KEY`.
fn holder(cli: &Cli, extend: bool) -> Result<Option<String>> {
    let (holder, unlock) = (long(&settings::HOLDER), long(&settings::UNLOCK));
    match (&cli.holder, &cli.unlock_key) {
        (Some(_), _) if !(cli.unlock || extend) => Err(Failure::Usage(format!(
            "{holder} names the holder {unlock} or {} acts on; give one of them",
            long(&settings::EXTEND.spec)
        ))),
        (Some(a), Some(b)) if a != b => Err(Failure::Usage(format!(
            "{unlock}={b:?} and {holder}={a:?} name different holders: give one of them"
        ))),
        (Some(key), _) | (None, Some(key)) => Ok(Some(key.clone())),
        (None, None) => Ok(None),
    }
}

pub(super) fn choose(cli: &Cli, name: Option<LockName>) -> Result<Mode> {
    let extend = cli
        .extend
        .as_deref()
        .map(|text| {
            (settings::EXTEND.parse)(text).map_err(|e| {
                Failure::Usage(format!("{}={text:?}: {e}", long(&settings::EXTEND.spec)))
            })
        })
        .transpose()?;
    let which = holder(cli, extend.is_some())?;
    if !cli.command.is_empty()
        && (cli.lock
            || cli.unlock
            || extend.is_some()
            || cli.status
            || cli.history
            || cli.list
            || cli.show_config)
    {
        return Err(Failure::Usage(format!(
            "a command ({}) cannot be combined with {} or {}",
            cli.command[0].to_string_lossy(),
            modes(),
            long(&settings::SHOW_CONFIG)
        )));
    }
    if cli.follow && !(cli.list || cli.status) {
        return Err(Failure::Usage(format!(
            "{} goes with {} or {}",
            long(&settings::FOLLOW),
            long(&settings::LIST),
            long(&settings::STATUS)
        )));
    }
    if cli.list {
        return Ok(match cli.follow {
            true => Mode::Follow(None),
            false => Mode::List,
        });
    }
    if cli.show_config {
        return Ok(Mode::ShowConfig);
    }
    if !(cli.lock || cli.unlock || cli.status || cli.history || extend.is_some())
        && cli.command.is_empty()
    {
        return Err(Failure::Usage(format!(
            "nothing to do: give a command to run (distlock --lock-name=NAME -- CMD ...) \
             or one of {}",
            modes()
        )));
    }
    let name = name.ok_or_else(|| {
        Failure::Usage(
            "no lock name: give --lock-name=NAME (or DISTLOCK_LOCKNAME, or lockname in the config file)"
                .into(),
        )
    })?;
    Ok(if cli.lock {
        Mode::Lock(name)
    } else if cli.unlock {
        Mode::Unlock(name, which)
    } else if let Some(expiry) = extend {
        Mode::Extend(name, expiry, which)
    } else if cli.status && cli.follow {
        Mode::Follow(Some(name))
    } else if cli.status {
        Mode::Status(name)
    } else if cli.history {
        Mode::History(name)
    } else {
        Mode::Run(name, cli.command.clone())
    })
}

/// Options that shape only how a command runs (`run_only` in the settings table), given on the
/// command line to a mode that runs none: a mistake worth stopping for (`--lock --max-runtime=1h` does not make the lock expire
/// in an hour; `--ttl` does). From the file or the environment they are fleet-wide defaults for
/// run mode, and other modes leave them alone.
pub(super) fn check_run_flags(cli: &Cli, mode: &Mode) -> Result<()> {
    let (Mode::Lock(_)
    | Mode::Unlock(..)
    | Mode::Extend(..)
    | Mode::Status(_)
    | Mode::History(_)
    | Mode::List
    | Mode::Follow(_)) = mode
    else {
        return Ok(());
    };
    for spec in settings::OPTIONS.iter().filter(|s| s.run_only) {
        if let Some((_, Given::Flag(flag))) = cli.value(spec.name) {
            let hint = match mode {
                Mode::Lock(_) => format!(
                    "; to make a {} expire, give {}",
                    mode.flag(),
                    long(&settings::TTL.spec)
                ),
                _ => String::new(),
            };
            return Err(Failure::Usage(format!(
                "{flag} applies to running a command, and {} runs none{hint}",
                mode.flag()
            )));
        }
    }
    Ok(())
}

impl Mode {
    /// The option that chose this mode; `None` for running a command.
    fn spec(&self) -> Option<&'static OptionSpec> {
        match self {
            Mode::Run(..) => None,
            Mode::Lock(_) => Some(&settings::LOCK),
            Mode::Unlock(..) => Some(&settings::UNLOCK),
            Mode::Extend(..) => Some(&settings::EXTEND.spec),
            Mode::Status(_) => Some(&settings::STATUS),
            Mode::History(_) => Some(&settings::HISTORY),
            Mode::List => Some(&settings::LIST),
            Mode::Follow(None) => Some(&settings::LIST),
            Mode::Follow(Some(_)) => Some(&settings::STATUS),
            Mode::ShowConfig => Some(&settings::SHOW_CONFIG),
        }
    }

    /// The flag that chose this mode, for messages.
    pub(super) fn flag(&self) -> String {
        self.spec().map_or_else(|| "a command".into(), long)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_name_every_mode_of_the_table() {
        let named = format!("{}, {}", modes(), long(&settings::SHOW_CONFIG));
        let named: Vec<&str> = named.split(", ").collect();
        let table = settings::MODES.iter().chain(settings::OPTIONS);
        for spec in table.filter(|s| s.mode) {
            assert!(named.contains(&long(spec).as_str()), "{named:?}");
        }
        assert_eq!(named.len(), settings::MODES.len() + 1, "{named:?}");
    }
}
