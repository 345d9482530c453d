//! Property tests of everything distlock parses: lock names, durations and timeouts, the
//! whole configuration (flags and a YAML file of any content), and whatever a contender's key
//! holds in etcd. Each answers with a value or an error and never panics; what is accepted
//! keeps the promises the rest of the program relies on.

use crate::cli::Cli;
use crate::config::{Config, LockName, Wait};
use crate::queue::Contender;
use crate::record::{Mode, Record};
use crate::settings;
use crate::settings::values::{
    duration as parse_duration, expiry as parse_expiry, max_holders as parse_max_holders,
    timeout as parse_timeout, Expiry, MAX_HOLDERS,
};
use crate::view::View;
use proptest::prelude::*;
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

/// etcd's longest lease (`MaxLeaseTTL`, 9 000 000 000 s): no duration distlock works with needs
/// to be longer, and every one this long still fits a clock.
const LONGEST: Duration = Duration::from_secs(9_000_000_000);

fn is_forbidden(c: char) -> bool {
    c == '/' || c.is_whitespace() || c.is_control()
}

/// '/', every kind of whitespace (ASCII, Unicode, line separators) and control characters.
fn forbidden_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '/', ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{1680}',
            '\u{2000}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
            '\u{7f}', '\u{9f}',
        ]),
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
    ]
}

/// Names made of allowed characters only, of 1 to 255 bytes.
fn valid_name() -> impl Strategy<Value = String> {
    "[^/\\s\\p{Cc}]{1,63}".prop_filter("at most 255 bytes", |n| n.len() <= 255)
}

/// Command lines made of these words, after `distlock --config=/dev/null` so that no file on
/// this machine plays a part.
fn cli(words: &[String]) -> Option<Cli> {
    let mut args: Vec<OsString> = vec!["distlock".into(), "--config=/dev/null".into()];
    args.extend(words.iter().map(OsString::from));
    Cli::parse_from_args(args).ok()
}

/// Resolves `--show-config` with `content` as the configuration file; the error as text.
fn resolve_with_file(content: &str) -> (tempfile::NamedTempFile, Result<(), String>) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content.as_bytes()).unwrap();
    let args: Vec<OsString> = vec![
        "distlock".into(),
        "--config".into(),
        file.path().as_os_str().to_owned(),
        "--show-config".into(),
    ];
    let cli = Cli::parse_from_args(args).unwrap();
    let result = Config::resolve(cli).map(drop).map_err(|e| e.to_string());
    (file, result)
}

/// Every flag of the settings table that takes a value, but the files' (read here).
fn value_flags() -> Vec<String> {
    settings::OPTIONS
        .iter()
        .filter(|d| d.yaml != settings::Yaml::No && d.value != Some("FILE"))
        .filter_map(|d| d.flag)
        .map(|flag| format!("--{flag}"))
        .chain(["--cert".into(), "--key".into()])
        .collect()
}

/// The durations a resolved configuration holds.
fn durations(config: &Config) -> Vec<(&'static str, Duration)> {
    let mut all = vec![
        ("ttl", config.ttl),
        ("maxtime", config.maxtime),
        ("kill_grace", config.kill_grace),
    ];
    if let Wait::Upto(d) = config.wait {
        all.push(("timeout", d));
    }
    all.extend(config.lock_ttl.map(|d| ("lock ttl", d)));
    all.extend(config.hold_at_least.map(|d| ("hold_at_least", d)));
    all.extend(config.min_interval.map(|d| ("min_interval", d)));
    all.extend(config.max_runtime.map(|d| ("max_runtime", d)));
    all
}

