//! How a run of distlock ends when it fails: every failure, its exit code and what that code
//! means. The exit-code table that `--help`, the man page and the README show is made from
//! `Failure::code` and `Failure::meaning`, so they cannot disagree with what `main` returns.

use distlock::error::{one_line, signal_name};
use std::fmt;

/// Done: the lock was taken, released or extended; `--status`: it is held; `--list`: some
/// lock is held; or the command exited 0.
pub const OK: u8 = 0;

/// `--status` of a free lock, `--list` where no lock is held: not a failure (nothing is
/// printed on stderr), but a script tests it as it tests grep's "no match". The code of
/// `NotAcquired` by default, and its meaning in the table; `--conflict-exit-code` leaves it.
pub const NONE_HELD: u8 = 1;

/// Every way a run fails. `code` is exhaustive on purpose: a new variant does not compile
/// until it has a code and a meaning.
#[derive(Debug)]
pub enum Failure {
    /// Nothing to unlock, or busy where that is not a skip. Its code is the
    /// `conflict_exit_code` setting; `NotAcquired::code` is its default.
    NotAcquired(String),
    /// A skip: the lock was busy with `--nowait`, the `--timeout` passed, or `--min-interval`
    /// has not (a run that decides not to run, as cron expects). Code and meaning as
    /// `NotAcquired`, but `-q` silences its line: the exit code tells, as with `flock -n`.
    Skipped(String),
    /// Bad command line, environment or configuration file; nothing was changed in etcd.
    Usage(String),
    /// etcd could not be reached, refused the request, rejected the credentials or a TLS
    /// certificate; or our key was deleted while we waited.
    Etcd(String),
    /// The lock was lost while the command ran.
    Lost(String),
    /// The command ran longer than `--max-runtime` and ended after SIGTERM, as `timeout(1)`
    /// reports it.
    TimedOut(String),
    /// The command ran longer than `--max-runtime` and had to be killed with SIGKILL after
    /// `--kill-grace`: 128+9, as `timeout --kill-after` reports it.
    TimedOutKilled(String),
    /// The command exists but could not be executed.
    CannotExecute(String),
    /// The command was not found.
    NotFound(String),
    /// distlock was told to stop by signal N before the command ran; what stays in etcd, if
    /// anything could not be removed.
    Interrupted(i32, Option<String>),
    /// The same in a mode that runs no command (`--lock`): stopped while waiting for the lock.
    InterruptedWaiting(i32, Option<String>),
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    /// The same failure in a mode that runs no command: an interruption is then one while
    /// waiting for the lock, and its message says so.
    pub fn without_command(self) -> Failure {
        match self {
            Failure::Interrupted(signal, left) => Failure::InterruptedWaiting(signal, left),
            other => other,
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            Failure::NotAcquired(_) | Failure::Skipped(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Etcd(_) => 3,
            Failure::Lost(_) => 4,
            Failure::TimedOut(_) => 124,
            Failure::TimedOutKilled(_) => killed_by(nix::libc::SIGKILL),
            Failure::CannotExecute(_) => 126,
            Failure::NotFound(_) => 127,
            Failure::Interrupted(signal, _) | Failure::InterruptedWaiting(signal, _) => {
                killed_by(*signal)
            }
        }
    }

    /// What the code means, as the documentation says it.
    pub fn meaning(&self) -> &'static str {
        match self {
            Failure::NotAcquired(_) | Failure::Skipped(_) => {
                "not acquired (busy with --nowait, --timeout passed), or skipped by \
                 --min-interval; --unlock or --extend of a free lock (--conflict-exit-code \
                 changes these); --status: the lock is free; --list: no lock is held"
            }
            Failure::Usage(_) => "usage or configuration error; nothing was changed in etcd",
            Failure::Etcd(_) => {
                "etcd unreachable, refused the request, or rejected the credentials or a TLS \
                 certificate (etcd's or ours); or our key was deleted by another client while \
                 we waited"
            }
            Failure::Lost(_) => "the lock was lost while the command ran",
            Failure::TimedOut(_) => {
                "the command ran longer than --max-runtime and was stopped with SIGTERM (as \
                 timeout(1))"
            }
            Failure::TimedOutKilled(_) => {
                "the command ran longer than --max-runtime and did not stop within --kill-grace \
                 of SIGTERM: SIGKILL (as timeout(1) --kill-after)"
            }
            Failure::CannotExecute(_) | Failure::NotFound(_) => {
                "the command could not be executed / was not found (the lock was released)"
            }
            Failure::Interrupted(..) | Failure::InterruptedWaiting(..) => {
                "distlock was stopped by signal N while waiting for the lock or before the \
                 command ran, or the command was killed by signal N"
            }
        }
    }
}

