//! The modes, step by step: run a command under the lock, take it (`--lock`), give it back
//! (`--unlock`), look at it (`--status`, `--list`). This is the one place where the etcd
//! side (is the lock still ours?) meets the process side (the command, signals).

use crate::access::{self, Access};
use crate::config::{Config, Expiry, LockName, Mode, OnLost, Wait};
use crate::error::{duration, signal_name, Error, Result};
use crate::etcd::{Etcd, KeepAlive, Lease, LeaseState};
use crate::holders;
use crate::lock::{self, Contender, Queue, Ticket, Turn};
use crate::output::{self, View};
use crate::record::{Mode as RecordMode, Record};
use crate::run::{self, Command, Signals};
use crate::share;
use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, SystemTime};
use tokio::time::{sleep, sleep_until, Instant};

/// How the run ended, for `main` to turn into an exit code.
pub enum Outcome {
    /// Exit with this code.
    Code(u8),
    /// The command died of this signal: die of it too, so a calling shell stops as it would
    /// have for the bare command.
    Signal(i32),
}

pub async fn main(config: Config) -> Result<Outcome> {
    match &config.mode {
        Mode::Run(name, argv) => run_mode(&config, name, argv).await,
        Mode::Lock(name) => lock_mode(&config, name).await,
        Mode::Unlock(name, which) => unlock_mode(&config, name, which.as_deref()).await,
        Mode::Extend(name, expiry) => extend_mode(&config, name, *expiry).await,
        Mode::Status(name) => status_mode(&config, name).await,
        Mode::List => list_mode(&config).await,
        Mode::ShowConfig => {
            output::print_settings(config.output, &config.settings);
            Ok(Outcome::Code(0))
        }
    }
}

/// The lock, once we hold it.
struct Held {
    etcd: Etcd,
    lease: Lease,
    keepalive: KeepAlive,
    ticket: Ticket,
    /// etcd's revision when we took it: watching our key from there misses no unlock.
    revision: i64,
    taken: Instant,
    /// Wall-clock time we took it, for the record.
    taken_at: SystemTime,
    /// Whether we waited: then our record still says when the wait began.
    waited: bool,
}

