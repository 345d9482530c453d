//! The Debian package as an administrator gets it: `cargo deb` builds it (once per test run,
//! shared by the tests below), then we look at it with dpkg-deb the way dpkg would, unpack it
//! into a scratch root and run what it installed: the binary, the man page, the completions
//! and the shipped configuration files.
//!
//! Needs cargo-deb, dpkg-deb and man (scripts/setup installs them). A missing tool fails the
//! test with a message saying so: a package that was never built must not pass.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Every file the package must install (directories are implied).
const EXPECTED_FILES: &[&str] = &[
    "usr/bin/distlock",
    "usr/share/man/man1/distlock.1.gz",
    "usr/share/bash-completion/completions/distlock",
    "usr/share/zsh/vendor-completions/_distlock",
    "usr/share/fish/vendor_completions.d/distlock.fish",
    "etc/distlock/distlock.yaml",
    "usr/share/doc/distlock/README.md",
    "usr/share/doc/distlock/distlock.yaml.example",
    "usr/share/doc/distlock/copyright",
    "usr/share/doc/distlock/examples/distlock-backup.cron",
    "usr/share/doc/distlock/examples/percona-upgrade.pp",
    "usr/share/doc/distlock/examples/percona-upgrade.sls",
    "usr/share/doc/distlock/examples/report-worker.service",
    "usr/share/doc/distlock/examples/rolling-upgrade.sh",
];

struct Package {
    /// Keeps the .deb and the unpacked tree until the test process ends.
    _dir: tempfile::TempDir,
    deb: PathBuf,
    /// `dpkg-deb -x` of the package.
    root: PathBuf,
    rev_before_build: Option<String>,
}

/// Builds and unpacks the package the first time a test asks for it. A failure is kept too,
/// so that a broken build is reported by every test without being retried by each.
fn package() -> &'static Package {
    static PACKAGE: OnceLock<Result<Package, String>> = OnceLock::new();
    match PACKAGE.get_or_init(build_package) {
        Ok(package) => package,
        Err(e) => panic!("{e}"),
    }
}

fn build_package() -> Result<Package, String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = env!("CARGO");
    for (tool, package) in [("dpkg-deb", "dpkg"), ("man", "man-db")] {
        if !Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Err(format!(
                "{tool} is not installed (Debian package {package}): run scripts/setup"
            ));
        }
    }
    if !Command::new(cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err(
            "cargo-deb is not installed, so the Debian package cannot be built: run \
                    scripts/setup (it runs `cargo install cargo-deb --locked`)"
                .into(),
        );
    }

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let deb = dir.path().join("distlock.deb");
    let rev_before_build = git_short_rev();
    // A release build: slow the first time, then incremental. cargo deb locks the release
    // directory, the surrounding `cargo test` only its own profile's, so they do not block.
    let out = Command::new(cargo)
        .current_dir(manifest_dir)
        .arg("deb")
        .arg("--output")
        .arg(&deb)
        .output()
        .map_err(|e| format!("cannot run cargo deb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo deb failed ({}):\n{}",
            out.status,
            text(&out)
        ));
    }
    let root = dir.path().join("root");
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    if !out.status.success() {
        return Err(format!("dpkg-deb -x failed:\n{}", text(&out)));
    }
    Ok(Package {
        _dir: dir,
        deb,
        root,
        rev_before_build,
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The paths `dpkg-deb -c` lists, without the leading `./`, each with its mode string.
fn contents(deb: &Path) -> Vec<(String, String)> {
    stdout_ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|line| {
            let mode = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            // "-rw-r--r-- 0/0  3998 2026-11-23 00:00 ./usr/share/..."
            let path = line.split_whitespace().nth(5).unwrap_or_default();
            (
                path.trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string(),
                mode,
            )
        })
        .collect()
}

/// Every environment variable an option stands for: in src/config/defs.rs, the settings table
/// clap is built from, the `DISTLOCK_*` literal of each definition that has a flag (a
/// `setting(...)` or a `flag: Some(...)`). (Read as text: including the module would run its
/// unit tests here again.)
fn option_env_vars() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/defs.rs");
    let source = fs::read_to_string(&path).expect("read src/config/defs.rs");
    let vars: Vec<String> = source
        .split("pub const ")
        .filter(|def| def.contains("setting(") || def.contains("flag: Some("))
        .flat_map(|def| def.split("\"DISTLOCK_").skip(1))
        .filter_map(|rest| rest.split_once('"'))
        .filter(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(name, _)| format!("DISTLOCK_{name}"))
        .collect();
    assert!(vars.len() > 10, "found only {vars:?} in {}", path.display());
    vars
}

