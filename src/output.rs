//! What distlock prints: who holds a lock, `--lock`'s result, `--status`, `--list` and
//! `--show-config` as text or JSON, and the "waiting for …" progress line. Results go to
//! stdout, diagnostics to stderr. Whatever another tool left in etcd is shown, never trusted:
//! control characters are escaped and long text is cut in tables.

/// `println!` for what distlock prints on stdout, without its panic when the reader has gone
/// (`distlock --status | head -1`): what cannot be written is dropped, as nobody reads it.
/// (distlock ignores SIGPIPE, as every Rust program does: a write to a socket etcd closed must
/// be an error, not a death.)
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use crate::access::Access;
use crate::config::{Format, LockName, Setting};
use crate::lock::{Contender, Ticket};
use crate::record::{self, Record};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

mod locks;
pub use locks::{print_list, print_status, queue};

/// A contender as `--status`, `--list` and JSON show it. The JSON shape is documented in the
/// README and kept stable: fields are only ever added.
#[derive(Debug, Serialize)]
pub struct View {
    pub key: String,
    /// The create revision of the key: the fencing token of its holder.
    pub fencing_token: i64,
    /// Lease id in hex, or null for a lock held until unlocked.
    pub lease: Option<String>,
    pub kind: Kind,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub user: Option<String>,
    pub reason: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub age_seconds: Option<u64>,
    pub mode: Option<record::Mode>,
    pub program: Option<String>,
    /// Seconds until the lease expires unless renewed; null when it never expires.
    pub ttl_left: Option<i64>,
    /// `exclusive`, `shared` or `semaphore`: how it takes the lock.
    pub access: &'static str,
    /// `--max-holders` of a distlock record.
    pub max_holders: Option<u32>,
    /// When a `--lock` is meant to expire (RFC 3339).
    pub expires: Option<String>,
    /// Whether it holds the lock (`holders` or `waiters` in JSON).
    #[serde(skip)]
    pub holds: bool,
}

/// Who wrote a contender's key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Distlock,
    /// The Go tool's key.
    Legacy,
    /// etcdctl or anything else.
    Other,
}

impl View {
    pub fn of(c: &Contender) -> View {
        let mut view = View {
            key: c.key.clone(),
            fencing_token: c.create_revision,
            lease: (c.lease != 0).then(|| format!("{:x}", c.lease)),
            kind: Kind::Other,
            host: None,
            pid: None,
            user: None,
            reason: None,
            since: None,
            age_seconds: None,
            mode: None,
            program: None,
            ttl_left: None,
            access: Access::of_value(&c.value).as_str(),
            max_holders: None,
            expires: None,
            holds: false,
        };
        if let Some(r) = Record::from_json(&c.value) {
            view.max_holders = Some(r.max_holders);
            view.expires = r.expires;
            view.kind = Kind::Distlock;
            view.age_seconds = humantime::parse_rfc3339_weak(&r.since)
                .ok()
                .map(|t| age_of(t).as_secs());
            view.host = Some(r.host);
            view.pid = Some(r.pid);
            view.user = Some(r.user);
            view.reason = Some(r.reason);
            view.since = Some(r.since);
            view.mode = Some(r.mode);
            view.program = r.program;
        } else if let Some((secs, host, reason)) = legacy_value(c) {
            // RFC 3339 stops at year 9999: a larger number is not a time we can show.
            let then = (secs < 253_402_300_800).then(|| UNIX_EPOCH + Duration::from_secs(secs));
            view.kind = Kind::Legacy;
            view.since = then.map(|t| humantime::format_rfc3339_seconds(t).to_string());
            view.age_seconds = then.map(|t| age_of(t).as_secs());
            view.host = Some(host);
            view.reason = Some(reason);
            view.mode = Some(record::Mode::Lock);
        }
        view
    }