/// Joins the queue and waits for our turn, within the configured wait. Whatever goes wrong
/// (busy, timeout, a signal, etcd), our key is removed before returning the error.
///
/// A waiter whose lease ran out while etcd was unreachable (an election that outlasts a short
/// TTL) joins the queue again, at the back, once etcd answers; it gives up (exit 3) only when
/// etcd stays unreachable for a whole TTL after that.
async fn acquire(
    config: &Config,
    name: &LockName,
    record: &Record,
    signals: &mut Signals,
) -> Result<Held> {
    let started = Instant::now();
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    // A run that will not wait first looks: a busy lock costs it one read and no write (no
    // lease, no key), so a fleet-wide cron line is cheap for etcd. A free-looking lock is
    // joined as usual, and the joining transaction still decides who wins.
    // A shared or semaphore contender reads the queue as far as its rules need. A holder of
    // another N is refused here too.
    let me = Access::new(config.max_holders, config.shared);
    let nowait = config.wait == Wait::Upto(Duration::ZERO);
    if nowait {
        let head = match me {
            Access::Exclusive => lock::holder(&etcd, &queue).await?,
            _ => share::would_wait(&etcd, &queue, me).await?,
        };
        if let Some(head) = head {
            if let Some(theirs) = access::disagreeing(me.max_holders(), [head.value.as_slice()]) {
                return Err(share::disagree(&queue, me.max_holders(), theirs));
            }
            return Err(busy(config, name, &head));
        }
    }
    let mut lease = etcd.grant(config.ttl).await?;
    tracing::debug!(
        "lease {:x} granted with a TTL of {}",
        lease.id,
        duration(lease.ttl)
    );
    let mut keepalive = etcd.keep_alive(lease);
    let wait_until = match config.wait {
        Wait::Forever => None,
        Wait::Upto(d) => Some(started + d),
    };

    let holder = RefCell::new(None::<Contender>);
    let mut progress = output::Progress::new(name, config.quiet);
    let refresh = progress.refresh();
    // Once we have been in the queue, an etcd failure while waiting is a reason to join
    // again, not to give up: the first join fails at once (exit 3) when etcd is down.
    let joined = Cell::new(false);
    let result = loop {
        let waiting = async {
            let (ticket, turn) = lock::enqueue(&etcd, &queue, lease.id, record).await?;
            joined.set(true);
            tracing::debug!(
                "queued as {} (create revision {})",
                ticket.key,
                ticket.revision
            );
            let waited = matches!(turn, Turn::Wait { .. });
            let wait_turn = share::wait_turn(
                (&etcd, &queue, &ticket),
                turn,
                me,
                refresh,
                |head| nowait.then(|| busy(config, name, head)),
                |head| *holder.borrow_mut() = Some(head.clone()),
            );
            // The timeout bounds the wait in the queue; reaching etcd is bounded by maxtime.
            // --nowait is decided by the wait itself, not by a timer that may beat etcd.
            let revision = match wait_until.filter(|_| !nowait) {
                None => wait_turn.await,
                Some(at) => match tokio::time::timeout_at(at, wait_turn).await {
                    Ok(revision) => revision,
                    Err(_) => return Ok(Err(timed_out(config, name, &holder))),
                },
            };
            let revision = match revision {
                Ok(revision) => revision,
                // Busy, or another N: final, not a reason to join again.
                Err(e @ (Error::Conflict { .. } | Error::Usage(_))) => return Ok(Err(e)),
                Err(e) => return Err(e),
            };
            // A semaphore waiter behind us may be watching our key for the moment we take the
            // lock (see access.rs): tell it now, with the time we took it. (--lock writes its
            // key at once anyway, and then says it holds.)
            let stamp =
                waited && matches!(me, Access::Semaphore(_)) && record.mode == RecordMode::Run;
            if stamp {
                let stamped = record.taken_at(SystemTime::now(), Some(lease.ttl));
                if !lock::move_to_lease(&etcd, &ticket, lease.id, &stamped).await? {
                    return Err(Error::Etcd(format!("our key {} is gone", ticket.key)));
                }
            }
            Ok(Ok((ticket, revision, waited && !stamp)))
        };
        let attempt = {
            tokio::pin!(waiting);
            let mut lease_state = keepalive.state.clone();
            loop {
                let lease_lost = match *lease_state.borrow() {
                    LeaseState::Alive(until) => until,
                    LeaseState::Gone => Instant::now(),
                };
                tokio::select! {
                    result = &mut waiting => break result,
                    signal = signals.recv() => break Ok(Err(Error::Interrupted(signal))),
                    _ = sleep_until(lease_lost) => break Err(Error::Etcd(lease_problem(&lease, *lease_state.borrow()))),
                    Ok(()) = lease_state.changed() => {}
                    _ = sleep_until(progress.due()) => progress.report(holder.borrow().as_ref()),
                }
            }
        };
        let why = match attempt {
            Ok(done) => break done,
            Err(e) if !joined.get() => break Err(e),
            Err(e) => e,
        };
        // Wait for etcd to answer about our lease (the keepalive keeps trying), within the
        // wait's timeout, and for at most one TTL after the lease may have run out.
        tracing::debug!("{why}; waiting for etcd to answer again");
        let give_up = match *keepalive.state.borrow() {
            LeaseState::Alive(until) => until.max(Instant::now()) + lease.ttl,
            LeaseState::Gone => Instant::now() + lease.ttl,
        };
        let mut lease_state = keepalive.state.clone();
        let answer = loop {
            if let LeaseState::Alive(until) = *lease_state.borrow_and_update() {
                if until > Instant::now() + RETRY_PAUSE {
                    // Still ours on the server: join with the same lease, which keeps our key
                    // and so our place in line.
                    sleep(RETRY_PAUSE).await;
                    break Ok(false);
                }
            } else {
                break Ok(true);
            }
            let give_up_at = wait_until.map_or(give_up, |at| at.min(give_up));
            tokio::select! {
                signal = signals.recv() => break Err(Error::Interrupted(signal)),
                Ok(()) = lease_state.changed() => {}
                _ = sleep_until(give_up_at) => break Err(match wait_until {
                    Some(at) if at <= give_up => timed_out(config, name, &holder),
                    _ => Error::Etcd(format!(
                        "lost our place in the queue for {name}: {why}, and etcd did not answer again within the lease's TTL ({})",
                        duration(lease.ttl)
                    )),
                }),
                _ = sleep_until(progress.due()) => progress.report(holder.borrow().as_ref()),
            }
        };
        match answer {
            Ok(false) => {}
            Ok(true) => {
                // etcd says the lease is gone, and with it our key: join again at the back.
                let fresh = match etcd.grant(config.ttl).await {
                    Ok(fresh) => fresh,
                    Err(e) => break Err(e),
                };
                keepalive = etcd.keep_alive(fresh);
                lease = fresh;
                tracing::warn!(
                    "lost our place in the queue for {name} (our lease expired while etcd was unreachable); joining it again at the back"
                );
            }
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok((ticket, revision, waited)) => {
            tracing::debug!("took {} after {}", ticket.key, duration(started.elapsed()));
            Ok(Held {
                etcd,
                lease,
                keepalive,
                ticket,
                revision,
                taken: Instant::now(),
                taken_at: SystemTime::now(),
                waited,
            })
        }
        Err(e) => {
            drop(keepalive);
            // Best effort: if etcd is unreachable the lease expires by itself within its TTL.
            if let Err(revoke) = etcd.revoke(lease.id).await {
                tracing::warn!("{revoke}");
            }
            Err(e)
        }
    }
}

/// Pause before joining the queue again after etcd failed a request, so a fast failure does
/// not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why a lease is in doubt, in words: what etcd said, or what it did not confirm.
fn lease_problem(lease: &Lease, state: LeaseState) -> String {
    match state {
        LeaseState::Gone => "etcd says our lease no longer exists".to_string(),
        LeaseState::Alive(until) => {
            let confirmed = until.checked_sub(lease.ttl).unwrap_or(until);
            format!(
                "etcd has not confirmed our lease since {}; unless a later keepalive reached it, etcd expires it by {}",
                wall_clock(confirmed),
                wall_clock(until)
            )
        }
    }
}

/// An instant as a UTC time of day with milliseconds, as log readers compare it.
fn wall_clock(at: Instant) -> String {
    let now = Instant::now();
    let wall = SystemTime::now();
    let then = if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    };
    humantime::format_rfc3339_millis(then).to_string()
}

