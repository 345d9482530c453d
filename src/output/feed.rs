//! `--list --follow` and `--status --follow`: one line per event, as text or as JSON lines,
//! each stamped with the time this host saw it.

use crate::config::Format;
use crate::feed::{Event, Kind};
use crate::history::Entry;
use crate::record::now_rfc3339;
use crate::view::{clean, format_age, View};
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// Prints `event` on stdout; an error when nobody reads it any more (`| head`), which ends
/// the feed.
pub fn print_event(format: Format, event: &Event) -> std::io::Result<()> {
    let time = now_rfc3339();
    let view = event.contender.as_ref().map(|c| View {
        holds: matches!(event.kind, Kind::Holds | Kind::Took),
        ..View::of(c)
    });
    let entry = event.entry.as_ref();
    let line = match format {
        Format::Json => {
            let mut line = json!({
                "time": time,
                "event": event.kind.as_str(),
                "lock": event.lock,
                "revision": event.revision,
            });
            if let Some(view) = &view {
                line["contender"] = json!(view);
            }
            if let Some(entry) = entry {
                line["entry"] = json!(entry);
            }
            if let Some(detail) = &event.detail {
                line["detail"] = json!(detail);
            }
            if let Kind::Compacted { compacted } = event.kind {
                line["compacted_revision"] = json!(compacted);
            }
            line.to_string()
        }
        _ => format!("{time} {}", text(event, view.as_ref(), entry)),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// The event in words, after the time.
fn text(event: &Event, view: Option<&View>, entry: Option<&Entry>) -> String {
    let kind = event.kind.as_str();
    let lock = clean(&event.lock, 255);
    match event.kind {
        Kind::Compacted { compacted } => format!(
            "{kind}: etcd compacted the events after revision {} up to {compacted} away; \
             the locks were read afresh, what changed follows",
            event.revision
        ),
        Kind::Disconnected => format!(
            "{kind}: {}; trying again",
            event.detail.as_deref().unwrap_or("the watch broke")
        ),
        Kind::Resumed => format!(
            "{kind}: watching again after revision {}; nothing was missed",
            event.revision
        ),
        Kind::History | Kind::Lost => format!("{kind} {lock}: {}", entry.map_or("?".into(), ended)),
        _ => match view {
            Some(view) => format!(
                "{kind} {lock}: {} [token {}]",
                view.describe(),
                view.fencing_token
            ),
            None => format!("{kind} {lock}"),
        },
    }
}

/// A history entry in one line: who, how it ended, how long it held.
fn ended(entry: &Entry) -> String {
    let mut line = format!(
        "{} (pid {})",
        clean(entry.host.as_deref().unwrap_or("?"), 100),
        entry.pid.unwrap_or_default()
    );
    if let Some(program) = &entry.program {
        line.push_str(&format!(" {}", clean(program, 100)));
    }
    line.push_str(&format!(": {}", clean(&entry.outcome, 40)));
    if let Some(code) = entry.exit_code {
        line.push_str(&format!(" {code}"));
    }
    if let Some(signal) = &entry.signal {
        line.push_str(&format!(" ({})", clean(signal, 20)));
    }
    if let Some(host) = &entry.unlocked_by {
        line.push_str(&format!(" by {}", clean(host, 100)));
    }
    if let Some(detail) = &entry.detail {
        line.push_str(&format!(", {}", clean(detail, 200)));
    }
    if let Some(held) = entry.held_s {
        line.push_str(&format!(
            "; held {}",
            format_age(Duration::from_secs_f64(held.max(0.0)))
        ));
    }
    line
}
