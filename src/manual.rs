//! `distlock --generate=man|bash|zsh|fish`: the man page and the shell completions, made from
//! the clap definition (src/cli.rs, built from the settings table) and the tables `--help`
//! shows after the options, so that `--help`, the man page and the completions cannot drift
//! apart. scripts/release writes them next to the release binary for the packages.

use crate::cli::{self, COMMAND_ENV, OTHER_ENV, PRECEDENCE};
use crate::exit;
use crate::settings;
use clap::Command;
use clap_complete::aot::{generate, Shell};
use clap_mangen::Man;
use roff::{bold, roman, Inline, Roff};
use std::io;

/// The man page (roff, not compressed) or the completion script that `what` names.
pub fn render(what: &str) -> io::Result<Vec<u8>> {
    let cmd = cli::command();
    let shell = match what {
        "man" => return man_page(&cmd, option_env!("DISTLOCK_BUILD_DATE")),
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot generate {other:?}"),
            ))
        }
    };
    // Into memory: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    generate(shell, &mut cmd.clone(), "distlock", &mut script);
    Ok(script)
}

/// distlock(1): clap_mangen's NAME, SYNOPSIS, DESCRIPTION and OPTIONS (each option with its
/// DISTLOCK_* variable), then ENVIRONMENT, EXIT STATUS, FILES and SEE ALSO from the tables.
fn man_page(cmd: &Command, date: Option<&str>) -> io::Result<Vec<u8>> {
    let mut man = Man::new(cmd.clone()).manual("User Commands");
    if let Some(date) = date {
        man = man.date(date);
    }
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    // No hyphenation: it would split variable names such as DISTLOCK_KEY_FILE.
    out.extend_from_slice(b".nh\n");
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    let mut more = Roff::new();
    paragraph(&mut more, PRECEDENCE);
    more.to_writer(&mut out)?;
    man.render_options_section(&mut out)?;

    let mut roff = Roff::new();
    environment_section(&mut roff, cmd);
    roff.control("SH", ["EXIT STATUS"]);
    for (code, text) in exit::table() {
        entry(&mut roff, &code, [roman(text)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, text, packaged) in cli::files() {
        let text = match packaged {
            true => format!("{text} (.deb and .rpm packages)."),
            false => capitalize(text),
        };
        entry(&mut roff, path, [roman(text)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("etcdctl"), roman("(1), "), bold("flock"), roman("(1)")]);
    roff.to_writer(&mut out)?;
    dedup_preamble(out)
}

fn environment_section(roff: &mut Roff, cmd: &Command) {
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "A variable that stands for an option (\"Same as\") is overridden by that option on the \
         command line, and counts as unset when set to the empty string.",
    )]);
    for arg in cmd.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let text = help_text(arg);
        // "... [default: 10s]" belongs with the option, not the variable.
        let text = text.split(" [default:").next().unwrap_or_default();
        entry(
            roff,
            &env.to_string_lossy(),
            [
                roman("Same as "),
                bold(format!("--{long}")),
                roman(format!(": {text}")),
            ],
        );
    }
    // Variables of the settings table that are no flag's (a password must not be one).
    for spec in settings::OPTIONS.iter().filter(|d| d.flag.is_none()) {
        if let Some(env) = spec.env {
            entry(roff, env, [roman(spec.help)]);
        }
    }
    for (env, long, text) in OTHER_ENV {
        entry(
            roff,
            env,
            [
                roman("See "),
                bold(format!("--{long}")),
                roman(format!(": {text}")),
            ],
        );
    }
    roff.control("PP", []);
    roff.text([roman("In run mode the command gets these variables:")]);
    for (env, text) in COMMAND_ENV {
        entry(roff, env, [roman(capitalize(text))]);
    }
}

/// One tagged paragraph: `tag` in bold, then `text`.
fn entry(roff: &mut Roff, tag: &str, text: impl Into<Vec<Inline>>) {
    roff.control("TP", []).text([bold(tag)]).text(text);
}

/// A block of help text as one filled paragraph.
fn paragraph(roff: &mut Roff, block: &str) {
    roff.control("PP", []);
    roff.text([roman(
        block.split_whitespace().collect::<Vec<_>>().join(" "),
    )]);
}

fn help_text(arg: &clap::Arg) -> String {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|h| {
            h.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Each rendered roff piece starts with the same two-line apostrophe preamble; keep the first.
fn dedup_preamble(page: Vec<u8>) -> io::Result<Vec<u8>> {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let text =
        String::from_utf8(page).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(match text.find(PREAMBLE) {
        Some(first) => {
            let end = first + PREAMBLE.len();
            format!("{}{}", &text[..end], text[end..].replace(PREAMBLE, "")).into_bytes()
        }
        None => text.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        String::from_utf8(render("man").unwrap()).unwrap()
    }

    #[test]
    fn every_variable_is_in_the_man_page() {
        let page = page();
        let environment = &page[page.find(".SH ENVIRONMENT").unwrap()..];
        let environment = &environment[..environment.find("EXIT STATUS").unwrap()];
        let tagged = |var: &str| environment.matches(&format!("\\fB{var}\\fR\n")).count();
        for var in settings::OPTIONS.iter().filter_map(|d| d.env) {
            assert_eq!(tagged(var), 1, "{var}:\n{environment}");
        }
        // DISTLOCK_KEY is both: read (etcdctl's spelling of the key file) and set.
        for var in OTHER_ENV
            .iter()
            .map(|(v, ..)| v)
            .chain(COMMAND_ENV.iter().map(|(v, _)| v))
        {
            assert!(tagged(var) >= 1, "{var}:\n{environment}");
        }
    }

    #[test]
    fn the_other_variables_go_with_real_options() {
        let cmd = cli::command();
        for (env, long, _) in OTHER_ENV {
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(long)),
                "{env}: no --{long}"
            );
        }
    }

    #[test]
    fn the_hidden_option_stays_hidden() {
        assert!(!page().contains("generate"));
        for shell in ["bash", "zsh", "fish"] {
            let script = String::from_utf8(render(shell).unwrap()).unwrap();
            assert!(script.contains("lock-name"), "{shell}");
            assert!(!script.contains("generate"), "{shell}");
        }
        assert!(render("powershell").is_err());
    }
}