fn timed_out(config: &Config, name: &LockName, holder: &RefCell<Option<Contender>>) -> Error {
    match holder.borrow().as_ref() {
        Some(head) => busy(config, name, head),
        None => busy_unknown(config, name),
    }
}

fn busy(config: &Config, name: &LockName, head: &Contender) -> Error {
    Error::Conflict {
        message: format!("{name} is busy: held by {}", output::describe(head)),
        code: config.conflict_exit_code,
    }
}

fn busy_unknown(config: &Config, name: &LockName) -> Error {
    Error::Conflict {
        message: format!("{name} is busy: timed out waiting in its queue"),
        code: config.conflict_exit_code,
    }
}

async fn run_mode(config: &Config, name: &LockName, argv: &[OsString]) -> Result<Outcome> {
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
    let held = acquire(config, name, &record, &mut signals).await?;

    let token = held.ticket.revision.to_string();
    let env = [
        ("DISTLOCK_LOCK_NAME", name.to_string()),
        ("DISTLOCK_KEY", held.ticket.key.clone()),
        ("DISTLOCK_LEASE_ID", format!("{:x}", held.lease.id)),
        ("DISTLOCK_FENCING_TOKEN", token.clone()),
        ("ETCD_LOCK_KEY", held.ticket.key.clone()),
        ("ETCD_LOCK_REV", token),
    ];
    if let Err(e) = lease_for_the_command(config, &held, &mut signals).await {
        release_after_loss(&held).await;
        return Err(e);
    }
    let mut command = match Command::spawn(argv, &env) {
        Ok(command) => command,
        Err(e) => {
            release(&held).await;
            return Err(e);
        }
    };
    let watchdog = run::Watchdog::start(command.group());
    let ended = supervise(config, &held, &record, &mut command, &mut signals).await;
    drop(watchdog);
    drop(signals);

    let status = match ended {
        Ok(status) => status,
        // Stopped for --max-runtime: the lock is still ours, to release or keep as usual.
        Err(e @ Error::TimedOut(_)) => {
            release_or_hold(config, &held, &record).await;
            return Err(e);
        }
        Err(e) => {
            release_after_loss(&held).await;
            return Err(e);
        }
    };
    release_or_hold(config, &held, &record).await;
    Ok(match status.signal() {
        Some(signal) if signal == nix::libc::SIGINT => Outcome::Signal(signal),
        _ => Outcome::Code(run::shell_status(status)),
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
    let need = config.kill_grace + 2 * stop_margin(held.lease.ttl);
    let mut state = held.keepalive.state.clone();
    let mut asked = false;
    loop {
        let until = match *state.borrow_and_update() {
            LeaseState::Alive(until) => until,
            LeaseState::Gone => {
                return Err(Error::Lost(format!(
                    "lost the lock {} before the command started: {}",
                    held.ticket.key,
                    lease_problem(&held.lease, LeaseState::Gone)
                )))
            }
        };
        if until.saturating_duration_since(Instant::now()) >= need {
            return Ok(());
        }
        if !asked {
            tracing::debug!("renewing the lease before starting the command");
            held.keepalive.renew_now();
            asked = true;
        }
        // A renewal may still come until the lease may expire.
        tokio::select! {
            Ok(()) = state.changed() => {}
            signal = signals.recv() => return Err(Error::Interrupted(signal)),
            _ = sleep_until(until) => return Err(Error::Etcd(format!(
                "did not start the command: {}, and a command started later could not be stopped in time (--kill-grace {} and a margin)",
                lease_problem(&held.lease, *state.borrow()),
                duration(config.kill_grace)
            ))),
        }
    }
}

/// Waits for the command while keeping watch on the lock. Signals go on to the command. If the
/// lock is lost, the command is stopped (or, with `--on-lost=warn`, left to finish) and the
/// result is `Error::Lost`.
async fn supervise(
    config: &Config,
    held: &Held,
    record: &Record,
    command: &mut Command,
    signals: &mut Signals,
) -> Result<std::process::ExitStatus> {
    let margin = stop_margin(held.lease.ttl);
    let mut lease_state = held.keepalive.state.clone();
    // Watching our own key notices an operator's --unlock at once. A waiter's record still
    // says when it began to wait: stamp it with the time it took the lock. Both wait a
    // moment, so a short command costs neither (and the hand-over path has no write).
    let released = async {
        sleep(Duration::from_millis(250)).await;
        if held.waited {
            let stamped = record.taken_at(held.taken_at, Some(held.lease.ttl));
            if let Err(e) =
                lock::move_to_lease(&held.etcd, &held.ticket, held.lease.id, &stamped).await
            {
                tracing::debug!("cannot stamp the record: {e}");
            }
        }
        lock::wait_released(&held.etcd, &held.ticket, held.revision).await
    };
    tokio::pin!(released);
    // --max-runtime counts from the command's start, not from joining the queue.
    let too_long = async {
        match config.max_runtime {
            Some(d) => sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(too_long);
    let why = loop {
        let stop_at = match *lease_state.borrow() {
            LeaseState::Alive(until) => until.checked_sub(config.kill_grace + margin),
            LeaseState::Gone => Some(Instant::now()),
        }
        .unwrap_or_else(Instant::now);
        // Biased, and checked once more below: a command that has ended (e.g. while distlock
        // was paused) is reported with its own status, not as stopped for a lost lock.
        tokio::select! {
            biased;
            status = command.wait() => return status,
            signal = signals.recv() => {
                tracing::debug!("passing {} on to the command", signal_name(signal));
                command.signal(signal);
            }
            Ok(()) = lease_state.changed() => {}
            _ = sleep_until(stop_at) => break lease_problem(&held.lease, *lease_state.borrow()),
            () = &mut too_long => return stop_too_long(config, held, command, signals).await,
            () = &mut released => break "its key was removed (an operator's --unlock, or the lease expired)".to_string(),
        }
    };
    if let Some(status) = command.try_wait() {
        return Ok(status);
    }
    let message = format!(
        "lost the lock {} while the command ran: {why}",
        held.ticket.key
    );
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
    Err(Error::Lost(message))
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
    Err(Error::TimedOut(format!(
        "the command ran longer than --max-runtime ({limit}) and was stopped (SIGTERM, then \
         SIGKILL after {})",
        duration(config.kill_grace)
    )))
}

/// When SIGKILL follows SIGTERM: after the kill grace, and before etcd may expire the lease
/// whatever the grace period says (distlock may have been paused, or etcd's answers late).
fn kill_deadline(config: &Config, held: &Held) -> Instant {
    let now = Instant::now();
    match *held.keepalive.state.borrow() {
        LeaseState::Alive(until) => (now + config.kill_grace)
            .min(
                until
                    .checked_sub(stop_margin(held.lease.ttl))
                    .unwrap_or(now),
            )
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

/// Releases the lock, or keeps it as long as `--hold-at-least` says.
async fn release_or_hold(config: &Config, held: &Held, record: &Record) {
    match config.hold_at_least {
        Some(min) if held.taken.elapsed() < min => hold_on(held, min, record).await,
        _ => release(held).await,
    }
}

/// Releases the lock with one revoke. If etcd cannot be reached, the lease expires by itself.
async fn release(held: &Held) {
    match held.etcd.revoke(held.lease.id).await {
        Ok(()) => tracing::debug!("released {}", held.ticket.key),
        Err(e) => warn_not_released(held, &e),
    }
}

/// After a lost lock etcd is often unreachable: stop renewing, and keep trying to revoke for
/// as long as etcd may still hold the lease (after that there is nothing left to release).
async fn release_after_loss(held: &Held) {
    let latest = held.keepalive.stop().unwrap_or_else(Instant::now);
    match held.etcd.revoke_until(held.lease.id, latest).await {
        Ok(()) => tracing::debug!("revoked the lease of {}", held.ticket.key),
        Err(e) => warn_not_released(held, &e),
    }
}

/// The lock could not be released: say what is known about when it frees itself. Only etcd
/// can say that it is free.
fn warn_not_released(held: &Held, e: &Error) {
    match held.keepalive.stop() {
        None => tracing::warn!("{e}; etcd said the lease no longer exists, so the lock is free"),
        Some(latest) => tracing::warn!(
            "{e}; the lock frees itself when etcd expires the lease, by {} at the latest unless etcd changes leader meanwhile",
            wall_clock(latest)
        ),
    }
}

/// `--hold-at-least`: moves our key to a fresh lease of the remaining time (same key, same
/// place) that nobody keeps alive, and lets our own lease go.
async fn hold_on(held: &Held, min: Duration, record: &Record) {
    let left = min.saturating_sub(held.taken.elapsed());
    // etcd counts whole seconds; round up so the lock is never held shorter than asked.
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let moved = async {
        let lease = held.etcd.grant(Duration::from_secs(secs.max(1))).await?;
        let record = record.taken_at(held.taken_at, Some(lease.ttl));
        lock::move_to_lease(&held.etcd, &held.ticket, lease.id, &record).await
    };
    match moved.await {
        Ok(true) => tracing::info!(
            "holding {} for {secs}s more (--hold-at-least)",
            held.ticket.key
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot keep the lock for --hold-at-least: {e}"),
    }
    release(held).await;
}

async fn lock_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let mut signals = Signals::catch()?;
    let record = Record::new(RecordMode::Lock, None, &config.reason, Some(config.ttl))
        .sharing(config.max_holders, config.shared);
    let held = acquire(config, name, &record, &mut signals).await?;
    // Detach the key from our lease (or move it to one of --ttl that nobody keeps alive), in
    // a transaction guarded by its create revision, so it keeps its place and outlives us.
    let detached = async {
        let lease = match config.lock_ttl {
            Some(ttl) => Some(held.etcd.grant(ttl).await?),
            None => None,
        };
        let record = record
            .taken_at(held.taken_at, lease.map(|l| l.ttl))
            .expiring(lease.map(|l| SystemTime::now() + l.ttl));
        lock::move_to_lease(&held.etcd, &held.ticket, lease.map_or(0, |l| l.id), &record).await
    };
    let result = detached.await;
    release(&held).await;
    match result {
        Ok(true) => {
            output::print_locked(config.output, name, &held.ticket, config.lock_ttl);
            Ok(Outcome::Code(0))
        }
        Ok(false) => Err(Error::Etcd(format!(
            "the lock {} was removed right after we took it; try again",
            held.ticket.key
        ))),
        Err(e) => Err(e),
    }
}

async fn unlock_mode(config: &Config, name: &LockName, which: Option<&str>) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    let code = config.conflict_exit_code;
    let holder = holders::unlock(&etcd, &queue, name, which, code).await?;
    tracing::info!("removed {}", holder.key);
    Ok(Outcome::Code(0))
}

async fn extend_mode(config: &Config, name: &LockName, expiry: Expiry) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    let code = config.conflict_exit_code;
    let holder = holders::extend_lock(&etcd, &queue, name, expiry, code).await?;
    match expiry {
        Expiry::After(d) => tracing::info!(
            "{} now expires in {}",
            holder.key,
            humantime::format_duration(d)
        ),
        Expiry::Never => tracing::info!("{} now never expires", holder.key),
    }
    Ok(Outcome::Code(0))
}

async fn status_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    let contenders = lock::contenders(&etcd, &queue).await?;
    let mut views = output::queue(&contenders);
    // One request per holder's lease: N of them at most, for a semaphore.
    for (view, c) in views.iter_mut().zip(&contenders) {
        if view.holds && c.lease != 0 {
            view.ttl_left = etcd.time_to_live(c.lease).await?;
        }
    }
    output::print_status(config.output, name, &views);
    Ok(Outcome::Code(0))
}

async fn list_mode(config: &Config) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let locks: Vec<(String, Vec<View>)> = lock::all_locks(&etcd, &config.prefix)
        .await?
        .into_iter()
        .map(|(name, contenders)| (name, output::queue(&contenders)))
        .collect();
    output::print_list(config.output, &locks);
    Ok(Outcome::Code(0))
}
