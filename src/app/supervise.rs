//! Run mode: start the command on a lease that can cover stopping it, watch the lock while
//! it runs, and stop it (before etcd may expire the lease) when the lock is lost or
//! `--max-runtime` passes.

use super::history;
use super::release::{release, release_after_loss, release_or_hold};
use super::{acquire, acquire_on, connect, interval, unless_interrupted, Outcome};
use crate::command::{self, Command, Signals};
use crate::config::{Config, LockName, OnLost};
use crate::error::{duration, local_clock, signal_name};
use crate::etcd::LeaseState;
use crate::exit::{Failure, Result};
use crate::held::Held;
use crate::record::{Mode as RecordMode, Record};
use crate::stamp::Pending;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;
use tokio::time::{sleep, sleep_until, Instant};

pub(super) async fn run_mode(
    config: &Config,
    name: &LockName,
    argv: &[OsString],
) -> Result<Outcome> {
    let mut signals = Signals::catch()?;
    let program = argv.first().map(|p| {
        p.to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    let record = Record::new(RecordMode::Run, program, &config.reason, Some(config.ttl))
        .sharing(config.max_holders, config.shared)
        .on_lost(match config.on_lost {
            OnLost::Kill => "kill",
            OnLost::Warn => "warn",
        });
    // Before the queue, not after the hand-over: forking distlock there would delay the
    // command's start.
    let watchdog = command::Watchdog::start()?;
    let queued = std::time::SystemTime::now();
    let (held, stamp) = match config.min_interval {
        None => (acquire(config, name, &record, &mut signals).await?, None),
        Some(every) => {
            let etcd = connect(config, &mut signals).await?;
            unless_interrupted(&mut signals, interval::look(&etcd, config, name)).await?;
            let held = acquire_on(&etcd, config, name, &record, &mut signals).await?;
            let pending = interval::start(&etcd, config, name, &held, every).await?;
            (held, Some(pending))
        }
    };
    let entry = history::entry(name, &held, &record, queued);

    let token = held.token().to_string();
    let env = [
        ("DISTLOCK_LOCK_NAME", name.to_string()),
        ("DISTLOCK_KEY", held.key().to_string()),
        ("DISTLOCK_LEASE_ID", format!("{:x}", held.lease_id())),
        ("DISTLOCK_FENCING_TOKEN", token.clone()),
        ("ETCD_LOCK_KEY", held.key().to_string()),
        ("ETCD_LOCK_REV", token),
    ];
    if let Err(e) = lease_for_the_command(config, &held, &mut signals).await {
        let note = release_after_loss(&held).await;
        cancel_stamp(&stamp).await;
        history::write(config, &held, &history::failed(entry, &e), &mut signals).await;
        return Err(with_note(e, note));
    }
    let mut command = match Command::spawn(argv, &env, watchdog.group()) {
        Ok(command) => command,
        Err(e) => {
            release(&held).await;
            cancel_stamp(&stamp).await;
            history::write(config, &held, &history::failed(entry, &e), &mut signals).await;
            return Err(e);
        }
    };
    let ended = supervise(config, &held, &mut command, &mut signals).await;
    // --min-interval: the stamp before the lock, so that the next holder sees it.
    let succeeded = matches!(&ended, Ok(status) if status.success());
    if let (Some(pending), Some(every), true) = (&stamp, config.min_interval, succeeded) {
        interval::finish(pending, &held, every).await;
    }
    let entry = history::held_at_least(history::run_outcome(entry, &ended), config, &held);
    // The lock first: the next holder is waiting for it, the clean-up is not. Stopped for
    // --max-runtime, the lock is still ours, to release or keep as usual.
    let ended = match ended {
        Ok(_) | Err(Failure::TimedOut(_) | Failure::TimedOutKilled(_)) => {
            release_or_hold(config, &held).await;
            ended
        }
        Err(e) => {
            let note = release_after_loss(&held).await;
            Err(with_note(e, note))
        }
    };
    if !succeeded {
        cancel_stamp(&stamp).await;
    }
    drop(watchdog);
    // After the release: the next holder does not wait for this write.
    history::write(config, &held, &entry, &mut signals).await;
    let status = ended?;
    Ok(match status.signal() {
        Some(signal) if signal == nix::libc::SIGINT => Outcome::Signal(signal),
        _ => Outcome::Code(command::shell_status(status)),
    })
}

/// A run that stamps nothing (its command failed or never ran) lets its stamp's lease go.
async fn cancel_stamp(stamp: &Option<Pending>) {
    if let Some(pending) = stamp {
        interval::cancel(pending).await;
    }
}

/// Stop the command this long before etcd may expire the lease, on top of the grace period:
/// time for the signal to land and the process to die.
fn stop_margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_millis(500))
}

