//! What distlock prints: `--lock`'s result, `--status`, `--list` and `--show-config` as text
//! or JSON, and the "waiting for …" progress line. Results go to stdout, diagnostics to stderr.
//! Who a contender is (and how text from etcd is made safe to show) is the library's `view`.

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

use crate::config::{Format, LockName, Setting};
use crate::queue::Contender;
use crate::view::{clean, describe};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

mod feed;
mod history;
mod locks;
mod manage;
mod metrics;
pub use feed::print_event;
pub use history::print_history;
pub use locks::{print_list, print_status};
pub use manage::{print_extended, print_unlocked};
pub use metrics::print_metrics;

/// Rows under a header, in columns as wide as their widest cell (counted in characters), two
/// spaces apart, without trailing blanks.
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(String::from);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        say!("{}", line.join("  ").trim_end());
    }
}

fn print_json(value: &serde_json::Value) {
    // A Value always serializes.
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `--lock`'s result: as text, lines ready for `eval` in a shell script.
pub fn print_locked(format: Format, name: &LockName, key: &str, token: i64, ttl: Option<Duration>) {
    match format {
        // Prometheus is for --list only (config refuses it here).
        Format::Text | Format::Prometheus => {
            say!("DISTLOCK_KEY={key}");
            say!("DISTLOCK_FENCING_TOKEN={token}");
        }
        Format::Json => print_json(&json!({
            "lock": name.to_string(),
            "key": key,
            "fencing_token": token,
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
                let entry = json!({ "value": s.json, "source": s.source.to_string() });
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
    /// `--lock`: a `--lock` of this host ahead of us is named as such (`manage::own_lock`).
    own_lock: bool,
}

impl Progress {
    pub fn new(name: &LockName, quiet: bool) -> Progress {
        Progress {
            name: name.to_string(),
            quiet,
            next_check: Instant::now() + Duration::from_secs(1),
            last: None,
            own_lock: false,
        }
    }

    /// For `--lock`, which may wait on this host's own `--lock` (see `manage::own_lock`).
    pub fn locking(self, own_lock: bool) -> Progress {
        Progress { own_lock, ..self }
    }

    /// How often the wait should read the holder for these lines; never when they are not
    /// printed (`-q`).
    pub fn refresh(&self) -> Option<Duration> {
        (!self.quiet).then_some(LINE_EVERY)
    }

    /// When to look again; never with `-q`.
    pub fn due(&self) -> Option<Instant> {
        (!self.quiet).then_some(self.next_check)
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
            let who = match self.own_lock {
                true => manage::own_lock(&self.name, holder),
                false => None,
            };
            let who = who.unwrap_or_else(|| describe(holder));
            tracing::info!("waiting for {}: held by {who}", self.name);
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
        // log_format takes text or json only.
        Format::Text | Format::Prometheus => builder.event_format(Plain).init(),
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
