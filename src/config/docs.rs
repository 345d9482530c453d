//! The documents made from the settings table and the exit codes: the README's configuration
//! and exit code tables, config/distlock.yaml (every key commented out, at its default) and
//! distlock.yaml.example (every key with an example value). A test compares each with the
//! file in the repository and prints what it should say; `DISTLOCK_BLESS=1 cargo test docs`
//! rewrites them.

use crate::settings::{OptionSpec, Yaml, OPTIONS};
use std::path::Path;

const DEFAULTS_HEADER: &str = "\
# /etc/distlock/distlock.yaml: site-wide settings for distlock.
#
# Every key is commented out and shows its built-in default, so as shipped this file is an empty
# configuration. Uncomment and change what your site needs; see distlock.yaml.example (and
# `distlock --help`) for what each one does.
";

const EXAMPLE_HEADER: &str = "\
# distlock.yaml.example: every setting distlock reads from its YAML file, set to realistic
# example values. Copy what you need to /etc/distlock/distlock.yaml (the default file; a
# missing default file is fine) or point distlock at a file with --config FILE / DISTLOCK_CONFIG.
";

const COMMON_HEADER: &str = "\
#
# Precedence: built-in defaults < this file < DISTLOCK_* environment variables < command-line
# flags. An environment variable set to the empty string counts as unset. Each key below names
# its flag and environment variable. Any key not listed here, a malformed file or a value of
# the wrong type is an error naming the file, the line and the key.
#
# Durations are whole seconds (30) or a duration string (\"90s\", \"5m\", \"1h30m\"; \"500ms\" where
# sub-second values are allowed). The Go tool's key `internallock` is accepted and ignored.
";

/// Text wrapped into `# ` comment lines of at most 100 characters.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `key: value` (a list for a list setting), commented out with `#` when `commented`.
fn yaml_entry(spec: &OptionSpec, value: &str, commented: bool) -> String {
    let hash = if commented { "#" } else { "" };
    match spec.yaml {
        Yaml::List => {
            let items: String = value
                .split(',')
                .map(|item| format!("{hash}  - {item}\n"))
                .collect();
            format!("{hash}{}:\n{items}", spec.name)
        }
        _ => format!("{hash}{}: {value}\n", spec.name),
    }
}

/// The YAML text of a default (`""` for the empty string).
fn yaml_default(spec: &OptionSpec) -> Option<String> {
    spec.default.map(|d| {
        if d.is_empty() {
            "\"\"".into()
        } else {
            d.to_string()
        }
    })
}

/// What each key's comment says: what it does, more, and its flag, variable and default.
fn key_comment(spec: &OptionSpec) -> String {
    let spelled = [
        spec.flag.map(|f| format!("--{f}")),
        spec.env.map(String::from),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" / ");
    let default = match spec.shown_default() {
        Some("") => "\"\"",
        Some(default) => default,
        None => "not set",
    };
    comment(&format!(
        "{}. {} {spelled}. Default: {default}.",
        spec.help, spec.more
    ))
}

/// config/distlock.yaml.
pub fn yaml_defaults() -> String {
    let mut out = format!("{DEFAULTS_HEADER}{COMMON_HEADER}");
    for spec in OPTIONS.iter().filter(|d| d.yaml != Yaml::No) {
        let value = yaml_default(spec)
            .or(spec.example.map(String::from))
            .unwrap_or_default();
        out.push('\n');
        out.push_str(&key_comment(spec));
        out.push_str(&yaml_entry(spec, &value, true));
    }
    out
}

/// distlock.yaml.example.
pub fn yaml_example() -> String {
    let mut out = format!("{EXAMPLE_HEADER}{COMMON_HEADER}");
    for spec in OPTIONS.iter().filter(|d| d.yaml != Yaml::No) {
        out.push('\n');
        out.push_str(&key_comment(spec));
        out.push_str(&match spec.example {
            Some(example) => yaml_entry(spec, example, false),
            // A made-up certificate, password file or user would not work: show the key
            // only, commented out, with a value of its kind.
            None => yaml_entry(spec, &inert_value(spec), true),
        });
    }
    out
}

/// What a commented-out key of distlock.yaml.example shows: where such a file would be, or a
/// name (the etcd user is a user name, not a file).
fn inert_value(spec: &OptionSpec) -> String {
    match spec.value {
        Some("FILE") => format!("/etc/distlock/{}", spec.name),
        _ => "distlock".to_string(),
    }
}

