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
use roff::{bold, italic, roman, Inline, Roff};
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

/// The forms of the command line, after `distlock`: run mode, then each mode. Placeholders
/// are in capitals.
const SYNOPSIS: &[&str] = &[
    "--lock-name=NAME [OPTIONS] [--] COMMAND [ARGS...]",
    "--lock-name=NAME --lock [OPTIONS]",
    "--lock-name=NAME --unlock[=KEY] [OPTIONS]",
    "--lock-name=NAME --extend=D [--holder=KEY] [OPTIONS]",
    "--lock-name=NAME --status [--follow] [OPTIONS]",
    "--lock-name=NAME --history [OPTIONS]",
    "--list [--follow | --output=prometheus] [OPTIONS]",
    "--show-config [OPTIONS]",
];

/// EXAMPLES: what each does, and the lines to type or install.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Upgrade the packages of a cluster one node at a time: run it on every node, in any \
         order, and each waits for the one before it (on Debian-family hosts, apt-get -y \
         upgrade):",
        "distlock --lock-name=percona_prod --reason=\"yum upgrade\" -- yum -y upgrade",
    ),
    (
        "Run a nightly job on one server of many, from /etc/cron.d on each: the others find the \
         lock busy and give up (exit 1), and --hold-at-least keeps it busy for 10 minutes, for \
         clocks that are a few minutes apart:",
        "0 0 * * * root distlock --lock-name=nightly --nowait --hold-at-least=10m -- backup.sh",
    ),
    (
        "Run a shell pipeline under the lock (-c runs it with sh -c), and skip the run when the \
         lock is busy (-n, --nowait):",
        "distlock -n --lock-name=backup -c 'pg_dump db | gzip > /backup/db.gz'",
    ),
    (
        "Keep every other run out for a maintenance window: the lock stays held after \
         distlock exits, until --unlock from any node (with --ttl=2h it also expires by \
         itself). --status shows who holds it and why:",
        "distlock --lock-name=db_prod --lock --reason=\"maintenance, ticket 4711\"\n\
         # ... the maintenance ...\n\
         distlock --lock-name=db_prod --unlock",
    ),
    (
        "Stop a report still running after two hours, as timeout(1) would: exit 124 when \
         SIGTERM ended it, 137 when it needed SIGKILL after --kill-grace:",
        "distlock --lock-name=report --max-runtime=2h -- make-report",
    ),
    (
        "Puppet, on RHEL-family hosts: take the lock only when an upgrade is pending (yum and \
         dnf check-update exit 100 then), upgrade, and give the lock back; a failed upgrade \
         leaves it held until a person looks:",
        "exec { 'distlock: take percona_prod':\n\
         \x20 command  => 'distlock --lock-name=percona_prod --lock --timeout=30m',\n\
         \x20 onlyif   => 'yum -q check-update percona-server-server; test $? -eq 100',\n\
         \x20 provider => shell,\n\
         \x20 path     => ['/usr/bin', '/bin'],\n\
         }\n\
         -> package { 'percona-server-server': ensure => latest }\n\
         -> exec { 'distlock: release percona_prod':\n\
         \x20 command     => 'distlock --lock-name=percona_prod --unlock',\n\
         \x20 path        => ['/usr/bin', '/bin'],\n\
         \x20 refreshonly => true,\n\
         \x20 subscribe   => Exec['distlock: take percona_prod'],\n\
         }",
    ),
    (
        "The same as a Salt state:",
        "distlock-take:\n\
         \x20 cmd.run:\n\
         \x20   - name: distlock --lock-name=percona_prod --lock --timeout=30m\n\
         \x20   - onlyif: yum -q check-update percona-server-server; test $? -eq 100\n\
         percona-upgrade:\n\
         \x20 pkg.latest:\n\
         \x20   - name: percona-server-server\n\
         \x20   - require: [{cmd: distlock-take}]\n\
         distlock-release:\n\
         \x20 cmd.run:\n\
         \x20   - name: distlock --lock-name=percona_prod --unlock\n\
         \x20   - onchanges: [{cmd: distlock-take}]\n\
         \x20   - require: [{pkg: percona-upgrade}]",
    ),
    (
        "Ansible: serial batches one play's hosts; the lock keeps the upgrades one at a time \
         across batches, plays and whatever else upgrades the cluster:",
        "- hosts: db\n\
         \x20 serial: 3\n\
         \x20 tasks:\n\
         \x20   - name: Upgrade under the cluster's lock\n\
         \x20     ansible.builtin.command: >-\n\
         \x20       distlock --lock-name=percona_prod --timeout=30m\n\
         \x20       -- yum -y upgrade percona-server-server",
    ),
    (
        "A systemd service active on one server at a time, the others standing by in the \
         queue (distlock passes systemd's SIGTERM on to the worker once; a lost lock is exit \
         4, and Restart= queues the server again):",
        "[Service]\n\
         Type=exec\n\
         ExecStart=/usr/bin/distlock --lock-name=report-worker -- /usr/local/bin/report-worker\n\
         KillMode=mixed\n\
         Restart=always",
    ),
    (
        "Who ran the job last, and how did it end; then every change as it happens, into the \
         system log; and the locks as metrics for node_exporter, every minute from cron:",
        "distlock --lock-name=percona_prod --history\n\
         distlock --list --follow | logger -t distlock\n\
         * * * * * root distlock --list --output=prometheus > /var/lib/prometheus/node-exporter/distlock.prom.tmp && mv /var/lib/prometheus/node-exporter/distlock.prom.tmp /var/lib/prometheus/node-exporter/distlock.prom",
    ),
];

