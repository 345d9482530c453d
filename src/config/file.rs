//! The YAML file: found, read and checked for shape here (known keys, each once, a scalar or
//! a list where the settings table says so); the values stay text, typed by the same parser as
//! a flag's, in `layers`. Every error names the file and the line.

use crate::cli::Cli;
use crate::exit::{Failure, Result};
use crate::settings::{self, OptionSpec, Yaml};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The file's settings, by key, as text, with the line each is on.
#[derive(Debug, Default)]
pub struct File {
    /// `None` when the default file does not exist.
    pub path: Option<PathBuf>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    key: &'static str,
    text: String,
    line: usize,
}

impl File {
    /// The file `--config`/`DISTLOCK_CONFIG` names, or the default one if it exists.
    pub fn load(cli: &Cli) -> Result<File> {
        let (path, named) = match &cli.config {
            Some(path) => (PathBuf::from(path), true),
            None => (
                PathBuf::from(settings::CONFIG.default.unwrap_or_default()),
                false,
            ),
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
                return Ok(File::default())
            }
            Err(e) => {
                return Err(Failure::Usage(format!(
                    "cannot read config file {}: {}",
                    path.display(),
                    io_reason(&e)
                )))
            }
        };
        parse(&path, &bytes)
    }

    /// The text the file gives `key`, and its line.
    pub fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| (e.text.as_str(), e.line))
    }

    /// An error about the value of `key` on `line`.
    pub fn error(&self, line: usize, key: &str, what: &str) -> Failure {
        let path = self.path.clone().unwrap_or_default();
        Failure::Usage(format!(
            "config file {}: line {line}: {key}: {what}",
            path.display()
        ))
    }
}

pub fn parse(path: &Path, bytes: &[u8]) -> Result<File> {
    let bad = |what: String| Failure::Usage(format!("config file {}: {what}", path.display()));
    let text =
        std::str::from_utf8(bytes).map_err(|_| bad("not a text file (invalid UTF-8)".into()))?;
    // An empty or all-comment file (the packaged default) is an empty configuration.
    let parsed: Option<Entries> = serde_yaml::from_str(text).map_err(|e| {
        let message = e.to_string();
        if message.contains(" line ") {
            bad(message)
        } else {
            bad(format!(
                "line {}: {message}",
                line_of(text, key_in(&message))
            ))
        }
    })?;
    let entries = parsed
        .map(|Entries(list)| list)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, text_value)| Entry {
            key,
            line: line_of(text, key),
            text: text_value,
        })
        .collect();
    Ok(File {
        path: Some(path.to_path_buf()),
        entries,
    })
}

/// The key a serde_yaml message names, in backticks.
fn key_in(message: &str) -> &str {
    message.split('`').nth(1).unwrap_or_default()
}

/// The line a top-level `key` is on (1 if it cannot be found). serde_yaml gives some errors no
/// position (a duplicate key, a document that is not a mapping), and a value's type is checked
/// after parsing; a duplicate is reported where it is repeated, so take the last line.
fn line_of(text: &str, key: &str) -> usize {
    let starts_with_key = |line: &str| {
        let line = line.trim_start().trim_start_matches(['{', '-', ' ']);
        let line = line.trim_start_matches(['"', '\'']);
        !key.is_empty() && line.starts_with(key)
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| starts_with_key(line))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(1)
}

pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ if e.raw_os_error() == Some(nix::libc::EISDIR) => "it is a directory".into(),
        _ => e.to_string(),
    }
}

/// The mapping at the top of the file: each known key once, with its value as text (a list
/// joined by commas, as a flag gives it). A null value counts as not given.
struct Entries(Vec<(&'static str, String)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of settings (key: value)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut entries: Vec<(&'static str, String)> = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let Some(spec) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if seen.contains(&spec.name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate field `{}`",
                    spec.name
                )));
            }
            seen.push(spec.name);
            let value = match spec.yaml {
                Yaml::List => map.next_value::<Option<List>>()?.map(|l| l.0),
                _ => map.next_value::<Option<Scalar>>()?.map(|s| s.0),
            };
            entries.extend(value.map(|v| (spec.name, v)));
        }
        Ok(Entries(entries))
    }
}

