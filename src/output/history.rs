//! `--history`: a lock's last holders, newest first, as a table or a JSON list of entries.

use super::locks::{print_stamp, stamp_json};
use super::{print_json, print_table};
use crate::config::{Format, LockName};
use crate::history::Entry;
use crate::stamp::Found;
use crate::view::clean;

/// The entries as `history::read` returns them, newest first.
/// `stamp` is the `--min-interval` stamp, if one stands: in JSON, on the entry of the run that
/// left it (`min_interval`); as text, a line after the table.
pub fn print_history(format: Format, name: &LockName, entries: &[Entry], stamp: Option<&Found>) {
    if format == Format::Json {
        let stamped = stamp.and_then(|f| Some(f.stamp.as_ref()?.token));
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                // An Entry is plain strings and numbers: it always serializes.
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let (Some(found), true) = (stamp, stamped == Some(e.token)) {
                    v["min_interval"] = stamp_json(found);
                }
                v
            })
            .collect();
        return print_json(&serde_json::Value::Array(list));
    }
    if entries.is_empty() {
        say!("{name}: no history");
        print_stamp(stamp);
        return;
    }
    let rows: Vec<[String; 8]> = entries.iter().map(row).collect();
    let header = [
        "TOKEN", "TOOK", "WAITED", "HELD", "HOST", "MODE", "OUTCOME", "REASON",
    ];
    print_table(header, &rows);
    print_stamp(stamp);
}

fn row(e: &Entry) -> [String; 8] {
    let text = |s: &Option<String>| {
        s.as_deref()
            .map(|s| clean(s, 60))
            .unwrap_or_else(|| "-".into())
    };
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into());
    [
        e.token.to_string(),
        text(&e.took),
        secs(e.waited_s),
        secs(e.held_s),
        text(&e.host),
        text(&e.mode),
        outcome(e),
        text(&e.reason),
    ]
}

/// The outcome with what it needs to be read: `exit 3`, `signal SIGKILL`, `unlocked by node-2`.
fn outcome(e: &Entry) -> String {
    let mut out = clean(&e.outcome, 20);
    if let Some(code) = e.exit_code {
        out.push_str(&format!(" {code}"));
    }
    if let Some(signal) = &e.signal {
        out.push_str(&format!(" {}", clean(signal, 20)));
    }
    if let Some(by) = &e.unlocked_by {
        out.push_str(&format!(" by {}", clean(by, 60)));
    }
    out
}