/// Makes sure the lease can cover stopping the command in time (the grace period and a
/// margin, with a margin to spare) before it starts: renews it first if not. A command started
/// on a lease about to run out would be stopped at once, or outlive it.
async fn lease_for_the_command(config: &Config, held: &Held, signals: &mut Signals) -> Result<()> {
    let need = config.kill_grace + 2 * stop_margin(held.ttl());
    let mut state = held.lease_changes();
    let mut asked = false;
    loop {
        let until = match *state.borrow_and_update() {
            LeaseState::Alive(until) => until,
            LeaseState::Gone => {
                return Err(Failure::Lost(format!(
                    "lost the lock {} before the command started: {}",
                    held.key(),
                    held.lease_problem(LeaseState::Gone)
                )))
            }
        };
        if until.saturating_duration_since(Instant::now()) >= need {
            return Ok(());
        }
        if !asked {
            tracing::debug!("renewing the lease before starting the command");
            held.renew_now();
            asked = true;
        }
        // A renewal may still come until the lease may expire.
        tokio::select! {
            Ok(()) = state.changed() => {}
            signal = signals.recv() => return Err(Failure::Interrupted(signal, None)),
            _ = sleep_until(until) => return Err(Failure::Etcd(format!(
                "did not start the command: {}, and a command started later could not be stopped in time (--kill-grace {} and a margin)",
                held.lease_problem(*state.borrow()),
                duration(config.kill_grace)
            ))),
        }
    }
}

/// A failure with what is known about the lock after it (see `release_after_loss`), in its
/// one line.
fn with_note(e: Failure, note: Option<String>) -> Failure {
    match (e, note) {
        (Failure::Lost(m), Some(note)) => Failure::Lost(format!("{m}; {note}")),
        (Failure::Etcd(m), Some(note)) => Failure::Etcd(format!("{m}; {note}")),
        (e, Some(note)) => {
            tracing::warn!("{note}");
            e
        }
        (e, None) => e,
    }
}

