//! Every option, defined once: its flag, `DISTLOCK_*` variable, YAML key, default, parser and
//! documentation. The clap definition (and through it `--help`, the man page and the
//! completions), the YAML file's keys, the layering, `--show-config`, the README's table and
//! the two shipped YAML files are all made from this table.
//!
//! The bottom layer of the binary's settings: `cli` builds the command line from this table and
//! `config` resolves the values, so this module imports neither.
//!
//! Adding a setting: one `Def` here (or in `etcd.rs`, for how to reach etcd), one entry in
//! `OPTIONS`, and the code that reads it (`Config::resolve` puts the value into `Config`).
//! Then `DISTLOCK_BLESS=1 cargo test docs` rewrites the README table and the YAML files.

use std::time::Duration;
use values::{Expiry, Format, LockName, OnLost, Wait};

mod etcd;
pub mod values;
pub use etcd::{CACERT, CERT, ENDPOINTS, KEY, MAXTIME, PASSWORD, PASSWORD_FILE, PREFIX, USER};

/// An option's specification: how it is spelled (flag, variable, YAML key), its default as
/// text, and its documentation. A `Def` adds the parser of its value.
pub struct OptionSpec {
    /// The clap id, the YAML key (when `yaml` is not `No`) and the name `--show-config` shows.
    pub name: &'static str,
    pub yaml: Yaml,
    /// The long flag, without dashes; `None` for a variable that must not be a flag.
    pub flag: Option<&'static str>,
    pub short: Option<char>,
    pub env: Option<&'static str>,
    /// The value's placeholder in `--help`; `None` for a switch.
    pub value: Option<&'static str>,
    /// The built-in default, as a user would write it; parsed like one.
    pub default: Option<&'static str>,
    /// What the documentation says about the default, when that is more than `default`.
    pub default_doc: Option<&'static str>,
    /// One line, for `--help`, the man page and the README's table.
    pub help: &'static str,
    /// More for the YAML files' comments; may be empty. (This and `example` are read by the
    /// tests that make the YAML files.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub more: &'static str,
    /// The value distlock.yaml.example shows (YAML text); `None`: shown commented out, as
    /// `default`, because a made-up value would not work (certificates, passwords).
    #[cfg_attr(not(test), allow(dead_code))]
    pub example: Option<&'static str>,
    /// Shapes only how a command runs: as a flag to a mode that runs none it is refused
    /// (`config::mode`); from the file or the environment that mode ignores it.
    pub run_only: bool,
    /// Chooses what distlock does (`--lock`, `--extend`, ...) rather than how: at most one
    /// mode is given.
    pub mode: bool,
}

/// Whether and how the YAML file may give an option.
#[derive(Clone, Copy, PartialEq)]
pub enum Yaml {
    No,
    Scalar,
    /// A YAML list (the flag and the variable take a comma-separated one).
    List,
}

/// A setting whose value is layered (default < file < variable < flag) and typed by `parse`.
pub struct Def<T> {
    pub spec: OptionSpec,
    pub parse: fn(&str) -> Result<T, String>,
}

/// An option with a name and help and nothing else, to fill in with `..spec(name, help)`.
const fn spec(name: &'static str, help: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        yaml: Yaml::No,
        flag: None,
        short: None,
        env: None,
        value: None,
        default: None,
        default_doc: None,
        help,
        more: "",
        example: None,
        run_only: false,
        mode: false,
    }
}

/// A mode: a flag named `name` and nothing else (no variable, no YAML key).
const fn mode(name: &'static str, help: &'static str) -> OptionSpec {
    OptionSpec {
        flag: Some(name),
        mode: true,
        ..spec(name, help)
    }
}

/// A setting that has a flag, a variable and a YAML key, all named after `name`.
const fn setting(
    name: &'static str,
    flag: &'static str,
    env: &'static str,
    value: &'static str,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        yaml: Yaml::Scalar,
        flag: Some(flag),
        env: Some(env),
        value: Some(value),
        ..spec(name, help)
    }
}

pub const LOCK: OptionSpec = mode(
    "lock",
    "Acquire the lock, print its key and fencing token, and exit 0 with the lock still held",
);

/// `--unlock`, or `--unlock=KEY` (never the next word, which may be the command).
pub const UNLOCK: OptionSpec = OptionSpec {
    value: Some("KEY"),
    ..mode(
        "unlock",
        "Release the lock, whoever holds it; --unlock=KEY releases that holder (the key from \
         --status) when several hold it",
    )
};

pub const LIST: OptionSpec = mode(
    "list",
    "Show all locks under the prefix; exit 0 if one is held, 1 if none is",
);

