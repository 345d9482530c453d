//! The typed values settings hold, and the parsers that make them from text: a flag, a
//! variable, a YAML scalar and a built-in default all go through the same parser.

use std::time::Duration;

/// etcd's longest lease TTL (about 285 years); no duration here needs more.
pub const LONGEST: Duration = Duration::from_secs(9_000_000_000);
/// etcd refuses requests over 1.5 MiB; a reason is a sentence, not a file.
pub const MAX_REASON: usize = 64 * 1024;

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

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Text,
    Json,
}

/// `--extend`: when the lock taken with `--lock` should expire from now on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expiry {
    /// This long from now (whole seconds: it becomes a lease).
    After(Duration),
    /// Never: the lock stays until someone runs `--unlock`.
    Never,
}

/// The most holders a semaphore may have: the waiting code reads up to this many keys in one
/// request, and a "semaphore" of thousands is better served by no lock at all.
pub const MAX_HOLDERS: u32 = 1000;

pub use crate::name::LockName;

/// A value as `--show-config` shows it.
pub trait Show {
    fn show(&self) -> String;
}

impl Show for String {
    fn show(&self) -> String {
        self.clone()
    }
}

impl Show for LockName {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for Duration {
    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

impl Show for Wait {
    fn show(&self) -> String {
        match self {
            Wait::Forever => "-1 (wait forever)".to_string(),
            Wait::Upto(d) => d.show(),
        }
    }
}

impl Show for Vec<String> {
    fn show(&self) -> String {
        self.join(",")
    }
}

impl Show for u8 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for u32 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for bool {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for Expiry {
    fn show(&self) -> String {
        match self {
            Expiry::After(d) => d.show(),
            Expiry::Never => "never".into(),
        }
    }
}

impl Show for OnLost {
    fn show(&self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

impl Show for Format {
    fn show(&self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

pub fn text(t: &str) -> Result<String, String> {
    Ok(t.to_string())
}

pub fn format(text: &str) -> Result<Format, String> {
    match text {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err("expected \"text\" or \"json\"".into()),
    }
}

pub fn on_lost(text: &str) -> Result<OnLost, String> {
    match text {
        "kill" => Ok(OnLost::Kill),
        "warn" => Ok(OnLost::Warn),
        _ => Err("expected \"kill\" or \"warn\"".into()),
    }
}

/// A comma-separated list of http:// or https:// URLs (a YAML list arrives joined by commas).
pub fn endpoints(text: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        return Err("no etcd endpoint given".into());
    }
    list.iter().try_for_each(|e| endpoint(e))?;
    Ok(list)
}

fn endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| format!("endpoint {endpoint:?} is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    Ok(())
}

pub fn exit_code(text: &str) -> Result<u8, String> {
    text.parse()
        .map_err(|_| "expected an exit code from 0 to 255".into())
}

/// `30` (seconds) or a duration such as `90s`, `5m`, `1h 30m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).map_err(|_| {
            "expected whole seconds (30) or a duration (90s, 5m, 1h30m)".to_string()
        })?,
    };
    if d > LONGEST {
        return Err(format!(
            "{} is longer than etcd's longest lease ({}s)",
            humantime::format_duration(d),
            LONGEST.as_secs()
        ));
    }
    Ok(d)
}

/// TTLs and minimum holds: etcd leases count whole seconds.
pub fn whole_seconds(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
        return Err(
            "expected a positive whole number of seconds (30) or a duration (90s, 5m)".into(),
        );
    }
    Ok(d)
}

/// Deadlines and grace periods may be shorter than a second (`500ms`).
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err("expected a positive duration (500ms, 5s)".into());
    }
    Ok(d)
}

/// `--max-holders`: how many may hold the lock at once, 1 (a mutex) to `MAX_HOLDERS`.
pub fn max_holders(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_HOLDERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number of holders from 1 to {MAX_HOLDERS}"
        )),
    }
}

/// The most history entries a lock may keep (`history_size`).
pub const MAX_HISTORY: u32 = 1000;

/// `history_size`: how many entries etcd keeps per lock, 0 (none) to `MAX_HISTORY`.
pub fn history_size(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n <= MAX_HISTORY => Ok(n),
        _ => Err(format!(
            "expected a whole number of entries from 0 (no history) to {MAX_HISTORY}"
        )),
    }
}

/// A switch given as a YAML value or a variable: `true` or `false`.
pub fn switch(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// `--extend`: `never`, or whole seconds / a duration from now.
pub fn expiry(text: &str) -> Result<Expiry, String> {
    if text.trim() == "never" {
        return Ok(Expiry::Never);
    }
    whole_seconds(text)
        .map(Expiry::After)
        .map_err(|e| format!("{e}, or never"))
}

/// `-1` waits forever, `0` is `--nowait`, anything else is a longest wait.
pub fn timeout(text: &str) -> Result<Wait, String> {
    if text.trim() == "-1" {
        return Ok(Wait::Forever);
    }
    duration(text)
        .map(Wait::Upto)
        .map_err(|e| format!("{e}, or -1 to wait forever"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("soon").is_err());
        assert!(duration("-5").is_err());
        assert_eq!(timeout("-1"), Ok(Wait::Forever));
        assert_eq!(timeout("0"), Ok(Wait::Upto(Duration::ZERO)));
        assert!(whole_seconds("0").is_err());
        assert!(whole_seconds("1500ms").is_err());
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn modes() {
        assert_eq!(max_holders("3"), Ok(3));
        assert_eq!(max_holders("1"), Ok(1));
        for bad in ["0", "-1", "three", "", "1.5", "1001"] {
            assert!(max_holders(bad).is_err(), "{bad:?}");
        }
        assert_eq!(expiry("never"), Ok(Expiry::Never));
        assert_eq!(expiry("2h"), Ok(Expiry::After(Duration::from_secs(7200))));
        for bad in ["0", "-5", "500ms", "soon", ""] {
            assert!(expiry(bad).is_err(), "{bad:?}");
        }
        assert_eq!(switch("true"), Ok(true));
        assert!(switch("yes").is_err());
    }
}
