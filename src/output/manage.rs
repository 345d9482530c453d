//! What `--unlock` and `--extend` say they did: one line on stderr (`-q` silences it), or with
//! `--output=json` one JSON object on stdout, as `--lock`'s result is.

use super::print_json;
use crate::config::{Format, LockName};
use crate::queue::Contender;
use crate::record::Mode;
use crate::view::{clean, human_duration, utc, Kind, View};
use serde_json::json;
use std::time::{Duration, SystemTime};

/// `--unlock`: whose lock was released, and what becomes of its command.
pub fn print_unlocked(format: Format, name: &LockName, released: &View) {
    match format {
        Format::Json => print_json(&json!({ "lock": name.to_string(), "released": released })),
        // Prometheus is for --list only (config refuses it here).
        Format::Text | Format::Prometheus => tracing::info!("{}", unlocked_line(name, released)),
    }
}

/// `released percona_prod held by node-3 pid 4242 (running yum) for 12m 3s (reason "Upgrade
/// RPMs"); its command will be stopped`.
fn unlocked_line(name: &LockName, v: &View) -> String {
    let host = clean(v.host.as_deref().unwrap_or("?"), 100);
    let host = match v.this_host {
        true => format!("this host ({host})"),
        false => host,
    };
    let who = match (v.kind, v.exited()) {
        (Kind::Distlock, Some(how)) => {
            format!("{host} pid {} (exited; {how})", v.pid.unwrap_or_default())
        }
        (Kind::Distlock, None) => {
            let program = v.program.as_deref().map(|p| clean(p, 100));
            match (v.mode, program) {
                (Some(Mode::Run), Some(p)) => {
                    format!("{host} pid {} (running {p})", v.pid.unwrap_or_default())
                }
                _ => format!("{host} pid {}", v.pid.unwrap_or_default()),
            }
        }
        _ => v.who(false),
    };
    let age = v
        .age_seconds
        .map(|s| format!(" for {}", human_duration(s)))
        .unwrap_or_default();
    let reason = match v.reason.as_deref() {
        Some("") | None => String::new(),
        Some(r) => format!(" (reason \"{}\")", clean(r, 200)),
    };
    // Only a running distlock has a command to stop; what it does is its --on-lost.
    let then = match (v.kind, v.mode, v.renewed) {
        (Kind::Distlock, Some(Mode::Run), true) => match v.on_lost.as_deref() {
            Some("kill") => "; its command will be stopped",
            Some("warn") => {
                "; its command is left to finish, and distlock there warns that the lock is \
                 lost (--on-lost=warn)"
            }
            _ => "; its command will be stopped, unless it runs with --on-lost=warn",
        },
        _ => "",
    };
    format!(
        "released {} held by {who}{age}{reason}{then}",
        clean(&name.to_string(), 255)
    )
}

/// `--extend`: the key, on which lease it is now, and when it expires (`None`: never).
pub fn print_extended(
    format: Format,
    name: &LockName,
    holder: &Contender,
    expiry: Option<Duration>,
) {
    let at = expiry.map(|d| SystemTime::now() + d);
    match format {
        Format::Json => print_json(&json!({
            "lock": name.to_string(),
            "key": holder.key,
            "fencing_token": holder.create_revision,
            "lease": (holder.lease != 0).then(|| format!("{:x}", holder.lease)),
            "expires_in_seconds": expiry.map(|d| d.as_secs()),
            "expires_at": at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        })),
        Format::Text | Format::Prometheus => match (expiry, at) {
            (Some(d), Some(at)) => tracing::info!(
                "{} now expires in {}, at {}",
                clean(&holder.key, 300),
                human_duration(d.as_secs()),
                utc(at)
            ),
            _ => tracing::info!(
                "{} now never expires: it is held until unlocked",
                clean(&holder.key, 300)
            ),
        },
    }
}

/// The holder a `--lock` waits for, when it is a `--lock` of this very host (a rerun after a
/// failed run, say), which only an `--unlock` ends: `this host (node-3, --lock since 14:02
/// UTC, reason "…"); distlock --lock-name=NAME --unlock releases it`. `None` otherwise.
pub fn own_lock(name: &str, holder: &Contender) -> Option<String> {
    let v = View::of(holder);
    if v.kind != Kind::Distlock || !v.this_host || v.mode != Some(Mode::Lock) {
        return None;
    }
    let since = v
        .since
        .as_deref()
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .map(|t| format!(" since {}", time_of_day(t)))
        .unwrap_or_default();
    let reason = match v.reason.as_deref() {
        Some("") | None => String::new(),
        Some(r) => format!(", reason \"{}\"", clean(r, 200)),
    };
    Some(format!(
        "this host ({}, --lock{since}{reason}); distlock --lock-name={name} --unlock releases it",
        clean(v.host.as_deref().unwrap_or("?"), 100)
    ))
}

/// `14:02 UTC` today, `2026-12-05 14:02 UTC` another day.
fn time_of_day(at: SystemTime) -> String {
    // `utc` writes `2026-12-05 14:02:07 UTC`: the day is its first 10 characters.
    let minute: String = utc(at).chars().take(16).collect();
    let today: String = utc(SystemTime::now()).chars().take(10).collect();
    match minute.strip_prefix(&today) {
        Some(time) => format!("{} UTC", time.trim_start()),
        None => format!("{minute} UTC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn released(record: Record) -> String {
        let record = Record {
            host: "node-3".into(),
            pid: 4242,
            reason: "Upgrade RPMs".into(),
            ..record
        };
        let c = Contender {
            key: "/distlock/percona_prod/1".into(),
            value: record.to_json(),
            create_revision: 5,
            lease: 1,
        };
        let view = View {
            age_seconds: Some(723),
            ..View::of(&c)
        };
        let name = crate::config::LockName::parse("percona_prod").unwrap();
        unlocked_line(&name, &view)
    }

    #[test]
    fn unlock_says_whose_lock_and_what_becomes_of_its_command() {
        let run = Record::new(Mode::Run, Some("yum".into()), "", None);
        let head = "released percona_prod held by node-3 pid 4242";
        assert_eq!(
            released(run.clone().on_lost("kill")),
            format!(
                "{head} (running yum) for 12m 3s (reason \"Upgrade RPMs\"); \
                 its command will be stopped"
            )
        );
        assert!(released(run.clone().on_lost("warn")).ends_with(
            "left to finish, and distlock there warns that the lock is lost (--on-lost=warn)"
        ));
        // An older distlock's record does not say.
        assert!(released(run)
            .ends_with("; its command will be stopped, unless it runs with --on-lost=warn"));
        assert_eq!(
            released(Record::new(Mode::Lock, None, "", None)),
            format!("{head} (exited; --lock) for 12m 3s (reason \"Upgrade RPMs\")")
        );
    }
}