pub const STATUS: OptionSpec = mode(
    "status",
    "Show one lock: its holder and waiters; exit 0 if it is held, 1 if it is free",
);

pub const HISTORY: OptionSpec = mode(
    "history",
    "Show the lock's history: its last holders, newest first, and how each ended",
);

pub const SHOW_CONFIG: OptionSpec = mode(
    "show-config",
    "Print every effective setting and where it came from, then exit",
);

/// A `--kill-grace` default is at most TTL/`KILL_GRACE_DEFAULT_DIVISOR`, and no kill grace may
/// exceed TTL/`KILL_GRACE_MAX_DIVISOR`, so that the command is gone before the lease expires.
pub const KILL_GRACE_DEFAULT_DIVISOR: u32 = 4;
pub const KILL_GRACE_MAX_DIVISOR: u32 = 2;

pub const LOCK_NAME: Def<LockName> = Def {
    spec: OptionSpec {
        more: "Required except for --list; usually given per job on the command line rather \
               than here.",
        example: Some("percona_prod"),
        ..setting(
            "lockname",
            "lock-name",
            "DISTLOCK_LOCKNAME",
            "NAME",
            "Name of the lock (1-255 bytes, no '/', whitespace or control characters)",
        )
    },
    parse: LockName::parse,
};

pub const REASON: Def<String> = Def {
    spec: OptionSpec {
        default: Some(""),
        example: Some("\"Upgrade RPMs on node-3\""),
        ..setting(
            "reason",
            "reason",
            "DISTLOCK_REASON",
            "TEXT",
            "Stored with the lock and shown to everyone who waits or looks",
        )
    },
    parse: values::text,
};

pub const MAX_HOLDERS: Def<u32> = Def {
    spec: OptionSpec {
        default: Some("1"),
        more: "A semaphore, like consul lock -n: up to N contenders hold the lock at once, the \
               rest wait in arrival order. 1 is a plain mutex (and what etcdctl lock does). \
               Every contender of a lock must use the same N; set it per job, not fleet-wide.",
        example: Some("3"),
        ..setting(
            "max_holders",
            "max-holders",
            "DISTLOCK_MAX_HOLDERS",
            "N",
            "Let up to N contenders hold the lock at once (a semaphore); 1 is a mutex",
        )
    },
    parse: values::max_holders,
};

pub const SHARED: Def<bool> = Def {
    spec: OptionSpec {
        default: Some("false"),
        more: "Readers/writer, like flock -s: shared holders run side by side; an exclusive \
               one (the default, and every etcdctl lock) runs alone. A shared contender that \
               arrives after a waiting exclusive one queues behind it. Not with max_holders.",
        example: Some("false"),
        // A switch: `--shared` (`-s`, as flock), DISTLOCK_SHARED=1, `shared: true`.
        value: None,
        short: Some('s'),
        ..setting(
            "shared",
            "shared",
            "DISTLOCK_SHARED",
            "",
            "Take the lock shared: run beside other shared holders, never beside an exclusive one",
        )
    },
    parse: values::switch,
};

/// A modifier of `--list` and `--status`, not a mode: a flag and nothing else.
pub const FOLLOW: OptionSpec = OptionSpec {
    flag: Some("follow"),
    ..spec(
        "follow",
        "With --list or --status: then print a line per event (queued, took, released, ...) \
         until interrupted",
    )
};

pub const NOWAIT: OptionSpec = OptionSpec {
    flag: Some("nowait"),
    short: Some('n'),
    ..spec(
        "nowait",
        "Fail at once when the lock is busy (same as --timeout=0)",
    )
};

pub const TIMEOUT: Def<Wait> = Def {
    spec: OptionSpec {
        default: Some("-1"),
        more: "0 fails at once when busy. --nowait on the command line overrides it.",
        example: Some("10m"),
        short: Some('w'),
        ..setting(
            "timeout",
            "timeout",
            "DISTLOCK_TIMEOUT",
            "T",
            "Longest wait: seconds (30, 0.5) or a duration (90s, 5m); -1 waits forever",
        )
    },
    parse: values::timeout,
};

/// A mode with a value, like `--lock` and `--unlock` a flag only: a variable or a YAML key
/// would turn every run into an extension. In `OPTIONS`, not `MODES`, for its place in
/// `--help` and the README's table.
pub const EXTEND: Def<Expiry> = Def {
    spec: OptionSpec {
        value: Some("D"),
        ..mode(
            "extend",
            "Make the lock taken with --lock expire D from now (never: not at all); from any node",
        )
    },
    parse: values::expiry,
};

pub const HOLDER: OptionSpec = OptionSpec {
    flag: Some("holder"),
    value: Some("KEY"),
    ..spec(
        "holder",
        "With --extend or --unlock: the holder to act on when several hold the lock, by its key \
         or lease id (see --status)",
    )
};

