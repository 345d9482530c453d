//! Build script: stamps `--version` with the git revision, and renders the man page and the
//! bash, zsh and fish completions from the clap definition in src/cli.rs, so that `--help`, the
//! man page and the completions come from one place and cannot drift apart.
//!
//! The generated files go to `<target-dir>/<profile>/assets/` (next to the binary, e.g.
//! `target/release/assets/`), where `cargo deb` picks them up through its `target/release/`
//! asset prefix (see `[package.metadata.deb]` in Cargo.toml and packaging/README.md). They are
//! build products: never commit them.
//!
//! src/cli.rs, the settings table it is built from (src/config/defs.rs and values.rs, with
//! src/name.rs) and the exit codes (src/exit.rs) are compiled into this script as modules, at the same paths as in
//! the binary, so they must keep depending on nothing but clap, humantime and std.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::Command;
use clap_complete::aot::{generate, Shell};
use clap_mangen::Man;
use roff::{bold, roman, Roff};

// The build script only needs the definitions, not the parsing helpers.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "src/config"]
mod config {
    pub mod defs;
    pub mod values;
}
#[allow(dead_code)]
#[path = "src/exit.rs"]
mod exit;
#[path = "src/name.rs"]
mod name;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for source in [
        "src/cli.rs",
        "src/config/defs.rs",
        "src/config/values.rs",
        "src/exit.rs",
    ] {
        println!("cargo:rerun-if-changed={source}");
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let git = GitInfo::read(&manifest_dir);
    let version = match &git.short_rev {
        Some(rev) => format!("{} ({rev})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    };
    // src/cli.rs reads this with option_env!, falling back to the bare package version.
    println!("cargo:rustc-env=DISTLOCK_BUILD_VERSION={version}");

    // clap takes a &'static str without its `string` feature; this process is short-lived.
    let cmd = cli::command().version(&*version.leak());
    let dir = assets_dir();
    if let Err(e) = write_assets(&cmd, &dir, git.date.as_deref()) {
        // The binary itself does not need these files; only packaging does, and cargo deb
        // then says which one is missing.
        println!(
            "cargo:warning=could not write the man page and completions to {}: {e}",
            dir.display()
        );
    }
}

/// `<target-dir>/<profile>/assets`. Cargo gives a build script no stable output path other
/// than OUT_DIR, which is `<target-dir>/<profile>/build/distlock-<hash>/out`; three levels up
/// is the profile directory that holds the binary (also under `--target <triple>`), which is
/// what cargo-deb substitutes for the `target/release/` prefix of an asset.
fn assets_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let profile_dir = out_dir.ancestors().nth(3).filter(|_| {
        out_dir.ancestors().nth(2).and_then(Path::file_name) == Some(OsStr::new("build"))
    });
    match profile_dir {
        Some(dir) => dir.join("assets"),
        None => {
            // A build-dir layout we do not know: keep the files in OUT_DIR rather than guess.
            println!(
                "cargo:warning=unexpected OUT_DIR layout {}; man page and completions stay there",
                out_dir.display()
            );
            out_dir
        }
    }
}

fn write_assets(cmd: &Command, dir: &Path, date: Option<&str>) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let page = man_page(cmd, date)?;
    write_if_changed(&dir.join("distlock.1"), &page)?;
    write_if_changed(&dir.join("distlock.1.gz"), &gzip(&page)?)?;
    for (shell, file) in [
        (Shell::Bash, "distlock.bash"),
        (Shell::Zsh, "_distlock"),
        (Shell::Fish, "distlock.fish"),
    ] {
        let mut script = Vec::new();
        generate(shell, &mut cmd.clone(), "distlock", &mut script);
        write_if_changed(&dir.join(file), &script)?;
    }
    Ok(())
}

/// Leaves an unchanged file alone, so its mtime says when its content last changed.
fn write_if_changed(path: &Path, content: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    fs::write(path, content)
}

