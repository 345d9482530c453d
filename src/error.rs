//! The one error type: every way distlock can fail, each mapped to its exit code in
//! docs/CONTRACT.md. Every message is one line, ready for a log or a cron mail.

use crate::exit;
use std::fmt;
use std::time::Duration;

#[derive(Debug)]
pub enum Error {
    /// Bad command line, environment, or configuration file; nothing was changed in etcd.
    Usage(String),
    /// The lock was busy (`--nowait`, `--timeout`) or `--unlock` found it free. Its exit code
    /// is the `conflict_exit_code` setting, `exit::NOT_ACQUIRED` by default.
    Conflict(String),
    /// etcd could not be reached, refused the request, or rejected the credentials or a TLS
    /// certificate.
    Etcd(String),
    /// Our key was deleted by another client while we waited (our lease still lived): we
    /// give up rather than hold without it.
    Removed(String),
    /// etcd rejected the credentials or denied the access a request needs: like `Etcd` (exit
    /// 3), but final, where an unreachable etcd is worth waiting for.
    Denied(String),
    /// The lock was lost while the command ran.
    Lost(String),
    /// The command ran longer than `--max-runtime` and was stopped.
    TimedOut(String),
    /// The command exists but could not be executed (permissions, bad format).
    CannotExecute(String),
    /// The command was not found.
    NotFound(String),
    /// distlock was told to stop by signal N before the command ran; what it could not
    /// remove from etcd, if anything.
    Interrupted(i32, Option<String>),
}

impl Error {
    /// The exit code of docs/CONTRACT.md's table. Exhaustive on purpose: a new variant does not
    /// compile until it has a code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Conflict(_) => exit::NOT_ACQUIRED,
            Error::Etcd(_) | Error::Removed(_) | Error::Denied(_) => exit::ETCD,
            Error::Lost(_) => exit::LOST,
            Error::TimedOut(_) => exit::TIMED_OUT,
            Error::CannotExecute(_) => exit::CANNOT_EXECUTE,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Interrupted(signal, _) => exit::killed_by(*signal),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::Conflict(m)
            | Error::Etcd(m)
            | Error::Removed(m)
            | Error::Denied(m)
            | Error::Lost(m)
            | Error::TimedOut(m)
            | Error::CannotExecute(m)
            | Error::NotFound(m) => f.write_str(&one_line(m)),
            Error::Interrupted(signal, left) => write!(
                f,
                "interrupted by {} before the command ran; {}",
                signal_name(*signal),
                left.as_deref()
                    .map_or("nothing is left in etcd".into(), one_line)
            ),
        }
    }
}

impl Error {
    /// The same error, saying what it leaves behind in etcd (`what`, one clause).
    pub fn leaving(self, what: &str) -> Error {
        match self {
            Error::Interrupted(signal, _) => Error::Interrupted(signal, Some(what.to_string())),
            Error::Usage(m) => Error::Usage(format!("{m}; {what}")),
            Error::Conflict(m) => Error::Conflict(format!("{m}; {what}")),
            Error::Etcd(m) => Error::Etcd(format!("{m}; {what}")),
            Error::Removed(m) => Error::Removed(format!("{m}; {what}")),
            Error::Denied(m) => Error::Denied(format!("{m}; {what}")),
            Error::Lost(m) => Error::Lost(format!("{m}; {what}")),
            Error::TimedOut(m) => Error::TimedOut(format!("{m}; {what}")),
            Error::CannotExecute(m) => Error::CannotExecute(format!("{m}; {what}")),
            Error::NotFound(m) => Error::NotFound(format!("{m}; {what}")),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text as one line: control characters (a newline in a YAML key, an escape sequence in
/// a value from etcd) are shown escaped, never sent to the terminal.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// `SIGTERM` for 15, or `signal 42` for one without a name.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// A duration as messages print it, rounded to what a reader can use: `250ms`, `1.05s`, `6s`,
/// `2m05s`, `1h02m03s`.
pub fn duration(d: Duration) -> String {
    let ms = (d.as_micros() + 500) / 1000;
    let hundredths = (ms + 5) / 10;
    if ms < 1000 {
        format!("{ms}ms")
    } else if hundredths < 6000 {
        let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let secs = (ms + 500) / 1000;
        match (secs / 3600, secs / 60 % 60, secs % 60) {
            (0, m, s) => format!("{m}m{s:02}s"),
            (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
        }
    }
}

/// An instant as a UTC time of day with milliseconds, as log readers compare it.
pub fn wall_clock(at: tokio::time::Instant) -> String {
    let now = tokio::time::Instant::now();
    let wall = std::time::SystemTime::now();
    let then = if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    };
    humantime::format_rfc3339_millis(then).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_rounded_for_reading() {
        let ms = Duration::from_millis;
        let cases = [
            (Duration::ZERO, "0ms"),
            (ms(200), "200ms"),
            (Duration::from_micros(999_600), "1s"),
            (Duration::new(1, 47_768_255), "1.05s"),
            (ms(6000), "6s"),
            (ms(2500), "2.5s"),
            (ms(59_999), "1m00s"),
            (ms(125_000), "2m05s"),
            (Duration::from_secs(3723), "1h02m03s"),
        ];
        for (d, text) in cases {
            assert_eq!(duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn exit_codes_follow_the_spec_table() {
        let table = [
            (Error::Usage(String::new()), 2),
            (Error::Conflict(String::new()), 1),
            (Error::Etcd(String::new()), 3),
            (Error::Removed(String::new()), 3),
            (Error::Denied(String::new()), 3),
            (Error::Lost(String::new()), 4),
            (Error::TimedOut(String::new()), 124),
            (Error::CannotExecute(String::new()), 126),
            (Error::NotFound(String::new()), 127),
            (Error::Interrupted(2, None), 130),
            (Error::Interrupted(15, None), 143),
        ];
        for (error, code) in table {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
    }
}
