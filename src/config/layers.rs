//! Layering, one setting at a time: the built-in default, then the YAML file, then the
//! `DISTLOCK_*` variable, then the flag. Each value is typed by its setting's parser, and where
//! it came from is remembered for `--show-config` and for error messages.

use super::file::File;
use super::{Setting, Source};
use crate::cli::{Cli, Given};
use crate::exit::{Failure, Result};
use crate::settings::values::Show;
use crate::settings::{Def, OptionSpec, OPTIONS};

pub struct Layers<'a> {
    cli: &'a Cli,
    file: File,
    settings: Vec<Setting>,
}

impl<'a> Layers<'a> {
    pub fn new(cli: &'a Cli, file: File) -> Layers<'a> {
        Layers {
            cli,
            file,
            settings: Vec::new(),
        }
    }

    /// The winning value of a setting and where it came from, without recording it. The
    /// file's value is checked even when a flag or variable overrides it: a broken file is
    /// reported before it bites someone else.
    pub fn layer<T>(&self, def: &Def<T>, default: Option<T>) -> Result<Option<(T, Source)>> {
        let name = def.spec.name;
        // A definition left out of the table would have no flag, variable or YAML key.
        if !OPTIONS.iter().any(|d| d.name == name) {
            return Err(Failure::Usage(format!(
                "{name} is missing from settings::OPTIONS"
            )));
        }
        let file = match self.file.get(name) {
            Some((text, line)) => {
                Some((def.parse)(text).map_err(|e| self.file.error(line, name, &e))?)
            }
            None => None,
        };
        if let Some((text, given)) = self.cli.value(name) {
            let value = (def.parse)(text)
                .map_err(|e| Failure::Usage(format!("{}={text:?}: {e}", given.name())))?;
            let source = match given {
                Given::Flag(flag) => Source::Flag(flag.clone()),
                Given::Env(var) => Source::Env(var.clone()),
            };
            return Ok(Some((value, source)));
        }
        let path = self.file.path.clone().unwrap_or_default();
        Ok(file
            .map(|v| (v, Source::File(path)))
            .or(default.map(|v| (v, Source::Default))))
    }

    /// The built-in default of a setting, parsed as a user's value would be.
    pub fn default<T>(def: &Def<T>) -> Result<Option<T>> {
        def.spec
            .default
            .map(|text| {
                (def.parse)(text).map_err(|e| {
                    Failure::Usage(format!("built-in default of {}: {e}", def.spec.name))
                })
            })
            .transpose()
    }

    /// A setting that may be unset: layered and recorded.
    pub fn get<T: Show>(&mut self, def: &Def<T>) -> Result<Option<T>> {
        let default = Self::default(def)?;
        self.get_or(def, default)
    }

    /// A setting with a default the caller works out (`kill_grace` depends on `ttl`).
    pub fn get_or<T: Show>(&mut self, def: &Def<T>, default: Option<T>) -> Result<Option<T>> {
        Ok(match self.layer(def, default)? {
            Some((value, source)) => Some(self.record(&def.spec, value, source)),
            None => {
                let null = serde_json::Value::Null;
                self.show(&def.spec, "(not set)".into(), null, Source::Default);
                None
            }
        })
    }

    /// A setting that always has a value, its table default when nothing else gives one.
    pub fn value<T: Show>(&mut self, def: &Def<T>) -> Result<T> {
        self.get(def)?.ok_or_else(|| no_default(&def.spec))
    }

    /// Records a value whose source the caller worked out.
    pub fn record<T: Show>(&mut self, spec: &OptionSpec, value: T, source: Source) -> T {
        self.show(spec, value.show(), value.json(), source);
        value
    }

    /// Records what `--show-config` shows for `spec`, as text and as JSON.
    pub fn show(
        &mut self,
        spec: &OptionSpec,
        value: String,
        json: serde_json::Value,
        source: Source,
    ) {
        self.settings.push(Setting {
            key: spec.name,
            value,
            json,
            source,
        });
    }

    /// Where the value of `spec` came from, for an error message about it.
    pub fn source_of(&self, spec: &OptionSpec) -> String {
        match self.setting(spec).map(|s| &s.source) {
            Some(Source::File(path)) => format!("{} in {}", spec.name, path.display()),
            Some(Source::Env(name) | Source::Flag(name)) => name.clone(),
            _ => spec.name.to_string(),
        }
    }

    pub fn setting(&self, spec: &OptionSpec) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == spec.name)
    }

    /// Every recorded setting, in the settings table's order.
    pub fn into_settings(mut self) -> Vec<Setting> {
        let position = |key: &str| OPTIONS.iter().position(|d| d.name == key);
        self.settings.sort_by_key(|s| position(s.key));
        self.settings
    }
}

fn no_default(spec: &OptionSpec) -> Failure {
    Failure::Usage(format!("{} has no built-in default", spec.name))
}
