//! Running the command: a process group apart from distlock's, led by a watchdog that kills
//! it if distlock dies (so the whole group can be stopped, even by a distlock gone), the
//! terminal handed to it when distlock is in the foreground, signals passed on once, and its
//! exit status as a shell would report it.
//!
//! Nothing here knows about etcd.

use crate::error::signal_name;
use crate::exit::{Failure, Result};
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, getpid, tcgetpgrp, tcsetpgrp, Pid};
use std::ffi::OsString;
use std::future::poll_fn;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::task::Poll;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// The signals that stop distlock, and that it passes on to the command.
pub const FORWARDED: [i32; 6] = [
    nix::libc::SIGINT,
    nix::libc::SIGTERM,
    nix::libc::SIGHUP,
    nix::libc::SIGQUIT,
    nix::libc::SIGUSR1,
    nix::libc::SIGUSR2,
];

/// Catches the forwarded signals from the moment it is created, so that none is lost between
/// joining the queue and starting the command, and none kills distlock with the lock held.
pub struct Signals(Vec<(i32, tokio::signal::unix::Signal)>);

impl Signals {
    pub fn catch() -> Result<Signals> {
        FORWARDED
            .iter()
            .map(|&n| {
                signal(SignalKind::from_raw(n))
                    .map(|s| (n, s))
                    .map_err(|e| Failure::Usage(format!("cannot handle {}: {e}", signal_name(n))))
            })
            .collect::<Result<_>>()
            .map(Signals)
    }

    /// The next signal received, in no particular order when several are pending.
    pub async fn recv(&mut self) -> i32 {
        poll_fn(|cx| {
            for (number, stream) in &mut self.0 {
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready(*number);
                }
            }
            Poll::Pending
        })
        .await
    }
}

pub struct Command {
    child: tokio::process::Child,
    group: Group,
    /// Set while the command's group owns our terminal; given back when it ends.
    terminal: bool,
}

impl Command {
    /// Starts `argv` in `group` (the watchdog's), with `env` added to our environment.
    pub fn spawn(argv: &[OsString], env: &[(&str, String)], group: Group) -> Result<Command> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| Failure::Usage("no command given".into()))?;
        let mut command = tokio::process::Command::new(program);
        command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        // The command needs the lock, not our etcd password.
        command.env_remove("DISTLOCK_PASSWORD");
        // A group apart from distlock's: a lost lock can stop everything the command started
        // (a shell wrapper must not keep the real work alive). Nothing runs in the child before
        // exec, so the standard library can spawn without copying distlock (posix_spawn), which
        // starts the command sooner after a hand-over.
        command.process_group(group.0.as_raw());
        // The group exists already, so the terminal can be handed over before the command
        // starts: it may read the terminal, and Ctrl-C reaches it, from its first instruction.
        let foreground = in_foreground();
        if foreground {
            give_terminal_to(group.0);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                if foreground {
                    give_terminal_to(getpgrp());
                }
                return Err(spawn_error(program, &e));
            }
        };
        Ok(Command {
            child,
            group,
            terminal: foreground,
        })
    }

    /// Sends `signal` to the command's whole process group, as a terminal would.
    pub fn signal(&self, signal: i32) {
        self.group().signal(signal);
    }

    pub fn group(&self) -> Group {
        self.group
    }

    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Failure::CannotExecute(format!("cannot wait for the command: {e}")));
        self.take_back_terminal();
        status
    }

    /// The exit status if the command has ended by now (without waiting for the event loop to
    /// notice: after a pause of distlock, timers and the exit are seen in no set order).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten()?;
        self.take_back_terminal();
        Some(status)
    }

    /// SIGTERM to the group, then SIGKILL at `kill_at` if it is still there. Says how it
    /// ended, and whether SIGKILL was needed (the command outlived `kill_at`).
    pub async fn terminate(&mut self, kill_at: Instant) -> (Result<ExitStatus>, bool) {
        self.signal(nix::libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout_at(kill_at, self.child.wait()).await {
            // The leader is gone; anything it left in its group gets no grace.
            self.signal(nix::libc::SIGKILL);
            self.take_back_terminal();
            return (
                status.map_err(|e| Failure::CannotExecute(e.to_string())),
                false,
            );
        }
        // No line here: the caller's one line says that SIGKILL was needed.
        self.signal(nix::libc::SIGKILL);
        (self.wait().await, true)
    }

    fn take_back_terminal(&mut self) {
        if std::mem::take(&mut self.terminal) {
            give_terminal_to(getpgrp());
        }
    }
}

/// The command's process group, to signal while something else waits for the command. It is
/// led by the watchdog, a child of ours (a fork's pid, never 0: `killpg(0)` would signal
/// distlock's own group).
#[derive(Clone, Copy)]
pub struct Group(Pid);

