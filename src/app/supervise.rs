//! Run mode: start the command on a lease that can cover stopping it, watch the lock while
//! it runs, and stop it (before etcd may expire the lease) when the lock is lost or
//! `--max-runtime` passes.

use super::history;
use super::release::{release, release_after_loss, release_or_hold};
use super::{acquire, Outcome};
use crate::command::{self, Command, Signals};
use crate::config::{Config, LockName, OnLost};
use crate::error::{duration, signal_name};
use crate::etcd::LeaseState;
use crate::exit::{Failure, Result};
use crate::held::Held;
use crate::record::{Mode as RecordMode, Record};
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
        .sharing(config.max_holders, config.shared);
    // Before the queue, not after the hand-over: forking distlock there would delay the
    // command's start.
    let watchdog = command::Watchdog::start()?;
    let queued = std::time::SystemTime::now();
    let held = acquire(config, name, &record, &mut signals).await?;
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
        release_after_loss(&held).await;
        history::write(config, &held, &history::failed(entry, &e), &mut signals).await;
        return Err(e);
    }
    let mut command = match Command::spawn(argv, &env, watchdog.group()) {
        Ok(command) => command,
        Err(e) => {
            release(&held).await;
            history::write(config, &held, &history::failed(entry, &e), &mut signals).await;
            return Err(e);
        }
    };
    let ended = supervise(config, &held, &mut command, &mut signals).await;
    let entry = history::held_at_least(history::run_outcome(entry, &ended), config, &held);
    // The lock first: the next holder is waiting for it, the clean-up is not. Stopped for
    // --max-runtime, the lock is still ours, to release or keep as usual.
    match &ended {
        Ok(_) | Err(Failure::TimedOut(_)) => release_or_hold(config, &held).await,
        Err(_) => release_after_loss(&held).await,
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
        }
    };
    if let Some(status) = command.try_wait() {
        return Ok(status);
    }
    let message = format!("lost the lock {} while the command ran: {why}", held.key());
    // The reason goes into the one error line at the end; here only what happens meanwhile.
    match config.on_lost {
        OnLost::Kill => {
            let kill_at = kill_deadline(config, held);
            tracing::warn!(
                "the lock was lost; stopping the command (SIGTERM, then SIGKILL after {})",
                duration(kill_at.saturating_duration_since(Instant::now()))
            );
            stop(command, signals, kill_at).await;
        }
        OnLost::Warn => {
            tracing::warn!("{message}; letting the command finish (--on-lost=warn)");
            let group = command.group();
            loop {
                tokio::select! {
                    _ = command.wait() => break,
                    signal = signals.recv() => group.signal(signal),
                }
            }
        }
    }
    Err(Failure::Lost(message))
}

/// `--max-runtime` passed: SIGTERM to the command's group, SIGKILL after the kill grace, and
/// the error that says so (exit 124, as timeout(1)).
async fn stop_too_long(
    config: &Config,
    held: &Held,
    command: &mut Command,
    signals: &mut Signals,
) -> Result<std::process::ExitStatus> {
    let limit = duration(config.max_runtime.unwrap_or_default());
    tracing::debug!("the command ran longer than {limit}");
    stop(command, signals, kill_deadline(config, held)).await;
    Err(Failure::TimedOut(format!(
        "the command ran longer than --max-runtime ({limit}) and was stopped (SIGTERM, then \
         SIGKILL after {})",
        duration(config.kill_grace)
    )))
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

/// Stops the command: SIGTERM, SIGKILL at `kill_at`. Signals meanwhile still reach its group.
async fn stop(command: &mut Command, signals: &mut Signals, kill_at: Instant) {
    let group = command.group();
    let stopped = command.terminate(kill_at);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            signal = signals.recv() => group.signal(signal),
        }
    }
}
