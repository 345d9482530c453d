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
    /// node_exporter's textfile-collector format (`--list` only).
    Prometheus,
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

/// A value as `--show-config` shows it: as text, and typed for `--output=json` (numbers,
/// booleans, lists; durations in seconds).
pub trait Show {
    fn show(&self) -> String;
    fn json(&self) -> Value;
}

use serde_json::{json, Value};

/// A duration in seconds: a whole number when it is one, else a fraction (0.5).
fn seconds(d: &Duration) -> Value {
    match d.subsec_nanos() {
        0 => json!(d.as_secs()),
        _ => json!(d.as_secs_f64()),
    }
}

impl Show for String {
    fn show(&self) -> String {
        self.clone()
    }

    fn json(&self) -> Value {
        Value::String(self.clone())
    }
}

impl Show for LockName {
    fn show(&self) -> String {
        self.to_string()
    }

    fn json(&self) -> Value {
        Value::String(self.to_string())
    }
}

impl Show for Duration {
    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }

    fn json(&self) -> Value {
        seconds(self)
    }
}

impl Show for Wait {
    fn show(&self) -> String {
        match self {
            Wait::Forever => "-1 (wait forever)".to_string(),
            Wait::Upto(d) => d.show(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Wait::Forever => json!(-1),
            Wait::Upto(d) => seconds(d),
        }
    }
}

impl Show for Vec<String> {
    fn show(&self) -> String {
        self.join(",")
    }

    fn json(&self) -> Value {
        json!(self)
    }
}

impl Show for u8 {
    fn show(&self) -> String {
        self.to_string()
    }

    fn json(&self) -> Value {
        json!(self)
    }
}

impl Show for u32 {
    fn show(&self) -> String {
        self.to_string()
    }

    fn json(&self) -> Value {
        json!(self)
    }
}

impl Show for bool {
    fn show(&self) -> String {
        self.to_string()
    }

    fn json(&self) -> Value {
        json!(self)
    }
}

impl Show for Expiry {
    fn show(&self) -> String {
        match self {
            Expiry::After(d) => d.show(),
            Expiry::Never => "never".into(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Expiry::After(d) => seconds(d),
            Expiry::Never => json!("never"),
        }
    }
}

impl Show for OnLost {
    fn show(&self) -> String {
        format!("{self:?}").to_lowercase()
    }

    fn json(&self) -> Value {
        Value::String(self.show())
    }
}

impl Show for Format {
    fn show(&self) -> String {
        format!("{self:?}").to_lowercase()
    }

    fn json(&self) -> Value {
        Value::String(self.show())
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

/// `--output`: what `format` takes, and node_exporter's textfile format for `--list`.
pub fn output(text: &str) -> Result<Format, String> {
    match text {
        "prometheus" => Ok(Format::Prometheus),
        _ => format(text).map_err(|_| "expected \"text\", \"json\" or \"prometheus\"".into()),
    }
}

pub fn on_lost(text: &str) -> Result<OnLost, String> {
    match text {
        "kill" => Ok(OnLost::Kill),
        "warn" => Ok(OnLost::Warn),
        _ => Err("expected \"kill\" or \"warn\"".into()),
    }
}

/// A comma-separated list of http:// or https:// URLs, or `host:port` without a scheme as
/// etcdctl takes them (`config` adds the scheme); a YAML list arrives joined by commas.
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
    let rest = match endpoint.split_once("://") {
        // etcdctl's form: a port is what tells it from a typo (`endpoints: yes`).
        None if !has_port(endpoint) => {
            return Err(format!(
                "endpoint {endpoint:?} is not an http:// or https:// URL, or host:port"
            ))
        }
        None => endpoint,
        Some(("http" | "https", rest)) => rest,
        Some(_) => {
            return Err(format!(
                "endpoint {endpoint:?} is not an http:// or https:// URL, or host:port"
            ))
        }
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    Ok(())
}

/// `host:port` (`127.0.0.1:2379`, `[::1]:2379`): a host, and a port in digits.
fn has_port(endpoint: &str) -> bool {
    endpoint.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    })
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

/// A switch given as a YAML value or a variable, one rule for both: true/false, yes/no, on/off
/// or 1/0, in any case.
pub fn switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false (also yes/no, on/off, 1/0)".into()),
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
    // Fractional seconds, as `flock -w 0.5` takes them.
    if let Some(secs) = text
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|_| text.contains('.'))
    {
        return Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| *d <= LONGEST)
            .map(Wait::Upto)
            .ok_or_else(|| {
                "expected seconds (30, 0.5) or a duration (90s, 5m), or -1 to wait forever".into()
            });
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
        assert_eq!(timeout("0.5"), Ok(Wait::Upto(Duration::from_millis(500))));
        assert_eq!(timeout("2.25"), Ok(Wait::Upto(Duration::from_millis(2250))));
        for bad in ["-0.5", "0.5.1", "NaN.", "inf."] {
            assert!(timeout(bad).is_err(), "{bad:?}");
        }
        assert!(whole_seconds("0").is_err());
        assert!(whole_seconds("1500ms").is_err());
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn endpoints_may_leave_out_the_scheme() {
        assert_eq!(
            endpoints("127.0.0.1:2379, https://b:2379"),
            Ok(vec!["127.0.0.1:2379".into(), "https://b:2379".into()])
        );
        assert!(endpoints("[::1]:2379").is_ok());
        for bad in [
            "unix://x",
            "ftp://a:1",
            "http://",
            "a b:1",
            "",
            "localhost",
            "2379",
            ":2379",
            "a:",
            "yes",
        ] {
            assert!(endpoints(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_show_typed_in_json() {
        assert_eq!(Duration::from_secs(5400).json(), json!(5400));
        assert_eq!(Duration::from_millis(500).json(), json!(0.5));
        assert_eq!(Wait::Forever.json(), json!(-1));
        assert_eq!(Wait::Upto(Duration::from_secs(30)).json(), json!(30));
        assert_eq!(3u32.json(), json!(3));
        assert_eq!(false.json(), json!(false));
        assert_eq!(vec!["a".to_string()].json(), json!(["a"]));
        assert_eq!(Format::Json.json(), json!("json"));
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
        for yes in ["true", "yes", "on", "1", "True", "YES", " On "] {
            assert_eq!(switch(yes), Ok(true), "{yes:?}");
        }
        for no in ["false", "no", "off", "0", "FALSE", "No"] {
            assert_eq!(switch(no), Ok(false), "{no:?}");
        }
        for bad in ["", "y", "2", "banana", "truee"] {
            assert!(switch(bad).is_err(), "{bad:?}");
        }
    }
}