/// Debian policy wants man pages gzipped; cargo-deb only compresses files that are not build
/// products, so we do it here. The gzip header carries no timestamp: the output is reproducible.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// distlock(1): clap_mangen's NAME, SYNOPSIS, DESCRIPTION and OPTIONS (each option with its
/// DISTLOCK_* variable), then the sections a man page reader looks for: EXIT STATUS from
/// src/exit.rs, ENVIRONMENT from the settings table's variables plus the after_help blocks that
/// name other variables, FILES from after_help's "Files:" block, and the remaining blocks as
/// more DESCRIPTION. after_help's "Exit codes:" block is src/exit.rs's table again.
fn man_page(cmd: &Command, date: Option<&str>) -> io::Result<Vec<u8>> {
    let mut man = Man::new(cmd.clone()).manual("User Commands");
    if let Some(date) = date {
        man = man.date(date);
    }
    let help = AfterHelp::parse(
        &cmd.get_after_long_help()
            .or(cmd.get_after_help())
            .map(|h| h.to_string())
            .unwrap_or_default(),
        cmd,
    );

    let mut out = Vec::new();
    man.render_title(&mut out)?;
    // No hyphenation: it would split variable names such as DISTLOCK_KEY_FILE.
    out.write_all(b".nh\n")?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    let mut more = Roff::new();
    for block in &help.description {
        paragraph(&mut more, block);
    }
    more.to_writer(&mut out)?;
    man.render_options_section(&mut out)?;

    let mut roff = Roff::new();
    environment_section(&mut roff, cmd, &help);
    roff.control("SH", ["EXIT STATUS"]);
    for (code, text) in exit::TABLE {
        roff.control("TP", [])
            .text([bold(*code)])
            .text([roman(*text)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, text) in help
        .files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .chain([
            (
                "/usr/share/doc/distlock/distlock.yaml.example",
                "Every setting of the YAML file, explained, with example values (Debian package).",
            ),
            (
                "/usr/share/doc/distlock/examples/",
                "cron, Puppet, Salt, systemd and rolling-upgrade examples (Debian package).",
            ),
        ])
    {
        roff.control("TP", [])
            .text([bold(path)])
            .text([roman(text)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("etcdctl"), roman("(1), "), bold("flock"), roman("(1)")]);
    roff.to_writer(&mut out)?;
    Ok(dedup_preamble(out))
}

fn environment_section(roff: &mut Roff, cmd: &Command, help: &AfterHelp) {
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "A variable that stands for an option (\"Same as\") is overridden by that option on the \
         command line, and counts as unset when set to the empty string.",
    )]);
    let mut documented = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let env = env.to_string_lossy().into_owned();
        roff.control("TP", []).text([bold(env.as_str())]).text([
            roman("Same as "),
            bold(format!("--{long}")),
            roman(format!(": {}", first_line(arg))),
        ]);
        documented.push(env);
    }
    // Variables of the settings table that are no flag's (a password must not be one).
    for doc in config::defs::OPTIONS.iter().filter(|d| d.flag.is_none()) {
        let Some(env) = doc.env else { continue };
        roff.control("TP", [])
            .text([bold(env)])
            .text([roman(doc.help)]);
        documented.push(env.to_string());
    }
    // Variables that an option's help names but that no option stands for (a password that
    // must not be a flag, a log filter): list them, pointing at that option.
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let text = help_text(arg);
        for var in env_names(&text) {
            if documented.contains(&var) || help.named_in_blocks.contains(&var) {
                continue;
            }
            roff.control("TP", []).text([bold(var.as_str())]).text([
                roman("See "),
                bold(format!("--{long}")),
                roman(format!(": {text}")),
            ]);
            documented.push(var);
        }
    }
    for block in &help.environment {
        paragraph(roff, block);
    }
}

/// A block of after_help text as one filled paragraph.
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