impl Group {
    pub fn signal(self, signal: i32) {
        if let Ok(signal) = Signal::try_from(signal) {
            // ESRCH: the group is already gone, which is what we wanted.
            let _ = killpg(self.0, signal);
        }
    }
}

/// Kills the command's whole process group if distlock dies without cleaning up (SIGKILL,
/// the OOM killer): whatever the command started must not go on working without the lock.
///
/// It is a forked copy of distlock, started before distlock joins the queue, that leads the
/// group the command will run in and blocks reading a pipe whose only writer is distlock: end
/// of file means distlock is gone, and it kills its group, itself included. Being there before
/// the command, it covers the command from its first instruction. On a normal exit distlock
/// kills it first.
pub struct Watchdog {
    pid: Pid,
    _writer: std::os::fd::OwnedFd,
}

impl Watchdog {
    pub fn start() -> Result<Watchdog> {
        use nix::unistd::{fork, setpgid, ForkResult};
        use std::os::fd::AsRawFd;
        let failed = |e: nix::errno::Errno| {
            Failure::CannotExecute(format!("cannot start the command's watchdog process: {e}"))
        };
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed)?;
        // SAFETY: after fork, in a process that may have other threads, the child only makes
        // async-signal-safe calls (setpgid, sigaction, close, read, kill, _exit), as POSIX
        // requires.
        match unsafe { fork() }.map_err(failed)? {
            ForkResult::Child => {
                let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
                ignore_signals();
                drop(writer);
                let mut byte = [0u8; 1];
                while let Err(nix::errno::Errno::EINTR) =
                    nix::unistd::read(reader.as_raw_fd(), &mut byte)
                {}
                let _ = killpg(getpid(), Signal::SIGKILL);
                // SAFETY: _exit skips Rust's and libc's exit handlers, which a forked child
                // must not run.
                unsafe { nix::libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                // Both sides set the group, so it exists whichever runs first (as shells do).
                let _ = setpgid(child, child);
                Ok(Watchdog {
                    pid: child,
                    _writer: writer,
                })
            }
        }
    }

    /// The process group the command runs in.
    pub fn group(&self) -> Group {
        Group(self.pid)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Once SIGKILL is sent the watchdog never runs another instruction, so there is no
        // need to wait for it here: distlock's exit hands the zombie to init.
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
    }
}

/// The watchdog shares the command's process group: a Ctrl-C, a `kill` of the group or a
/// terminal's stop signal must not take it away or stop it before it has done its job.
fn ignore_signals() {
    use nix::sys::signal::{signal as set_handler, SigHandler};
    let stops = [nix::libc::SIGTSTP, nix::libc::SIGTTIN, nix::libc::SIGTTOU];
    for number in FORWARDED.into_iter().chain(stops) {
        if let Ok(sig) = Signal::try_from(number) {
            // SAFETY: ignoring a signal installs no handler code.
            unsafe {
                let _ = set_handler(sig, SigHandler::SigIgn);
            }
        }
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        self.take_back_terminal();
    }
}

/// Whether distlock runs in the foreground of a terminal on stdin (an interactive shell).
fn in_foreground() -> bool {
    let stdin = std::io::stdin();
    tcgetpgrp(&stdin).is_ok_and(|group| group == getpgrp())
}

/// Makes `group` the terminal's foreground group, so Ctrl-C reaches it (once) and it may read
/// the terminal. A background group asking this gets SIGTTOU unless it blocks it, as shells do.
fn give_terminal_to(group: Pid) {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old));
    let _ = tcsetpgrp(std::io::stdin(), group);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
}

fn spawn_error(program: &OsString, e: &io::Error) -> Failure {
    let name = program.to_string_lossy();
    match e.kind() {
        // A whole shell line given as one word (`-- "yum -y upgrade && echo done"`).
        io::ErrorKind::NotFound if name.contains(char::is_whitespace) => {
            Failure::NotFound(format!(
                "command not found: {name:?}; to run a shell command line use -c '…' or -- sh -c '…'"
            ))
        }
        io::ErrorKind::NotFound => Failure::NotFound(format!(
            "command not found: {name}; check its name and PATH"
        )),
        io::ErrorKind::PermissionDenied => Failure::CannotExecute(format!(
            "cannot execute {name}: permission denied; is it executable?"
        )),
        _ => Failure::CannotExecute(format!("cannot execute {name}: {e}")),
    }
}

/// The status as a shell reports it: the exit code, or 128+N when killed by signal N.
pub fn shell_status(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => crate::exit::killed_by(signal),
        (None, None) => 1,
    }
}