/// The exit-code table, as `--help`, the man page and the README show it: code and meaning,
/// codes of the same meaning on one row (`126/127`).
pub fn table() -> Vec<(String, &'static str)> {
    let every = [
        Failure::NotAcquired(String::new()),
        Failure::Usage(String::new()),
        Failure::Etcd(String::new()),
        Failure::Lost(String::new()),
        Failure::TimedOut(String::new()),
        Failure::TimedOutKilled(String::new()),
        Failure::CannotExecute(String::new()),
        Failure::NotFound(String::new()),
    ];
    let mut rows = vec![(
        OK.to_string(),
        "done: lock taken (--lock), released (--unlock), extended (--extend); held \
         (--status), some lock held (--list); or the command exited 0",
    )];
    for failure in &every {
        match rows.last_mut() {
            Some((codes, meaning)) if *meaning == failure.meaning() => {
                codes.push_str(&format!("/{}", failure.code()))
            }
            _ => rows.push((failure.code().to_string(), failure.meaning())),
        }
    }
    rows.push(("128+N".into(), Failure::Interrupted(0, None).meaning()));
    rows.push(("other".into(), "the command's own exit status"));
    rows
}

/// The status of a process killed by `signal`, as a shell reports it: 128+N.
pub fn killed_by(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotAcquired(m)
            | Failure::Skipped(m)
            | Failure::Usage(m)
            | Failure::Etcd(m)
            | Failure::Lost(m)
            | Failure::TimedOut(m)
            | Failure::TimedOutKilled(m)
            | Failure::CannotExecute(m)
            | Failure::NotFound(m) => f.write_str(&one_line(m)),
            Failure::Interrupted(signal, left) => {
                interrupted(f, *signal, "before the command ran", left)
            }
            Failure::InterruptedWaiting(signal, left) => {
                interrupted(f, *signal, "while waiting for the lock", left)
            }
        }
    }
}

/// `interrupted by SIGTERM <when>; nothing is left in etcd` (or what is left).
fn interrupted(
    f: &mut fmt::Formatter<'_>,
    signal: i32,
    when: &str,
    left: &Option<String>,
) -> fmt::Result {
    let left = left
        .as_deref()
        .map_or("nothing is left in etcd".into(), one_line);
    write!(f, "interrupted by {} {when}; {left}", signal_name(signal))
}

impl std::error::Error for Failure {}

impl Failure {
    /// Whether this is a skip (`Skipped`), which `-q` does not print.
    pub fn is_skip(&self) -> bool {
        matches!(self, Failure::Skipped(_))
    }

    /// A failure to take the lock: "busy" and "timed out" are skips, the rest as usual.
    pub fn from_acquire(e: distlock::Error) -> Failure {
        match e {
            distlock::Error::Conflict(m) => Failure::Skipped(m),
            e => e.into(),
        }
    }
}

/// The library's errors, as the run's failures.
impl From<distlock::Error> for Failure {
    fn from(e: distlock::Error) -> Failure {
        use distlock::Error;
        match e {
            Error::Invalid(m) => Failure::Usage(m),
            Error::Conflict(m) => Failure::NotAcquired(m),
            Error::Etcd(m) | Error::Denied(m) | Error::Removed(m) => Failure::Etcd(m),
            Error::Interrupted(signal, left) => Failure::Interrupted(signal, left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_documented_code() {
        let codes = [
            (Failure::NotAcquired(String::new()), 1),
            (Failure::Usage(String::new()), 2),
            (Failure::Etcd(String::new()), 3),
            (Failure::Lost(String::new()), 4),
            (Failure::TimedOut(String::new()), 124),
            (Failure::TimedOutKilled(String::new()), 137),
            (Failure::CannotExecute(String::new()), 126),
            (Failure::NotFound(String::new()), 127),
            (Failure::Interrupted(2, None), 130),
            (Failure::Interrupted(15, None), 143),
            (Failure::InterruptedWaiting(15, None), 143),
        ];
        assert_eq!(NONE_HELD, Failure::NotAcquired(String::new()).code());
        for (failure, code) in codes {
            assert_eq!(failure.code(), code, "{failure:?}");
        }
        let documented: Vec<String> = table().into_iter().map(|(code, _)| code).collect();
        for code in [
            "0", "1", "2", "3", "4", "124", "137", "126/127", "128+N", "other",
        ] {
            assert!(
                documented.iter().any(|c| c == code),
                "{code} is not documented"
            );
        }
    }

    #[test]
    fn a_library_error_keeps_its_message() {
        let e = Failure::from(distlock::Error::Removed(
            "our key /d/x/1 was deleted".into(),
        ));
        assert_eq!(e.code(), 3);
        assert_eq!(e.to_string(), "our key /d/x/1 was deleted");
    }
}