/// distlock(1): clap_mangen's NAME, then SYNOPSIS (the forms of the command line), clap_mangen's
/// DESCRIPTION and OPTIONS (each option with its DISTLOCK_* variable), then ENVIRONMENT, EXIT
/// STATUS, FILES, EXAMPLES and SEE ALSO from the tables.
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
    // clap's own synopsis lists every flag without its value: the forms of the command line
    // say more.
    let mut synopsis = Roff::new();
    synopsis_section(&mut synopsis);
    synopsis.to_writer(&mut out)?;
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
    for (path, text, packages, _) in cli::files() {
        entry(
            &mut roff,
            path,
            [roman(format!("{}. {packages}", capitalize(text)))],
        );
    }
    examples_section(&mut roff);
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

fn synopsis_section(roff: &mut Roff) {
    roff.control("SH", ["SYNOPSIS"]);
    for (i, form) in SYNOPSIS.iter().enumerate() {
        if i > 0 {
            roff.control("br", []);
        }
        let mut line = vec![bold("distlock"), roman(" ")];
        line.extend(synopsis_form(form));
        roff.text(line);
    }
}

/// A form of the command line as man pages set it: flags in bold, placeholders (capitals) in
/// italics, brackets and `=` in roman.
fn synopsis_form(form: &str) -> Vec<Inline> {
    let mut pieces = Vec::new();
    let mut rest = form;
    while let Some(c) = rest.chars().next() {
        let (len, piece): (usize, fn(String) -> Inline) = if rest.starts_with("--") {
            (rest.find(['=', '[', ']', ' ']).unwrap_or(rest.len()), bold)
        } else if c.is_ascii_uppercase() {
            let end = rest.find(|c: char| !c.is_ascii_uppercase());
            (end.unwrap_or(rest.len()), italic)
        } else {
            let end = rest.find(|c: char| c.is_ascii_uppercase() || c == '-');
            (end.unwrap_or(rest.len()).max(c.len_utf8()), roman)
        };
        pieces.push(piece(rest[..len].to_string()));
        rest = &rest[len..];
    }
    pieces
}

fn examples_section(roff: &mut Roff) {
    roff.control("SH", ["EXAMPLES"]);
    for (text, lines) in EXAMPLES {
        paragraph(roff, text);
        roff.control("RS", ["4"]).control("nf", []);
        for line in lines.lines() {
            roff.text([roman(line)]);
        }
        roff.control("fi", []).control("RE", []);
    }
    paragraph(
        roff,
        "The cron, Puppet, Salt, Ansible and systemd examples, whole and with what each option \
         is for, are in /usr/share/doc/distlock/examples/ (.deb and .rpm).",
    );
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
    fn the_synopsis_shows_run_mode_and_every_mode_with_its_values() {
        let page = page();
        let synopsis =
            &page[page.find(".SH SYNOPSIS").unwrap()..page.find(".SH DESCRIPTION").unwrap()];
        // Flags in bold, placeholders in italics, for the run form and each mode.
        assert!(
            synopsis.contains(
                "\\fBdistlock\\fR \\fB\\-\\-lock\\-name\\fR=\\fINAME\\fR [\\fIOPTIONS\\fR] \
                 [\\fB\\-\\-\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]\n"
            ),
            "{synopsis}"
        );
        assert_eq!(synopsis.matches(".br\n").count(), SYNOPSIS.len() - 1);
        assert_eq!(
            SYNOPSIS[0],
            "--lock-name=NAME [OPTIONS] [--] COMMAND [ARGS...]"
        );
        for mode in settings::MODES {
            let flag = format!("--{}", mode.flag.unwrap());
            assert!(
                SYNOPSIS
                    .iter()
                    .any(|form| form.split([' ', '=', '[']).any(|w| w == flag)),
                "{flag} has no form in SYNOPSIS"
            );
        }
        assert!(SYNOPSIS.iter().any(|form| form.contains("--extend=D")));
    }

    #[test]
    fn the_examples_use_only_options_distlock_has() {
        let cmd = cli::command();
        let longs: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        let mut used = 0;
        for (_, lines) in EXAMPLES {
            for line in lines
                .lines()
                .filter(|l| l.contains("distlock --") || l.contains("distlock -n"))
            {
                // distlock's own flags: up to the command (`--`, or -c's script).
                let words = line[line.find("distlock ").unwrap()..].split_whitespace();
                for word in words.skip(1).take_while(|w| *w != "--" && *w != "-c") {
                    if let Some(long) = word.strip_prefix("--") {
                        let long = long.split(['=', '\'', '"', ',']).next().unwrap();
                        assert!(longs.contains(&long), "--{long} in {line:?}");
                        used += 1;
                    }
                }
            }
        }
        assert!(used > 20, "{used}");
    }

    #[test]
    fn the_man_page_has_examples_and_files_for_every_package() {
        let page = page();
        let sections: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        let at = |name: &str| sections.iter().position(|s| s.trim_matches('"') == name);
        assert!(
            at("FILES") < at("EXAMPLES") && at("EXAMPLES") < at("SEE ALSO"),
            "{sections:?}"
        );
        let examples = &page[page.find(".SH EXAMPLES").unwrap()..];
        for needle in [
            "yum",
            "apt\\-get",
            "\\-\\-unlock",
            "cron",
            "Puppet",
            "Salt",
            "Ansible",
            "systemd",
        ] {
            assert!(examples.contains(needle), "EXAMPLES lack {needle}");
        }
        let files = &page[page.find(".SH FILES").unwrap()..page.find(".SH EXAMPLES").unwrap()];
        assert!(!files.contains("Debian package"), "{files}");
        for needle in [".deb", ".rpm", "tarball"] {
            assert!(files.contains(needle), "FILES lack {needle}: {files}");
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
