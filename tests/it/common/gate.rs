//! What a test needs beyond etcd and etcdctl (root, Zig, rpm, Puppet, ...). A test whose need
//! is missing skips: it says so in one line on stderr, `skipped: needs X (<test>)`, and
//! passes, so that a plain `cargo test` passes on a contributor's machine. With
//! `DISTLOCK_REQUIRE_ALL=1` (scripts/test sets it, so CI) a missing need fails the test
//! instead: there, a check that was never run must not pass. etcd and etcdctl are never
//! skipped: every integration test needs them, and `tool` fails naming scripts/setup.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Set to 1, a missing need fails the test instead of skipping it.
pub const REQUIRE_ALL_VAR: &str = "DISTLOCK_REQUIRE_ALL";

/// Something a test needs beyond etcd and etcdctl.
#[derive(Clone, Copy)]
pub enum Need {
    Root,
    /// A program on PATH.
    Program(&'static str),
    /// A cargo subcommand: `deb` is cargo-deb.
    Cargo(&'static str),
    /// Zig where scripts/setup puts it for cargo-zigbuild: in the project's tools venv.
    Zig,
    /// A python3 with PyYAML and Jinja2 (`python3_with_yaml_and_jinja2`).
    PythonYamlJinja,
}

impl Need {
    /// As the skip line names it.
    fn name(self) -> String {
        match self {
            Need::Root => "root".into(),
            Need::Program(program) => program.into(),
            Need::Cargo(subcommand) => format!("cargo-{subcommand}"),
            Need::Zig => "Zig".into(),
            Need::PythonYamlJinja => "python3 with PyYAML and Jinja2".into(),
        }
    }

    fn is_met(self) -> bool {
        match self {
            Need::Root => nix::unistd::geteuid().is_root(),
            Need::Program(program) => on_path(program),
            // As scripts/setup checks them.
            Need::Cargo(subcommand) => runs(Command::new("cargo").args([subcommand, "--help"])),
            Need::Zig => runs(
                Command::new(tools_venv().join("bin/python3")).args(["-m", "ziglang", "version"]),
            ),
            Need::PythonYamlJinja => python3_with_yaml_and_jinja2().is_some(),
        }
    }
}

/// Whether the calling test may run: true when it has every one of `needs`. Otherwise it
/// prints `skipped: needs X, Y (<test>)` and returns false, for the test to return (and pass);
/// with DISTLOCK_REQUIRE_ALL=1 it fails the test instead. Each need is checked once.
pub fn needs(needs: &[Need]) -> bool {
    static MET: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let missing: Vec<String> = needs
        .iter()
        .map(|need| (need.name(), *need))
        .filter(|(name, need)| {
            let mut met = MET.get_or_init(Mutex::default).lock().unwrap();
            !*met.entry(name.clone()).or_insert_with(|| need.is_met())
        })
        .map(|(name, _)| name)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    assert!(
        std::env::var_os(REQUIRE_ALL_VAR).is_none_or(|v| v != "1"),
        "{test} needs {missing}; {REQUIRE_ALL_VAR}=1 (scripts/test) allows no skipping: run \
         scripts/setup, and the fault suite as root"
    );
    // Straight to the file descriptor: libtest captures eprintln! of a passing test, and the
    // contributor should see what did not run.
    let _ = writeln!(std::io::stderr(), "skipped: needs {missing} ({test})");
    false
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Whether `cmd` runs and exits 0 (its output discarded).
fn runs(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The project's tools venv, where scripts/setup installs Zig (and etcd 3.5), found as it
/// finds it.
fn tools_venv() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(venv) = var("DISTLOCK_TOOLS_VENV").or_else(|| var("DISTLOCK_ZIG_VENV")) {
        return venv.into();
    }
    let data = var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&var("HOME").unwrap_or_default()).join(".local/share"));
    data.join("distlock/tools-venv")
}

/// The first of `python3` (on PATH) and Debian's /usr/bin/python3 that has PyYAML and Jinja2:
/// the one on PATH may be a separate install without them.
pub fn python3_with_yaml_and_jinja2() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| runs(Command::new(python).args(["-c", "import yaml, jinja2"])))
}