/// Text that looks like a distlock configuration file, with every kind of mistake in it.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        // Every key of the settings table, and the Go tool's ignored one.
        prop::sample::select(
            settings::yaml_keys()
                .map(|d| d.name)
                .chain(["internallock"])
                .collect::<Vec<_>>(),
        )
        .prop_map(String::from),
        "[a-zA-Z_\\-\"'\\[{:#&*!|>%@`]{1,12}",
        // Double-quoted keys with escapes: a newline or a terminal escape in an error message.
        "\"[a-z]{0,3}\\\\(n|r|t|e|a|x1b|x7f|u2028|N)\\[?[a-z0-9]{0,3}\"",
        any::<String>(),
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "1.5",
            "30",
            "90s",
            "5m",
            "soon",
            "~",
            "null",
            "true",
            "[]",
            "{}",
            "[a, b]",
            "{a: 1}",
            "\"unterminated",
            "'x'",
            "&anchor x",
            "*alias",
            "!!binary aGk=",
            "18446744073709551615",
            "99999999999999999999",
            "-9223372036854775808",
            "1e400",
            ".nan",
            "http://127.0.0.1:2379",
            "ftp://x",
            "kill",
            "warn",
            "json",
            "xml",
            "\n  - http://a\n  - b",
            "\n  nested: map",
            "|\n  block\n  text",
            "\t",
        ])
        .prop_map(String::from),
        any::<String>(),
    ];
    prop::collection::vec((key, value, "[ \t]{0,2}"), 0..6).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(k, v, indent)| format!("{indent}{k}: {v}\n"))
            .collect()
    })
}

/// What another tool may have stored in a contender's key: anything, something close to the
/// Go tool's `<unix-seconds>;<host>;<reason>`, or something close to distlock's record.
fn stored_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        (any::<u64>(), any::<String>(), any::<String>())
            .prop_map(|(secs, host, reason)| format!("{secs};{host};{reason}").into_bytes()),
        (0u64..400_000_000_000, "[^;]{0,20}")
            .prop_map(|(secs, host)| format!("{secs};{host};why").into_bytes()),
        (
            any::<String>(),
            any::<u32>(),
            any::<String>(),
            any::<Option<u64>>()
        )
            .prop_map(|(since, pid, host, ttl)| {
                serde_json::json!({
                    "format": 1, "host": host, "pid": pid, "user": "u", "reason": "r",
                    "since": since, "mode": "run", "program": null, "ttl": ttl,
                })
                .to_string()
                .into_bytes()
            }),
    ]
}

fn contender() -> impl Strategy<Value = Contender> {
    (
        prop_oneof![
            any::<String>(),
            "/distlock/[a-z]{1,5}",
            "/distlock/[a-z]{1,5}/[0-9a-f]{1,16}"
        ],
        stored_value(),
        any::<i64>(),
        prop_oneof![Just(0i64), any::<i64>()],
    )
        .prop_map(|(key, value, create_revision, lease)| Contender {
            key,
            value,
            create_revision,
            lease,
        })
}