    /// `node-3 (pid 4242, root) for 2m13s: "Upgrade RPMs"`.
    pub fn describe(&self) -> String {
        let age = self
            .age_seconds
            .map(|s| format!(" for {}", format_age(Duration::from_secs(s))))
            .unwrap_or_default();
        let reason = match self.reason.as_deref() {
            Some("") | None => String::new(),
            Some(r) => format!(": {}", quoted(r, 200)),
        };
        match self.kind {
            Kind::Distlock => format!(
                "{} (pid {}, {}){age}{reason}",
                clean(self.host.as_deref().unwrap_or("?"), 100),
                self.pid.unwrap_or_default(),
                clean(self.user.as_deref().unwrap_or("?"), 100),
            ),
            Kind::Legacy => format!(
                "{} (the old Go distlock){age}{reason}",
                clean(self.host.as_deref().unwrap_or("?"), 100)
            ),
            Kind::Other => format!(
                "{} (not distlock's, e.g. etcdctl lock; lease {})",
                clean(&self.key, 300),
                self.lease.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// The Go tool wrote `<unix-seconds>;<hostname>;<reason>` on the bare lock key.
fn legacy_value(c: &Contender) -> Option<(u64, String, String)> {
    if c.key.ends_with('/') || c.lease != 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&c.value);
    let mut parts = text.splitn(3, ';');
    let secs = parts.next()?.trim().parse::<u64>().ok()?;
    let host = parts.next()?.to_string();
    Some((secs, host, parts.next().unwrap_or_default().to_string()))
}

/// Who a contender is, in one line, for messages.
pub fn describe(contender: &Contender) -> String {
    View::of(contender).describe()
}

fn age_of(then: SystemTime) -> Duration {
    SystemTime::now().duration_since(then).unwrap_or_default()
}

/// `42s`, `2m13s`, `5h07m`, `3d04h`: two units at most, readable at any size.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Text from etcd made safe for a terminal: control characters escaped, cut to `max` chars.
fn clean(text: &str, max: usize) -> String {
    let line = crate::error::one_line(text);
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn quoted(text: &str, max: usize) -> String {
    format!("\"{}\"", clean(text, max))
}

fn print_json(value: &serde_json::Value) {
    // A Value always serializes.
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `--lock`'s result: as text, lines ready for `eval` in a shell script.
pub fn print_locked(format: Format, name: &LockName, ticket: &Ticket, ttl: Option<Duration>) {
    match format {
        Format::Text => {
            say!("DISTLOCK_KEY={}", ticket.key);
            say!("DISTLOCK_FENCING_TOKEN={}", ticket.revision);
        }
        Format::Json => print_json(&json!({
            "lock": name.to_string(),
            "key": ticket.key,
            "fencing_token": ticket.revision,
            "expires_in_seconds": ttl.map(|t| t.as_secs()),
        })),
    }
}

/// `--show-config`: every effective setting and where it came from.
pub fn print_settings(format: Format, settings: &[Setting]) {
    if format == Format::Json {
        let map: serde_json::Map<String, serde_json::Value> = settings
            .iter()
            .map(|s| {
                let entry = json!({ "value": s.value, "source": s.source.to_string() });
                (s.key.to_string(), entry)
            })
            .collect();
        return print_json(&serde_json::Value::Object(map));
    }
    let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let value_width = settings
        .iter()
        .map(|s| s.value.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    for s in settings {
        let value = if s.value.is_empty() { "\"\"" } else { &s.value };
        say!(
            "{:width$}  {:value_width$}  ({})",
            s.key,
            clean(value, 200),
            s.source
        );
    }
}

/// A line at least this often while the wait goes on, and the holder read afresh as often.
const LINE_EVERY: Duration = Duration::from_secs(60);

/// "waiting for …" on stderr: after a second, again when the holder changes, and otherwise
/// once a minute.
///
/// The holder is what the wait has learned anyway (each time the key ahead of us goes) plus
/// one read of the holder a minute (`refresh`): a change elsewhere in the queue is named within
/// a minute, and a waiter costs etcd one read a minute, however often the holder changes.
pub struct Progress {
    name: String,
    quiet: bool,
    /// Looked at once a second; it costs no etcd request, the holder is already known.
    next_check: Instant,
    last: Option<(String, Instant)>,
}

impl Progress {
    pub fn new(name: &LockName, quiet: bool) -> Progress {
        Progress {
            name: name.to_string(),
            quiet,
            next_check: Instant::now() + Duration::from_secs(1),
            last: None,
        }
    }

    /// How often the wait should read the holder for these lines; never when they are not
    /// printed (`-q`).
    pub fn refresh(&self) -> Option<Duration> {
        (!self.quiet).then_some(LINE_EVERY)
    }

    pub fn due(&self) -> Instant {
        if self.quiet {
            // Far enough never to fire.
            Instant::now() + Duration::from_secs(86400 * 365)
        } else {
            self.next_check
        }
    }

    pub fn report(&mut self, holder: Option<&Contender>) {
        let now = Instant::now();
        self.next_check = now + Duration::from_secs(1);
        let Some(holder) = holder else { return };
        let say = match &self.last {
            None => true,
            Some((key, at)) => *key != holder.key || now >= *at + LINE_EVERY,
        };
        if say {
            tracing::info!("waiting for {}: held by {}", self.name, describe(holder));
            self.last = Some((holder.key.clone(), now));
        }
    }
}

/// Diagnostics go to stderr through `tracing`: `distlock: …` lines by default, JSON lines with
/// `--log-format=json`. `-q` keeps errors only, `-v`/`-vv` add detail, and `DISTLOCK_LOG`
/// takes a full filter (e.g. `distlock=debug,etcd_client=debug`).
pub fn init_logging(format: Format, quiet: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "distlock=error",
        (_, 0) => "distlock=info",
        (_, 1) => "distlock=debug",
        // What the etcd client and its transport do, request by request.
        _ => "distlock=trace,etcd_client=debug,tonic=debug,h2=debug",
    };
    let filter = EnvFilter::try_from_env("DISTLOCK_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file or cron mail.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        Format::Json => builder.json().init(),
        Format::Text => builder.event_format(Plain).init(),
    }
}

/// `distlock: message`, with `warning: ` or `error: ` for those levels: what an operator
/// reading a cron mail wants, without timestamps the mail already has.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error: ",
            tracing::Level::WARN => "warning: ",
            _ => "",
        };
        write!(writer, "distlock: {level}")?;
        use tracing_subscriber::fmt::FormatFields;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short_at_any_size() {
        assert_eq!(format_age(Duration::from_secs(5)), "5s");
        assert_eq!(format_age(Duration::from_secs(133)), "2m13s");
        assert_eq!(format_age(Duration::from_secs(5 * 3600 + 7 * 60)), "5h07m");
        assert_eq!(
            format_age(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d04h"
        );
    }

    fn contender(key: &str, value: &[u8], lease: i64) -> Contender {
        Contender {
            key: key.into(),
            value: value.to_vec(),
            create_revision: 1,
            lease,
        }
    }

    #[test]
    fn foreign_values_are_described_not_parsed() {
        let legacy = contender("/distlock/x", b"1700000000;oldhost;old reason", 0);
        assert_eq!(View::of(&legacy).kind, Kind::Legacy);
        assert!(describe(&legacy).contains("oldhost"));
        assert!(describe(&contender("/distlock/x/1", b"", 7)).contains("not distlock's"));
        assert!(describe(&contender("/distlock/x/1", &[0xff, 0, 1], 7)).contains("not distlock's"));
    }

    #[test]
    fn terminal_control_characters_are_escaped() {
        let nasty = contender("/distlock/x\u{1b}[2J/1", b"", 7);
        assert!(!describe(&nasty).contains('\u{1b}'));
        assert_eq!(clean(&"é".repeat(10), 5), "éééé…");
    }
}
