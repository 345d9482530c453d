//! distlock's exit codes, each named once, with the table `--help`, the man page's EXIT
//! STATUS and the README document.

/// Done: the lock was taken, released or shown; or the command exited 0.
pub const OK: u8 = 0;
/// Not acquired (busy), or nothing to unlock: the default of the `conflict_exit_code`
/// setting, which can change it.
pub const NOT_ACQUIRED: u8 = 1;
/// Bad command line, environment or configuration file; nothing was changed in etcd.
pub const USAGE: u8 = 2;
/// etcd could not be reached, refused the request, or rejected the credentials; or a TLS
/// certificate was not accepted (etcd's by us, or ours by etcd).
pub const ETCD: u8 = 3;
/// The lock was lost while the command ran.
pub const LOST: u8 = 4;
/// The command ran longer than `--max-runtime` and was stopped, as `timeout(1)` reports it.
pub const TIMED_OUT: u8 = 124;
/// The command exists but could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;

/// The status of a process killed by `signal`, as a shell reports it: 128+N.
pub fn killed_by(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// Code and meaning, as documented. "Not acquired" is the `conflict_exit_code` setting, whose
/// default (1) the settings table holds.
pub const TABLE: &[(&str, &str)] = &[
    (
        "0",
        "done: lock taken (--lock), released (--unlock), listed; or the command exited 0",
    ),
    (
        "1",
        "not acquired (busy with --nowait, --timeout passed); --unlock of a free lock \
         (--conflict-exit-code changes it)",
    ),
    (
        "2",
        "usage or configuration error; nothing was changed in etcd",
    ),
    (
        "3",
        "etcd unreachable, refused the request, or rejected the credentials or a TLS \
         certificate (etcd's or ours); or our key was deleted by another client while we \
         waited",
    ),
    ("4", "the lock was lost while the command ran"),
    (
        "124",
        "the command ran longer than --max-runtime and was stopped (as timeout(1))",
    ),
    (
        "126/127",
        "the command could not be executed / was not found (the lock was released)",
    ),
    ("128+N", "the command was killed by signal N"),
    ("other", "the command's own exit status"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_documents_every_code() {
        let codes: Vec<&str> = TABLE.iter().map(|(code, _)| *code).collect();
        let named = [OK, USAGE, ETCD, LOST, TIMED_OUT].map(|c| c.to_string());
        for code in &named {
            assert!(codes.contains(&code.as_str()), "{code} is not documented");
        }
        assert!(codes.contains(&format!("{CANNOT_EXECUTE}/{NOT_FOUND}").as_str()));
        assert_eq!(killed_by(2), 130);
        assert_eq!(killed_by(15), 143);
    }
}