proptest! {
    #[test]
    fn valid_lock_names_round_trip(name in valid_name()) {
        let parsed = LockName::parse(&name);
        prop_assert!(parsed.is_ok(), "{name:?}: {parsed:?}");
        prop_assert_eq!(parsed.unwrap().to_string(), name);
    }

    #[test]
    fn names_with_a_forbidden_character_are_rejected(
        before in "[^/\\s\\p{Cc}]{0,20}",
        bad in forbidden_char(),
        after in any::<String>(),
    ) {
        let name = format!("{before}{bad}{after}");
        prop_assert!(LockName::parse(&name).is_err(), "{name:?} was accepted");
    }

    #[test]
    fn names_over_255_bytes_are_rejected(name in "[^/\\s\\p{Cc}]{64,300}") {
        prop_assume!(name.len() > 255);
        prop_assert!(LockName::parse(&name).is_err(), "{} bytes accepted", name.len());
    }

    #[test]
    fn any_name_is_accepted_or_rejected_and_accepted_ones_keep_the_rules(name in any::<String>()) {
        if let Ok(parsed) = LockName::parse(&name) {
            let text = parsed.to_string();
            prop_assert!(!text.is_empty() && text.len() <= 255);
            prop_assert!(!text.chars().any(is_forbidden), "{text:?}");
        }
    }

    #[test]
    fn whole_numbers_are_seconds(n in any::<u64>(), pad in "[ \t]{0,2}") {
        let text = format!("{pad}{n}{pad}");
        if Duration::from_secs(n) <= LONGEST {
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(n)));
            prop_assert_eq!(parse_timeout(&text), Ok(Wait::Upto(Duration::from_secs(n))));
        } else {
            // Longer than etcd's longest lease: refused, not overflowing a deadline later.
            prop_assert!(parse_duration(&text).is_err());
            prop_assert!(parse_timeout(&text).is_err());
        }
    }

    #[test]
    fn durations_with_units_add_up(
        parts in prop::collection::vec((0u64..10_000, prop::sample::select(vec![
            ("s", 1u64), ("m", 60), ("h", 3600), ("d", 86400),
        ])), 1..4),
    ) {
        let text: String = parts.iter().map(|(n, (unit, _))| format!("{n}{unit}")).collect();
        let secs: u64 = parts.iter().map(|(n, (_, scale))| n * scale).sum();
        prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(secs)));
    }

    #[test]
    fn duration_parsers_never_panic(text in any::<String>()) {
        let _ = parse_duration(&text);
        let _ = parse_timeout(&text);
    }

    #[test]
    fn duration_parsers_never_panic_on_near_misses(
        text in "[-+ ]?[0-9]{0,25}(\\.[0-9]{0,12})?[ ]?(ns|us|ms|s|m|h|d|w|M|y|x|sec|min|hours)?",
    ) {
        let _ = parse_duration(&text);
        let _ = parse_timeout(&text);
    }

    /// Whatever numbers a user gives, a configuration that resolves holds durations that fit
    /// etcd's leases and the clock (`Instant + d` does not overflow).
    #[test]
    fn resolved_durations_fit_etcd_and_the_clock(
        flag in prop::sample::select(vec![
            "--ttl", "--timeout", "--maxtime", "--hold-at-least", "--max-runtime",
        ]),
        secs in prop_oneof![1u64..100_000, any::<u64>()],
        lock in any::<bool>(),
    ) {
        let mode = if lock { "--lock" } else { "true" };
        let words = vec![
            "--lock-name=x".to_string(),
            format!("{flag}={secs}"),
            mode.to_string(),
        ];
        if let Some(config) = cli(&words).and_then(|c| Config::resolve(c).ok()) {
            for (name, d) in durations(&config) {
                prop_assert!(d <= LONGEST, "{words:?}: {name} of {d:?} was accepted");
                prop_assert!(std::time::Instant::now().checked_add(d).is_some());
            }
        }
    }

    /// Any values for the options that take one: resolving never panics, and an error is one
    /// line without raw control characters (main prints it after `distlock: `).
    #[test]
    fn any_option_values_resolve_or_fail_in_one_line(
        values in prop::collection::vec((
            prop::sample::select(value_flags()),
            any::<String>(),
        ), 1..5),
        mode in prop::sample::select(vec!["--lock", "--unlock", "--status", "--list", "--show-config", "true"]),
    ) {
        let mut words: Vec<String> =
            values.iter().map(|(flag, value)| format!("{flag}={value}")).collect();
        words.push(mode.to_string());
        if let Some(cli) = cli(&words) {
            if let Err(e) = Config::resolve(cli) {
                let text = e.to_string();
                prop_assert!(!text.chars().any(char::is_control), "{words:?}: {text:?}");
            }
        }
    }

    /// Any text as the configuration file: resolving never panics, and an error is one line
    /// with no raw control characters (it goes to a terminal or a cron mail).
    #[test]
    fn any_config_file_resolves_or_fails_in_one_line(
        content in prop_oneof![yamlish(), any::<String>()],
    ) {
        let (_file, result) = resolve_with_file(&content);
        if let Err(text) = result {
            prop_assert!(!text.chars().any(char::is_control), "{content:?}: {text:?}");
        }
    }

    /// When only the file is wrong (the same command line works with an empty file), the error
    /// says which file, so an operator knows where to look.
    #[test]
    fn errors_caused_by_the_config_file_name_it(content in yamlish()) {
        let (file, result) = resolve_with_file(&content);
        if let Err(text) = result {
            let (_empty, without) = resolve_with_file("");
            if without.is_ok() {
                let path = file.path().display().to_string();
                prop_assert!(text.contains(&path), "{content:?}: {text}");
            }
        }
    }

    /// `--max-holders`: exactly the whole numbers 1 to MAX_HOLDERS; 0, negatives and
    /// anything else are refused.
    #[test]
    fn max_holders_are_positive_whole_numbers(n in any::<i64>(), pad in "[ \t]{0,2}") {
        let parsed = parse_max_holders(&format!("{pad}{n}{pad}"));
        if (1..=i64::from(MAX_HOLDERS)).contains(&n) {
            prop_assert_eq!(parsed, Ok(n as u32));
        } else {
            prop_assert!(parsed.is_err(), "{n} was accepted");
        }
    }

    #[test]
    fn max_holders_parser_never_panics_and_accepts_only_digits(text in any::<String>()) {
        if let Ok(n) = parse_max_holders(&text) {
            prop_assert!((1..=MAX_HOLDERS).contains(&n));
            prop_assert!(text.trim().chars().all(|c| c.is_ascii_digit() || c == '+'), "{text:?}");
        }
    }

    /// `--extend`: `never`, or a positive whole number of seconds that fits a lease; a
    /// negative, zero, sub-second or unparsable one is refused.
    #[test]
    fn extensions_are_never_or_whole_positive_seconds(
        text in prop_oneof![
            any::<String>(),
            "-?[0-9]{1,12}(s|m|h|ms)?",
            Just("never".to_string()),
        ],
    ) {
        match parse_expiry(&text) {
            Ok(Expiry::Never) => prop_assert_eq!(text.trim(), "never"),
            Ok(Expiry::After(d)) => {
                prop_assert!(d >= Duration::from_secs(1) && d <= LONGEST);
                prop_assert_eq!(d.subsec_nanos(), 0);
                prop_assert!(!text.trim_start().starts_with('-'), "{text:?}");
            }
            Err(e) => prop_assert!(!e.chars().any(char::is_control)),
        }
    }

    /// `--max-runtime`, `--max-holders` and `--extend` through the whole configuration: a bad
    /// value is one usage error that names the option.
    #[test]
    fn bad_mode_values_are_one_line_naming_the_option(
        flag in prop::sample::select(vec!["--max-holders", "--max-runtime", "--extend"]),
        value in prop_oneof![Just("0".to_string()), Just("-5".to_string()), "[a-z]{1,6}"],
    ) {
        prop_assume!(value != "never");
        let mode = if flag == "--extend" { vec![] } else { vec!["true".to_string()] };
        let mut words = vec!["--lock-name=x".to_string(), format!("{flag}={value}")];
        words.extend(mode);
        let resolved = cli(&words).map(Config::resolve);
        prop_assert!(matches!(resolved, Some(Err(_))), "{words:?} was accepted");
        if let Some(Err(e)) = resolved {
            prop_assert_eq!(e.code(), 2);
            prop_assert!(e.to_string().contains(flag), "{e}");
        }
    }

    #[test]
    fn stored_values_never_panic_the_record_parser(value in stored_value()) {
        let _ = Record::from_json(&value);
    }

    #[test]
    fn records_round_trip(
        host in any::<String>(), pid in any::<u32>(), user in any::<String>(),
        reason in any::<String>(), since in any::<String>(),
        mode in prop::sample::select(vec![Mode::Run, Mode::Lock]),
        program in any::<Option<String>>(), ttl in any::<Option<u64>>(), held in any::<bool>(),
        max_holders in any::<u32>(), shared in any::<bool>(), expires in any::<Option<String>>(),
        on_lost in any::<Option<String>>(),
    ) {
        let record = Record {
            format: crate::record::FORMAT,
            host, pid, user, reason, since,
            mode,
            program, ttl, held,
            max_holders, shared, expires, on_lost,
        };
        prop_assert_eq!(Record::from_json(&record.to_json()), Some(record));
    }

    /// Any key and value from etcd can be shown: as a view, described in one line without
    /// raw control characters, and as JSON.
    #[test]
    fn any_contender_can_be_shown(c in contender()) {
        let view = View::of(&c);
        for line in [view.describe(), view.who(true)] {
            prop_assert!(
                !line.chars().any(char::is_control),
                "{c:?} is described as {line:?}"
            );
        }
        prop_assert!(serde_json::to_string(&view).is_ok());
    }
}