/// A key of the file: a setting's (`Some`), or the Go tool's `internallock`, accepted so old
/// files keep loading and then ignored (`None`). Checked here, while serde_yaml knows where
/// the key is, so an unknown key's error names its line.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<&'static OptionSpec>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Option<&'static OptionSpec>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a setting's name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if key == "internallock" {
            return Ok(None);
        }
        settings::by_key(key).map(Some).ok_or_else(|| {
            let known: Vec<&str> = settings::yaml_keys().map(|d| d.name).collect();
            E::custom(format_args!(
                "unknown field `{key}`, expected one of {}",
                known.join(", ")
            ))
        })
    }
}

/// A scalar's text as written (`007` stays `007`), which the setting's parser then reads.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Scalar)
    }
}

/// A list setting's value: a YAML list, or one string that is comma-separated as the flag's
/// (`endpoints: http://a:2379,http://b:2379`); either way joined by commas, as a flag gives it.
struct List(String);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = List;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list, or a string of comma-separated values")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<List, E> {
        Ok(List(text.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
        let mut items = Vec::new();
        while let Some(Scalar(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(List(items.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(file: &File, key: &str) -> Option<String> {
        file.get(key).map(|(t, _)| t.to_string())
    }

    #[test]
    fn yaml_errors_name_line_and_key() {
        let path = Path::new("/etc/x.yaml");
        let err = parse(path, b"lockname: a\nlcokname: b\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/etc/x.yaml") && text.contains("lcokname") && text.contains("line 2"),
            "{text}"
        );
        let err = parse(path, b"lockname: a\nreason: [a]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("reason") && text.contains("line 2"), "{text}");
    }

    #[test]
    fn yaml_errors_without_a_position_still_name_a_line() {
        let path = Path::new("x.yaml");
        let err = parse(path, b"reason: a\nttl: 5\nttl: 6\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = parse(path, b"just a sentence").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_configs() {
        let path = Path::new("x.yaml");
        assert!(parse(path, b"").is_ok());
        assert!(parse(path, b"# lockname: x\n").is_ok());
        let file = parse(
            path,
            b"timeout: 90s\nmaxtime: 3\ninternallock: true\nlockname: 007\nreason:\n",
        )
        .unwrap();
        assert_eq!(text_of(&file, "timeout").as_deref(), Some("90s"));
        assert_eq!(file.get("maxtime"), Some(("3", 2)));
        assert_eq!(text_of(&file, "lockname").as_deref(), Some("007"));
        assert_eq!(text_of(&file, "reason"), None);
    }

    #[test]
    fn lists_arrive_as_a_flag_gives_them() {
        let file = parse(
            Path::new("x.yaml"),
            b"endpoints:\n  - http://a:1\n  - http://b:2\n",
        )
        .unwrap();
        assert_eq!(
            text_of(&file, "endpoints").as_deref(),
            Some("http://a:1,http://b:2")
        );
        for one in [
            &b"endpoints: http://a:1,http://b:2\n"[..],
            b"endpoints: \"http://a:1, http://b:2\"\n",
            b"endpoints: [http://a:1, http://b:2]\n",
        ] {
            let file = parse(Path::new("x.yaml"), one).unwrap();
            let text = text_of(&file, "endpoints").unwrap().replace(' ', "");
            assert_eq!(text, "http://a:1,http://b:2");
        }
        // The line of the value that is neither.
        for (bad, line) in [
            (&b"ttl: 5\nendpoints: {a: 1}\n"[..], "line 2"),
            (b"ttl: 5\nendpoints:\n  a: b\n", "line 3"),
            (b"endpoints: 2379\n", "line 1"),
        ] {
            let err = parse(Path::new("x.yaml"), bad).unwrap_err();
            assert!(err.to_string().contains(line), "{err}");
        }
    }
}
