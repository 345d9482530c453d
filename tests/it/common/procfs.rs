//! What /proc says about processes: children, process groups, names, thread states.

use std::fs;

/// The pids of the running children of `pid` (of all its threads).
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let path = task.unwrap().path().join("children");
        let list = fs::read_to_string(path).unwrap_or_default();
        found.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    found
}

/// Every process of process group `group`: its pid and its state (`Z` for a zombie).
pub fn group_members(group: i32) -> Vec<(i32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the ')'.
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields.get(2)? == &group.to_string()).then(|| (pid, fields[0].to_string()))
        })
        .collect()
}

/// The executable name of a process (`/proc/<pid>/comm`), empty once it is gone.
pub fn comm(pid: impl std::fmt::Display) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether every thread of process `pid` is stopped (state `T`, after SIGSTOP).
pub fn all_threads_stopped(pid: impl std::fmt::Display) -> bool {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks.flatten().all(|task| {
        let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state letter follows the command name, which is in parentheses.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        state.is_some_and(|s| s.starts_with('T'))
    })
}