fn first_line(arg: &clap::Arg) -> String {
    let text = help_text(arg);
    // "... [default: 10s]" belongs with the option, not the variable.
    match text.find(" [default:") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Every `DISTLOCK_NAME` / `ETCD_NAME` in `text`, in order, without repeats. `DISTLOCK_*`
/// (the family) is not a name.
fn env_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let is_name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    for (start, _) in text.match_indices(['D', 'E']) {
        if start > 0 && text[..start].ends_with(is_name_char) {
            continue;
        }
        let rest = &text[start..];
        if !(rest.starts_with("DISTLOCK_") || rest.starts_with("ETCD_")) {
            continue;
        }
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches('_');
        if name.contains('_') && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// src/cli.rs's after_help text, sorted into man page sections by its blocks (separated by
/// blank lines).
struct AfterHelp {
    description: Vec<String>,
    environment: Vec<String>,
    files: Vec<(String, String)>,
    /// Variables named in `environment` blocks (those distlock sets for the command).
    named_in_blocks: Vec<String>,
}

impl AfterHelp {
    fn parse(text: &str, cmd: &Command) -> AfterHelp {
        let option_vars: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        let mut help = AfterHelp {
            description: Vec::new(),
            environment: Vec::new(),
            files: Vec::new(),
            named_in_blocks: Vec::new(),
        };
        for block in text
            .split("\n\n")
            .map(str::trim_end)
            .filter(|b| !b.trim().is_empty())
        {
            if block.starts_with("Exit codes:") {
                // Rendered from src/exit.rs directly.
            } else if let Some(rest) = block.strip_prefix("Files:") {
                help.files = rest
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|line| {
                        let (path, text) =
                            line.split_once(char::is_whitespace).unwrap_or((line, ""));
                        let text = text.trim();
                        let text = text
                            .strip_prefix('(')
                            .and_then(|t| t.strip_suffix(')'))
                            .unwrap_or(text);
                        (path.to_string(), capitalize(text))
                    })
                    .collect();
            } else {
                let names = env_names(block);
                if names.iter().any(|n| !option_vars.contains(n)) {
                    help.named_in_blocks.extend(names);
                    help.environment.push(block.to_string());
                } else {
                    help.description.push(block.to_string());
                }
            }
        }
        if help.files.is_empty() {
            println!(
                "cargo:warning=src/cli.rs's after_help has no \"Files:\" block: the man page lacks FILES"
            );
        }
        help
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Each rendered roff piece starts with the same two-line apostrophe preamble; keep the first.
fn dedup_preamble(page: Vec<u8>) -> Vec<u8> {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let text = String::from_utf8(page).expect("roff output is UTF-8");
    match text.find(PREAMBLE) {
        Some(first) => {
            let end = first + PREAMBLE.len();
            format!("{}{}", &text[..end], text[end..].replace(PREAMBLE, "")).into_bytes()
        }
        None => text.into_bytes(),
    }
}

/// The short revision and the commit date (YYYY-MM-DD, for the man page's footer) of the
/// checkout being built, or nothing when this is not a git checkout (a crate tarball, a
/// source package) or git is missing: the build never fails for want of git.
struct GitInfo {
    short_rev: Option<String>,
    date: Option<String>,
}

impl GitInfo {
    fn read(manifest_dir: &Path) -> GitInfo {
        let none = GitInfo {
            short_rev: None,
            date: None,
        };
        // Only our own checkout: a crate unpacked inside some other repository must not take
        // that repository's revision.
        if !manifest_dir.join(".git").exists() {
            return none;
        }
        let git = |args: &[&str]| -> Option<String> {
            let out = Process::new("git")
                .args(args)
                .current_dir(manifest_dir)
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (out.status.success() && !text.is_empty()).then_some(text)
        };
        // Rerun when HEAD moves: HEAD itself (a checkout), the branch it names (a commit),
        // and packed-refs (where the branch lives after `git gc`). Paths come from git, so a
        // worktree, whose .git is a file, works too. A path that does not exist is not
        // watched: cargo would rerun the script on every build.
        // Without git, still watch .git/HEAD: installing git and committing then rebuilds.
        let head = git(&["rev-parse", "--git-path", "HEAD"]).or(Some(".git/HEAD".into()));
        let mut watch = vec![head];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(git(&["rev-parse", "--git-path", &branch]));
        }
        watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watch.into_iter().flatten() {
            let path = manifest_dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        let Some(short_rev) = git(&["rev-parse", "--short", "HEAD"]) else {
            return none;
        };
        GitInfo {
            short_rev: Some(short_rev),
            date: git(&["log", "-1", "--format=%cs", "HEAD"]),
        }
    }
}
