//! `--history`: a lock's last holders, newest first, as a table or a JSON list of entries.

use super::print_json;
use crate::config::{Format, LockName};
use crate::history::Entry;
use crate::view::clean;

/// The entries as `history::read` returns them, newest first.
pub fn print_history(format: Format, name: &LockName, entries: &[Entry]) {
    if format == Format::Json {
        // An Entry is plain strings and numbers: it always serializes.
        let list = serde_json::to_value(entries).unwrap_or_default();
        return print_json(&list);
    }
    if entries.is_empty() {
        say!("{name}: no history");
        return;
    }
    let rows: Vec<[String; 8]> = entries.iter().map(row).collect();
    let header = [
        "TOKEN", "TOOK", "WAITED", "HELD", "HOST", "MODE", "OUTCOME", "REASON",
    ]
    .map(String::from);
    let mut widths = [0; 8];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        say!("{}", cells.join("  ").trim_end());
    }
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