#[test]
fn package_installs_binary_man_page_completions_config_and_docs() {
    let listed = contents(&package().deb);
    let files: BTreeSet<&str> = listed
        .iter()
        .filter(|(_, mode)| mode.starts_with('-'))
        .map(|(p, _)| p.as_str())
        .collect();
    let missing: Vec<_> = EXPECTED_FILES
        .iter()
        .filter(|f| !files.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from the package: {missing:?}\nit has: {files:#?}"
    );
    for (path, mode) in &listed {
        let want = if path == "usr/bin/distlock" {
            "-rwxr-xr-x"
        } else if mode.starts_with('d') {
            "drwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "mode of {path}");
    }
}

#[test]
fn configuration_file_is_a_conffile() {
    let deb = &package().deb;
    let conffiles = stdout_ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"));
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/distlock/distlock.yaml"]
    );
    let control = stdout_ok(Command::new("dpkg-deb").arg("-f").arg(deb));
    for field in [
        "Package: distlock",
        &format!("Version: {}-1", env!("CARGO_PKG_VERSION")),
        "Depends: libc6",
        "Section: admin",
    ] {
        assert!(
            control.contains(field),
            "control lacks {field:?}:\n{control}"
        );
    }
}

#[test]
fn unpacked_binary_reports_its_version_and_git_revision() {
    let bin = package().root.join("usr/bin/distlock");
    let version = stdout_ok(Command::new(&bin).arg("--version"));
    let expected = format!("distlock {}", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version:?}");
    // The revision when the package was built, or now: a commit may land while it builds.
    let revs = [package().rev_before_build.clone(), git_short_rev()];
    match revs.iter().flatten().next() {
        Some(_) => assert!(
            revs.iter()
                .flatten()
                .any(|rev| version.trim() == format!("{expected} ({rev})")),
            "{version:?}, HEAD was {revs:?}"
        ),
        None => assert_eq!(version.trim(), expected),
    }
}

/// `git rev-parse --short HEAD` of this checkout; None outside one, as build.rs does.
fn git_short_rev() -> Option<String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !manifest_dir.join(".git").exists() {
        return None;
    }
    let out = Command::new("git")
        .current_dir(manifest_dir)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn unpacked_help_documents_exit_codes_environment_and_files() {
    let bin = package().root.join("usr/bin/distlock");
    let help = stdout_ok(Command::new(&bin).arg("--help"));
    for needle in ["Exit codes:", "128+N", "Files: /etc/distlock/distlock.yaml"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    for var in option_env_vars() {
        assert!(
            help.contains(&format!("[env: {var}")),
            "--help lacks {var}:\n{help}"
        );
    }
}

#[test]
fn man_page_renders_with_exit_status_environment_and_files() {
    let page = package().root.join("usr/share/man/man1/distlock.1.gz");
    // --warnings: groff reports roff problems on stderr; a clean page has none.
    let out = run(Command::new("man")
        .arg("--warnings")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8"));
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "man -l failed:\n{}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "groff warnings:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
    ] {
        assert!(
            rendered.lines().any(|l| l == section),
            "no {section} section in:\n{rendered}"
        );
    }
    // A section runs from its heading to the next line that is not indented.
    let section = |name: &str| -> String {
        rendered
            .lines()
            .skip_while(|l| *l != name)
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with(' '))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let environment = section("ENVIRONMENT");
    let mut vars = option_env_vars();
    // Read by distlock without being an option's, and those it sets for the command.
    vars.extend(
        [
            "DISTLOCK_PASSWORD",
            "DISTLOCK_LOG",
            "DISTLOCK_LOCK_NAME",
            "DISTLOCK_KEY",
            "DISTLOCK_LEASE_ID",
            "DISTLOCK_FENCING_TOKEN",
            "ETCD_LOCK_KEY",
            "ETCD_LOCK_REV",
        ]
        .map(String::from),
    );
    for var in &vars {
        assert!(
            environment.contains(var.as_str()),
            "ENVIRONMENT lacks {var}:\n{environment}"
        );
    }
    let exit_status = section("EXIT STATUS");
    for code in ["0", "1", "2", "3", "4", "126/127", "128+N"] {
        assert!(
            exit_status
                .lines()
                .any(|l| l.trim_start().starts_with(code)),
            "EXIT STATUS lacks {code}:\n{exit_status}"
        );
    }
    assert!(section("FILES").contains("/etc/distlock/distlock.yaml"));
    assert!(rendered.contains(&format!("distlock {}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn shipped_configuration_files_load() {
    let root = &package().root;
    for file in [
        "etc/distlock/distlock.yaml",
        "usr/share/doc/distlock/distlock.yaml.example",
    ] {
        let out = run(Command::new(root.join("usr/bin/distlock"))
            .arg("--config")
            .arg(root.join(file))
            .arg("--show-config")
            .env_remove("DISTLOCK_CONFIG"));
        assert!(
            out.status.success(),
            "{file} does not load:\n{}",
            text(&out)
        );
    }
}

#[test]
fn completions_load() {
    let root = &package().root;
    let bash = root.join("usr/share/bash-completion/completions/distlock");
    let out = run(Command::new("bash")
        .arg("-c")
        .arg("source \"$1\" && complete -p distlock")
        .arg("bash")
        .arg(&bash));
    assert!(out.status.success(), "bash completion:\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("distlock"));
    // zsh and fish are not on a Debian machine by default: check what marks each file.
    let zsh = fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_distlock")).unwrap();
    assert!(zsh.starts_with("#compdef distlock"), "{zsh}");
    let fish =
        fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/distlock.fish")).unwrap();
    assert!(
        fish.contains("complete -c distlock") && fish.contains("-l lock-name"),
        "{fish}"
    );
}