/// The README's configuration table.
pub fn readme_settings() -> String {
    let mut out =
        String::from("| flag | env | YAML key | default | meaning |\n|---|---|---|---|---|\n");
    for spec in OPTIONS {
        let flag = match (spec.short, spec.flag, spec.value) {
            (Some(short), Some(long), Some(value)) => format!("`-{short}`, `--{long} {value}`"),
            (Some(short), Some(long), None) => format!("`-{short}`, `--{long}`"),
            (None, Some(long), Some(value)) => format!("`--{long} {value}`"),
            (None, Some(long), None) => format!("`--{long}`"),
            _ => String::new(),
        };
        let code = |text: Option<&str>| text.map(|t| format!("`{t}`")).unwrap_or_default();
        let key = (spec.yaml != Yaml::No).then_some(spec.name);
        let default = match (spec.value, spec.shown_default()) {
            (None, _) if spec.flag.is_some() => String::new(),
            (_, Some("")) => "\"\"".into(),
            (_, Some(default)) => default.to_string(),
            (_, None) => "–".into(),
        };
        out.push_str(&format!(
            "| {flag} | {} | {} | {default} | {} |\n",
            code(spec.env),
            code(key),
            spec.help.replace('|', "\\|")
        ));
    }
    out
}

/// The README's exit code table.
pub fn readme_exit_codes() -> String {
    let mut out = String::from("| code | meaning |\n|---|---|\n");
    for (code, meaning) in crate::exit::table() {
        out.push_str(&format!("| {code} | {meaning} |\n"));
    }
    out
}

/// Compares `path` (relative to the crate) with `expected`, or with `DISTLOCK_BLESS` set,
/// writes it. Within a README only the part between `<!-- {marker} -->` and
/// `<!-- end {marker} -->` is compared.
fn check(path: &str, marker: Option<&str>, expected: &str) -> Result<(), String> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).map_err(|e| format!("{path}: {e}"))?;
    let (before, current, after) = match marker {
        None => ("", text.as_str(), ""),
        Some(marker) => {
            let (open, close) = (
                format!("<!-- {marker} -->\n"),
                format!("<!-- end {marker} -->"),
            );
            let start = text.find(&open).ok_or(format!("{path} has no {open:?}"))? + open.len();
            let end = text[start..]
                .find(&close)
                .ok_or(format!("{path} has no {close:?}"))?
                + start;
            (&text[..start], &text[start..end], &text[end..])
        }
    };
    if current == expected {
        return Ok(());
    }
    if std::env::var_os("DISTLOCK_BLESS").is_some() {
        return std::fs::write(&full, format!("{before}{expected}{after}"))
            .map_err(|e| format!("{path}: {e}"));
    }
    Err(format!(
        "{path} differs from the settings table; run DISTLOCK_BLESS=1 cargo test docs, \
         or make it say:\n{expected}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{self, KILL_GRACE_DEFAULT_DIVISOR, KILL_GRACE_MAX_DIVISOR};

    #[test]
    fn docs_say_what_the_tables_say() {
        let checks = [
            check("README.md", Some("settings"), &readme_settings()),
            check("README.md", Some("exit codes"), &readme_exit_codes()),
            check("config/distlock.yaml", None, &yaml_defaults()),
            check("distlock.yaml.example", None, &yaml_example()),
        ];
        let failures: Vec<String> = checks.into_iter().filter_map(Result::err).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    #[test]
    fn the_example_shows_a_path_only_for_a_file() {
        let example = yaml_example();
        for spec in OPTIONS
            .iter()
            .filter(|d| d.example.is_none() && d.yaml != Yaml::No)
        {
            let line = example
                .lines()
                .find(|l| l.starts_with(&format!("#{}:", spec.name)))
                .unwrap_or_else(|| panic!("no #{}: line", spec.name));
            assert_eq!(
                line.contains('/'),
                spec.value == Some("FILE"),
                "{line} ({:?})",
                spec.value
            );
        }
        assert!(example.contains("\n#user: distlock\n"));
    }

    #[test]
    fn docs_state_the_kill_grace_rules_the_code_applies() {
        let spec = &settings::KILL_GRACE.spec;
        let cap = format!("at most TTL/{KILL_GRACE_DEFAULT_DIVISOR}");
        assert!(spec.shown_default().is_some_and(|d| d.contains(&cap)));
        assert!(spec
            .help
            .contains(&format!("at most TTL/{KILL_GRACE_MAX_DIVISOR}")));
    }

    #[test]
    fn the_conflict_exit_code_default_is_the_documented_one() {
        let default = settings::CONFLICT_EXIT_CODE
            .spec
            .default
            .unwrap_or_default();
        let not_acquired = crate::exit::Failure::NotAcquired(String::new());
        assert_eq!(default, not_acquired.code().to_string());
        assert!(crate::exit::table()
            .iter()
            .any(|(code, meaning)| *code == default && meaning.contains("not acquired")));
    }
}