/// Waits for the command while keeping watch on the lock. Signals go on to the command. If the
/// lock is lost, the command is stopped (or, with `--on-lost=warn`, left to finish) and the
/// result is `Failure::Lost`.
async fn supervise(
    config: &Config,
    held: &Held,
    command: &mut Command,
    signals: &mut Signals,
) -> Result<std::process::ExitStatus> {
    // Lost, for us, is when the command must be stopped to be gone before the lease may expire.
    let lost = held.lost(config.kill_grace + stop_margin(held.ttl()));
    tokio::pin!(lost);
    // --max-runtime counts from the command's start, not from joining the queue.
    let too_long = async {
        match config.max_runtime {
            Some(d) => sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(too_long);
    let silence = warn_of_silence(config, held);
    tokio::pin!(silence);
    let why = loop {
        // Biased, and checked once more below: a command that has ended (e.g. while distlock
        // was paused) is reported with its own status, not as stopped for a lost lock.
        tokio::select! {
            biased;
            status = command.wait() => return status,
            signal = signals.recv() => {
                tracing::debug!("passing {} on to the command", signal_name(signal));
                command.signal(signal);
            }
            why = &mut lost => break why,
            () = &mut too_long => return stop_too_long(config, held, command, signals).await,
            () = &mut silence => {}
        }
    };
    if let Some(status) = command.try_wait() {
        return Ok(status);
    }
    let message = format!("lost the lock {} while the command ran: {why}", held.key());
    // One line says it all, at the end: the reason, and what was done about it.
    match config.on_lost {
        OnLost::Kill => {
            let how = stop(command, signals, kill_deadline(config, held)).await;
            Err(Failure::Lost(format!(
                "{message}; stopped the command: {how}"
            )))
        }
        OnLost::Warn => {
            // The command goes on, so this is said now, and once more at the end.
            tracing::warn!("{message}; letting the command finish (--on-lost=warn)");
            let group = command.group();
            loop {
                tokio::select! {
                    _ = command.wait() => break,
                    signal = signals.recv() => group.signal(signal),
                }
            }
            Err(Failure::Lost(format!(
                "{message}; the command was left to finish (--on-lost=warn)"
            )))
        }
    }
}

/// While the command runs: once etcd has not answered for a third of the TTL (the keepalive
/// due then went unanswered a while), one warning that says when the command will be stopped
/// (or the lock may be lost) if it stays silent; and one line when etcd answers again, after
/// which a new silence warns again. Never completes: the loss itself is `Held::lost`'s.
async fn warn_of_silence(config: &Config, held: &Held) {
    let ttl = held.ttl();
    // A keepalive goes out a third of the TTL after the last answer, and is answered within
    // milliseconds: one not answered in this much more is a silence.
    let slack = (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut state = held.lease_changes();
    let mut warned = false;
    loop {
        // Copied out: no watch::Ref across an await.
        let now_known = *state.borrow_and_update();
        let LeaseState::Alive(until) = now_known else {
            // etcd said the lease is gone: Held::lost says so.
            return std::future::pending().await;
        };
        if std::mem::take(&mut warned) {
            tracing::warn!("etcd answers again; the lock is held");
        }
        let answered = until.checked_sub(ttl).unwrap_or(until);
        let warn_at = answered + ttl / 3 + slack;
        let stop_at = until
            .checked_sub(config.kill_grace + stop_margin(ttl))
            .unwrap_or(until);
        // A warning after the stop began would say nothing new.
        if warn_at < stop_at {
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    continue;
                }
                () = sleep_until(warn_at) => {}
            }
            let silent = duration(Instant::now().saturating_duration_since(answered));
            match config.on_lost {
                OnLost::Kill => tracing::warn!(
                    "etcd has not answered for {silent}; if it stays silent, the command will be \
                     stopped at {} (the lock's lease may expire at {})",
                    local_clock(stop_at),
                    local_clock(until)
                ),
                OnLost::Warn => tracing::warn!(
                    "etcd has not answered for {silent}; if it stays silent, the lock may be lost \
                     at {} (the command goes on: --on-lost=warn)",
                    local_clock(until)
                ),
            }
            warned = true;
        }
        if state.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// `--max-runtime` passed: SIGTERM to the command's group, SIGKILL after the kill grace, and
/// the error that says what was needed: exit 124, or 137 when SIGKILL was, as timeout(1).
async fn stop_too_long(
    config: &Config,
    held: &Held,
    command: &mut Command,
    signals: &mut Signals,
) -> Result<std::process::ExitStatus> {
    let limit = duration(config.max_runtime.unwrap_or_default());
    tracing::debug!("the command ran longer than {limit}");
    let how = stop(command, signals, kill_deadline(config, held)).await;
    let message = format!("the command was stopped after {limit} (--max-runtime): {how}");
    Err(match how.killed_after {
        None => Failure::TimedOut(message),
        Some(_) => Failure::TimedOutKilled(message),
    })
}

/// When SIGKILL follows SIGTERM: after the kill grace, and before etcd may expire the lease
/// whatever the grace period says (distlock may have been paused, or etcd's answers late).
fn kill_deadline(config: &Config, held: &Held) -> Instant {
    let now = Instant::now();
    match held.lease_state() {
        LeaseState::Alive(until) => (now + config.kill_grace)
            .min(until.checked_sub(stop_margin(held.ttl())).unwrap_or(now))
            .max(now),
        LeaseState::Gone => now + config.kill_grace,
    }
}

/// How the command was stopped: by SIGTERM, or SIGKILL was needed this long after it.
struct Stopped {
    killed_after: Option<Duration>,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.killed_after {
            None => f.write_str("SIGTERM"),
            Some(grace) => write!(f, "SIGTERM, then SIGKILL after {}", duration(grace)),
        }
    }
}

/// Stops the command: SIGTERM, SIGKILL at `kill_at`. Signals meanwhile still reach its group.
async fn stop(command: &mut Command, signals: &mut Signals, kill_at: Instant) -> Stopped {
    let group = command.group();
    let began = Instant::now();
    let stopped = command.terminate(kill_at);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            (status, killed) = &mut stopped => {
                if let Err(e) = status {
                    tracing::debug!("{e}");
                }
                return Stopped {
                    killed_after: killed.then(|| kill_at.saturating_duration_since(began)),
                };
            }
            signal = signals.recv() => group.signal(signal),
        }
    }
}
