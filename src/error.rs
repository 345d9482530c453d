//! The library's error: every way taking, holding or looking at a lock can fail, each a
//! one-line message ready for a log or a cron mail. The binary maps them to its exit codes
//! (src/exit.rs); here they carry no code.

use std::fmt;
use std::time::Duration;

#[derive(Debug)]
pub enum Error {
    /// The request cannot be carried out as asked, and nothing was written: an endpoint or TLS
    /// file that is not usable, a number of holders that differs from the lock's, several
    /// holders and none named, a holder that cannot be extended.
    Invalid(String),
    /// The lock is not as the request needs: busy (when not waiting, or the timeout passed),
    /// or free, or not held by the key named (nothing to unlock or extend).
    Conflict(String),
    /// etcd could not be reached, or refused the request; worth trying again later.
    Etcd(String),
    /// etcd rejected the credentials or a TLS certificate, denied the access a request needs,
    /// or takes no more writes (its quota is full): final, where an unreachable etcd is worth
    /// waiting for.
    Denied(String),
    /// Our key was deleted by another client while we waited (our lease still lived): we
    /// give up rather than hold without it.
    Removed(String),
    /// `Waiting::interrupted` ended the wait, with the caller's number (a signal's, for the
    /// binary); what stays in etcd, if anything could not be removed.
    Interrupted(i32, Option<String>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m)
            | Error::Conflict(m)
            | Error::Etcd(m)
            | Error::Denied(m)
            | Error::Removed(m) => f.write_str(&one_line(m)),
            Error::Interrupted(signal, left) => write!(
                f,
                "interrupted by {} while waiting; {}",
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
            Error::Invalid(m) => Error::Invalid(format!("{m}; {what}")),
            Error::Conflict(m) => Error::Conflict(format!("{m}; {what}")),
            Error::Etcd(m) => Error::Etcd(format!("{m}; {what}")),
            Error::Removed(m) => Error::Removed(format!("{m}; {what}")),
            Error::Denied(m) => Error::Denied(format!("{m}; {what}")),
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
    humantime::format_rfc3339_millis(system_time(at)).to_string()
}

/// An instant as the local clock on the wall shows it, `14:03:07`: what an operator reading a
/// warning compares with `date`, for moments seconds or minutes away.
pub fn local_clock(at: tokio::time::Instant) -> String {
    let since_epoch = system_time(at)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // To the nearest second, as the clock shows it.
    let secs = (since_epoch + Duration::from_millis(500)).as_secs();
    let t = nix::libc::time_t::try_from(secs).unwrap_or_default();
    let mut tm = std::mem::MaybeUninit::<nix::libc::tm>::zeroed();
    // SAFETY: localtime_r reads `t` and writes only into `tm`, which is large enough; its
    // result is checked before `tm` is read.
    let local = unsafe {
        (!nix::libc::localtime_r(&t, tm.as_mut_ptr()).is_null()).then(|| tm.assume_init())
    };
    match local {
        Some(tm) => format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec),
        // No time zone to be had: UTC, saying so.
        None => format!(
            "{:02}:{:02}:{:02} UTC",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60
        ),
    }
}

/// An instant of the monotonic clock on the wall clock.
fn system_time(at: tokio::time::Instant) -> std::time::SystemTime {
    let now = tokio::time::Instant::now();
    let wall = std::time::SystemTime::now();
    if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    }
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
    fn the_local_clock_shows_hours_minutes_and_seconds() {
        let text = local_clock(tokio::time::Instant::now() + Duration::from_secs(90));
        let digits: Vec<&str> = text.split(':').collect();
        assert_eq!(digits.len(), 3, "{text}");
        assert!(
            digits
                .iter()
                .all(|d| d.len() == 2 && d.parse::<u8>().is_ok()),
            "{text}"
        );
    }
}