/// `-c CMD`, as flock has it: one shell command line, run as `/bin/sh -c CMD`, instead of a
/// command after `--`.
pub const SHELL_COMMAND: OptionSpec = OptionSpec {
    flag: Some("command"),
    short: Some('c'),
    value: Some("CMD"),
    ..spec(
        "shell_command",
        "Run the shell command line CMD (/bin/sh -c CMD), as flock -c; instead of -- COMMAND",
    )
};

pub const CONFIG: OptionSpec = OptionSpec {
    flag: Some("config"),
    env: Some("DISTLOCK_CONFIG"),
    value: Some("FILE"),
    default: Some("/etc/distlock/distlock.yaml"),
    ..spec(
        "config",
        "YAML configuration file; a missing default file is fine, a missing named one is an error",
    )
};

pub const TTL: Def<Duration> = Def {
    spec: OptionSpec {
        default: Some("10s"),
        more: "Whole seconds. If this host stops talking to etcd (crash, network split), its \
               lock frees itself after about this long. Only a --ttl or DISTLOCK_TTL given for \
               one run makes a --lock expire; this file's value never does.",
        example: Some("30s"),
        ..setting(
            "ttl",
            "ttl",
            "DISTLOCK_TTL",
            "T",
            "Lease TTL while the command runs; with --lock the lock expires after T instead of never",
        )
    },
    parse: values::whole_seconds,
};

pub const HOLD_AT_LEAST: Def<Duration> = Def {
    spec: OptionSpec {
        run_only: true,
        more: "The lock then stays on a lease that expires by itself; distlock does not wait. \
               Stops a cron job that runs on many servers with clocks a few seconds apart from \
               running twice.",
        example: Some("1m"),
        ..setting(
            "hold_at_least",
            "hold-at-least",
            "DISTLOCK_HOLD_AT_LEAST",
            "D",
            "Keep the lock at least D after taking it, even if the command ends sooner",
        )
    },
    parse: values::whole_seconds,
};

pub const MIN_INTERVAL: Def<Duration> = Def {
    spec: OptionSpec {
        run_only: true,
        more: "Whole seconds. A run whose command exits 0 leaves a stamp in etcd on a lease of \
               this TTL; until etcd expires it, every later run under the lock name, on any \
               server, is skipped: the command does not run and distlock exits 1 (see \
               conflict_exit_code). etcd counts the interval, not the servers' clocks; it may \
               lengthen it on a leader change, never shorten it. Set it per job.",
        example: Some("1h"),
        ..setting(
            "min_interval",
            "min-interval",
            "DISTLOCK_MIN_INTERVAL",
            "D",
            "Run at most once per D, fleet-wide: skip (exit 1) until D has passed since the last \
             run that exited 0 started",
        )
    },
    parse: values::whole_seconds,
};

pub const MAX_RUNTIME: Def<Duration> = Def {
    spec: OptionSpec {
        run_only: true,
        more: "Counted from the command's start; waiting for the lock does not count. The \
               command's process group gets SIGTERM, then SIGKILL after kill_grace; the lock \
               is released (or kept as hold_at_least says) and distlock exits 124, or 137 \
               when SIGKILL was needed, as timeout(1) does.",
        example: Some("2h"),
        ..setting(
            "max_runtime",
            "max-runtime",
            "DISTLOCK_MAX_RUNTIME",
            "D",
            "Stop the command if it runs longer than D (exit 124, 137 after SIGKILL)",
        )
    },
    parse: values::positive_duration,
};

pub const ON_LOST: Def<OnLost> = Def {
    spec: OptionSpec {
        run_only: true,
        default: Some("kill"),
        more: "The lock is lost when etcd is unreachable longer than the TTL allows, or on an \
               operator's --unlock. kill terminates the command and its process group before \
               the lease can expire (SIGTERM, kill_grace, then SIGKILL); warn lets it finish. \
               Either way distlock exits 4.",
        example: Some("kill"),
        ..setting(
            "on_lost",
            "on-lost",
            "DISTLOCK_ON_LOST",
            "POLICY",
            "When the lock is lost while the command runs: kill it or only warn",
        )
    },
    parse: values::on_lost,
};

pub const KILL_GRACE: Def<Duration> = Def {
    spec: OptionSpec {
        run_only: true,
        default: Some("2s"),
        default_doc: Some("2s, at most TTL/4"),
        example: Some("5s"),
        ..setting(
            "kill_grace",
            "kill-grace",
            "DISTLOCK_KILL_GRACE",
            "D",
            "Time between SIGTERM and SIGKILL when the command must stop; at most TTL/2",
        )
    },
    parse: values::positive_duration,
};

pub const HISTORY_SIZE: Def<u32> = Def {
    spec: OptionSpec {
        default: Some("20"),
        more: "Each run, --lock/--unlock pair and forced release leaves one entry (who, why, \
               when, how long, how it ended) under <prefix>.distlock/history/<name>/; the \
               writer removes older ones. 0 writes none. Shown by --history.",
        example: Some("20"),
        ..setting(
            "history_size",
            "history-size",
            "DISTLOCK_HISTORY_SIZE",
            "N",
            "How many history entries etcd keeps per lock (0: no history)",
        )
    },
    parse: values::history_size,
};

pub const CONFLICT_EXIT_CODE: Def<u8> = Def {
    spec: OptionSpec {
        default: Some("1"),
        more: "E.g. 75 (EX_TEMPFAIL) tells \"busy\" apart from the command's own exit 1.",
        example: Some("75"),
        short: Some('E'),
        ..setting(
            "conflict_exit_code",
            "conflict-exit-code",
            "DISTLOCK_CONFLICT_EXIT_CODE",
            "N",
            "Exit code for \"not acquired\" and \"unlock of a free lock\", like flock -E",
        )
    },
    parse: values::exit_code,
};

pub const OUTPUT: Def<Format> = Def {
    spec: OptionSpec {
        default: Some("text"),
        more: "json is a stable shape for monitoring, documented in the contract; prometheus \
               (--list only) is node_exporter's textfile format.",
        example: Some("text"),
        ..setting(
            "output",
            "output",
            "DISTLOCK_OUTPUT",
            "FORMAT",
            "Output of --status, --list, --history, --lock, --unlock, --extend and --show-config: \
             text or json; --list also prometheus",
        )
    },
    parse: values::output,
};

pub const LOG_FORMAT: Def<Format> = Def {
    spec: OptionSpec {
        default: Some("text"),
        example: Some("text"),
        ..setting(
            "log_format",
            "log-format",
            "DISTLOCK_LOG_FORMAT",
            "FORMAT",
            "Diagnostics on stderr as text or json lines, for log shippers",
        )
    },
    parse: values::format,
};

pub const QUIET: OptionSpec = OptionSpec {
    flag: Some("quiet"),
    short: Some('q'),
    ..spec(
        "quiet",
        "Say less: no progress lines, and nothing when the lock is skipped (busy with -n, -w \
         passed; the exit code tells); errors still print",
    )
};

pub const VERBOSE: OptionSpec = OptionSpec {
    flag: Some("verbose"),
    short: Some('v'),
    ..spec(
        "verbose",
        "Say more (-vv for etcd-level detail); DISTLOCK_LOG takes a tracing filter",
    )
};

/// The modes `--help` shows first, before `OPTIONS`.
pub const MODES: &[&OptionSpec] = &[&LOCK, &UNLOCK, &LIST, &STATUS, &HISTORY, &SHOW_CONFIG];

/// Every option but the modes above, in the order of `--help`, the README and `--show-config`.
pub const OPTIONS: &[&OptionSpec] = &[
    &LOCK_NAME.spec,
    &REASON.spec,
    &MAX_HOLDERS.spec,
    &SHARED.spec,
    &EXTEND.spec,
    &HOLDER,
    &FOLLOW,
    &SHELL_COMMAND,
    &NOWAIT,
    &TIMEOUT.spec,
    &ENDPOINTS.spec,
    &PREFIX.spec,
    &CONFIG,
    &TTL.spec,
    &MAXTIME.spec,
    &HOLD_AT_LEAST.spec,
    &MIN_INTERVAL.spec,
    &MAX_RUNTIME.spec,
    &ON_LOST.spec,
    &KILL_GRACE.spec,
    &HISTORY_SIZE.spec,
    &CONFLICT_EXIT_CODE.spec,
    &OUTPUT.spec,
    &LOG_FORMAT.spec,
    &CACERT.spec,
    &CERT.spec,
    &KEY.spec,
    &USER.spec,
    &PASSWORD_FILE.spec,
    &PASSWORD,
    &QUIET,
    &VERBOSE,
];

/// The YAML keys the file may hold, in table order.
pub fn yaml_keys() -> impl Iterator<Item = &'static OptionSpec> {
    OPTIONS.iter().copied().filter(|d| d.yaml != Yaml::No)
}

/// The option whose YAML key is `key`.
pub fn by_key(key: &str) -> Option<&'static OptionSpec> {
    yaml_keys().find(|d| d.name == key)
}

impl OptionSpec {
    /// The default as the documentation shows it.
    pub fn shown_default(&self) -> Option<&'static str> {
        self.default_doc.or(self.default)
    }
}
