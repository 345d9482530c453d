//! The release as an administrator gets it: scripts/release builds the portable binary once
//! (cargo-zigbuild against glibc 2.17) and packs it as a .deb, an .rpm and a .tar.gz with
//! SHA256SUMS, into a scratch dist/ shared by the tests below. We read each package with the
//! tool a system would use (dpkg-deb, rpm, tar), unpack or install it into a scratch root, and
//! run what it installed: the binary, the man page, the completions and the configuration.
//!
//! Needs dpkg-deb, man, rpm and objdump, and what scripts/release needs (cargo-deb,
//! cargo-generate-rpm, cargo-zigbuild, Zig); scripts/setup installs them all. Without them
//! each test skips, saying so; under DISTLOCK_REQUIRE_ALL=1 (scripts/test) a missing tool
//! fails the test: there, a package that was never built must not pass.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{needs, Need};

/// What the suite needs beyond etcd: scripts/release's builder and packagers, and the tools
/// that read what it wrote (scripts/setup installs them all). Without them each test skips,
/// saying so (and fails under DISTLOCK_REQUIRE_ALL=1, as in scripts/test).
const NEEDS: &[Need] = &[
    Need::Cargo("zigbuild"),
    Need::Zig,
    Need::Cargo("deb"),
    Need::Cargo("generate-rpm"),
    Need::Program("dpkg-deb"),
    Need::Program("rpm"),
    Need::Program("man"),
    Need::Program("objdump"),
];

/// Every file the .deb must install (directories are implied).
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
    "usr/share/doc/distlock/LICENSE-APACHE",
    "usr/share/doc/distlock/LICENSE-MIT",
    "usr/share/doc/distlock/examples/distlock-backup.cron",
    "usr/share/doc/distlock/examples/percona-upgrade.pp",
    "usr/share/doc/distlock/examples/percona-upgrade.sls",
    "usr/share/doc/distlock/examples/percona-upgrade.yml",
    "usr/share/doc/distlock/examples/report-worker.service",
    "usr/share/doc/distlock/examples/rolling-upgrade.sh",
];

/// Every file the .rpm installs, in `rpm -qpl` order: the .deb's, with zsh's path on
/// RHEL/Fedora, the license texts where `%license` puts them, and no Debian copyright file.
const EXPECTED_RPM_FILES: &[&str] = &[
    "/etc/distlock/distlock.yaml",
    "/usr/bin/distlock",
    "/usr/share/bash-completion/completions/distlock",
    "/usr/share/doc/distlock/README.md",
    "/usr/share/doc/distlock/distlock.yaml.example",
    "/usr/share/doc/distlock/examples/README.md",
    "/usr/share/doc/distlock/examples/distlock-backup.cron",
    "/usr/share/doc/distlock/examples/percona-upgrade.pp",
    "/usr/share/doc/distlock/examples/percona-upgrade.sls",
    "/usr/share/doc/distlock/examples/percona-upgrade.yml",
    "/usr/share/doc/distlock/examples/report-worker.service",
    "/usr/share/doc/distlock/examples/rolling-upgrade.sh",
    "/usr/share/fish/vendor_completions.d/distlock.fish",
    "/usr/share/licenses/distlock/LICENSE-APACHE",
    "/usr/share/licenses/distlock/LICENSE-MIT",
    "/usr/share/man/man1/distlock.1.gz",
    "/usr/share/zsh/site-functions/_distlock",
];

/// The tarball's top directory and every file in it.
const TARBALL_FILES: &[&str] = &[
    "LICENSE-APACHE",
    "LICENSE-MIT",
    "README.md",
    "completions/_distlock",
    "completions/distlock.bash",
    "completions/distlock.fish",
    "distlock",
    "distlock.1",
    "distlock.yaml",
    "distlock.yaml.example",
];

/// The oldest glibc the binary may need: CentOS 7's (2014).
const MAX_GLIBC: (u32, u32) = (2, 17);

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Package {
    /// Keeps dist/ and the unpacked trees until the test process ends.
    _dir: tempfile::TempDir,
    /// What scripts/release wrote.
    dist: PathBuf,
    deb: PathBuf,
    rpm: PathBuf,
    tarball: PathBuf,
    /// `dpkg-deb -x` of the .deb.
    root: PathBuf,
    /// `rpm --root DIR --nodeps -i` of the .rpm.
    rpm_root: PathBuf,
    /// The tarball's top directory, unpacked.
    tar_root: PathBuf,
    rev_before_build: Option<String>,
}

impl Package {
    /// The binary each package installed: the same portable build in all three.
    fn binaries(&self) -> [(&'static str, PathBuf); 3] {
        [
            (".deb", self.root.join("usr/bin/distlock")),
            (".rpm", self.rpm_root.join("usr/bin/distlock")),
            (".tar.gz", self.tar_root.join("distlock")),
        ]
    }
}

/// Runs scripts/release and unpacks what it wrote the first time a test asks for it. A failure
/// is kept too, so that a broken build is reported by every test without being retried by each.
fn package() -> &'static Package {
    static PACKAGE: OnceLock<Result<Package, String>> = OnceLock::new();
    match PACKAGE.get_or_init(build_package) {
        Ok(package) => package,
        Err(e) => panic!("{e}"),
    }
}

fn build_package() -> Result<Package, String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("man", "man-db"),
        ("rpm", "rpm"),
        ("objdump", "binutils"),
    ] {
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

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dist = dir.path().join("dist");
    let rev_before_build = git_short_rev();
    // A release build: slow the first time, then incremental. It builds for an explicit
    // --target, so it locks a directory of its own, not the surrounding `cargo test`'s.
    let out = Command::new("bash")
        .arg(manifest_dir.join("scripts/release"))
        .arg("--out")
        .arg(&dist)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/release: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/release failed ({}):\n{}",
            out.status,
            text(&out)
        ));
    }
    let deb = dist.join(format!("distlock_{VERSION}-1_amd64.deb"));
    let rpm = dist.join(format!("distlock-{VERSION}-1.x86_64.rpm"));
    let tarball = dist.join(format!("distlock-{VERSION}-x86_64-linux.tar.gz"));

    let root = dir.path().join("root");
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    if !out.status.success() {
        return Err(format!("dpkg-deb -x failed:\n{}", text(&out)));
    }
    // rpm keeps its database inside the scratch root too; --nodeps: no glibc in there.
    let rpm_root = dir.path().join("rpm-root");
    fs::create_dir(&rpm_root).map_err(|e| e.to_string())?;
    let out = run(Command::new("rpm")
        .arg("--root")
        .arg(&rpm_root)
        .args(["--nodeps", "-i"])
        .arg(&rpm));
    if !out.status.success() {
        return Err(format!("rpm --root -i failed:\n{}", text(&out)));
    }
    let out = run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path()));
    if !out.status.success() {
        return Err(format!("tar -xzf failed:\n{}", text(&out)));
    }
    let tar_root = dir.path().join(format!("distlock-{VERSION}-x86_64-linux"));
    Ok(Package {
        _dir: dir,
        dist,
        deb,
        rpm,
        tarball,
        root,
        rpm_root,
        tar_root,
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

/// Every environment variable an option stands for: in src/settings/mod.rs, the settings table
/// clap is built from, the `DISTLOCK_*` literal of each definition that has a flag (a
/// `setting(...)` or a `flag: Some(...)`). (Read as text: including the module would run its
/// unit tests here again.)
fn option_env_vars() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/settings/mod.rs");
    let source = fs::read_to_string(&path).expect("read src/settings/mod.rs");
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
    if !needs(NEEDS) {
        return;
    }
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
    if !needs(NEEDS) {
        return;
    }
    let deb = &package().deb;
    let conffiles = stdout_ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"));
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/distlock/distlock.yaml"]
    );
    let control = stdout_ok(Command::new("dpkg-deb").arg("-f").arg(deb));
    for field in [
        "Package: distlock",
        &format!("Version: {VERSION}-1"),
        // Not dpkg-shlibdeps' answer; see Cargo.toml, and the glibc test below.
        "Depends: libc6 (>= 2.17)\n",
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
    if !needs(NEEDS) {
        return;
    }
    for (package_kind, bin) in package().binaries() {
        let version = stdout_ok(Command::new(&bin).arg("--version"));
        let expected = format!("distlock {VERSION}");
        assert!(
            version.starts_with(&expected),
            "{package_kind}: {version:?}"
        );
        // The revision when the package was built, or now: a commit may land while it builds.
        let revs = [package().rev_before_build.clone(), git_short_rev()];
        match revs.iter().flatten().next() {
            Some(_) => assert!(
                revs.iter()
                    .flatten()
                    .any(|rev| version.trim() == format!("{expected} ({rev})")),
                "{package_kind}: {version:?}, HEAD was {revs:?}"
            ),
            None => assert_eq!(version.trim(), expected, "{package_kind}"),
        }
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
    if !needs(NEEDS) {
        return;
    }
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
    if !needs(NEEDS) {
        return;
    }
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
        "EXAMPLES",
        "SEE ALSO",
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
    assert!(
        section("FILES").contains("the tarball has it as distlock.yaml.example"),
        "{}",
        section("FILES")
    );
    let synopsis = section("SYNOPSIS");
    for form in [
        "distlock --lock-name=NAME [OPTIONS] [--] COMMAND [ARGS...]",
        "distlock --lock-name=NAME --lock [OPTIONS]",
        "distlock --lock-name=NAME --unlock[=KEY] [OPTIONS]",
        "distlock --lock-name=NAME --history [OPTIONS]",
        "distlock --list [--follow | --output=prometheus] [OPTIONS]",
    ] {
        assert!(
            synopsis.lines().any(|l| l.trim() == form),
            "SYNOPSIS lacks {form}:\n{synopsis}"
        );
    }
    let examples = section("EXAMPLES");
    for needle in [
        "-- yum -y upgrade",
        "0 0 * * * root distlock --lock-name=nightly --nowait",
        "distlock --lock-name=db_prod --unlock",
        "ExecStart=/usr/bin/distlock",
    ] {
        assert!(
            examples.contains(needle),
            "EXAMPLES lack {needle}:\n{examples}"
        );
    }
    assert!(rendered.contains(&format!("distlock {VERSION}")));
}

#[test]
fn shipped_configuration_files_load() {
    if !needs(NEEDS) {
        return;
    }
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
    if !needs(NEEDS) {
        return;
    }
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

#[test]
fn release_writes_three_packages_and_checksums_that_verify() {
    if !needs(NEEDS) {
        return;
    }
    let package = package();
    let mut names: Vec<String> = fs::read_dir(&package.dist)
        .expect("read dist/")
        .map(|e| {
            e.expect("dist/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let file_name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let packages: BTreeSet<String> = [&package.deb, &package.rpm, &package.tarball]
        .map(|p| file_name(p))
        .into();
    let mut expected: Vec<String> = packages.iter().cloned().collect();
    expected.push("SHA256SUMS".into());
    expected.sort();
    assert_eq!(names, expected);

    let sums = fs::read_to_string(package.dist.join("SHA256SUMS")).expect("read SHA256SUMS");
    let listed: BTreeSet<String> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(String::from)
        .collect();
    assert_eq!(listed, packages, "SHA256SUMS:\n{sums}");
    let check = stdout_ok(
        Command::new("sha256sum")
            .args(["--strict", "-c", "SHA256SUMS"])
            .current_dir(&package.dist),
    );
    assert_eq!(check.matches(": OK").count(), 3, "{check}");
}

/// The highest `GLIBC_x.y` symbol version `objdump -T` finds, and the libraries it needs.
fn glibc_needs(bin: &Path) -> ((u32, u32), Vec<String>) {
    let symbols = stdout_ok(Command::new("objdump").arg("-T").arg(bin));
    let max = symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .max()
        .unwrap_or_else(|| panic!("no GLIBC_ symbol versions in {}", bin.display()));
    let needed = stdout_ok(Command::new("objdump").arg("-p").arg(bin))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(|lib| lib.trim().to_string())
        .collect();
    (max, needed)
}

#[test]
fn every_package_carries_one_portable_binary_that_needs_at_most_glibc_2_17() {
    if !needs(NEEDS) {
        return;
    }
    let binaries = package().binaries();
    let first = fs::read(&binaries[0].1).expect("read the .deb's binary");
    for (package_kind, bin) in &binaries {
        assert!(
            fs::read(bin).expect("read binary") == first,
            "{package_kind}'s binary differs from the .deb's: all must carry the one release build"
        );
        let (max, needed) = glibc_needs(bin);
        assert!(
            max <= MAX_GLIBC,
            "{package_kind}'s binary needs GLIBC_{}.{}, more than {MAX_GLIBC:?}",
            max.0,
            max.1
        );
        // Only glibc's own libraries: then "libc6 (>= 2.17)" and the rpm's libc requires are
        // the whole story.
        for lib in &needed {
            assert!(
                [
                    "libc.so.6",
                    "libm.so.6",
                    "libpthread.so.0",
                    "libdl.so.2",
                    "librt.so.1"
                ]
                .contains(&lib.as_str())
                    || lib.starts_with("ld-linux"),
                "{package_kind}'s binary needs {lib}, which is not part of glibc: {needed:?}"
            );
        }
        let help = stdout_ok(Command::new(bin).arg("--help"));
        assert!(help.contains("--lock-name"), "{package_kind}: {help}");
    }
}

/// One `rpm -qp` query of the package, as text.
fn rpm_query(args: &[&str]) -> String {
    stdout_ok(
        Command::new("rpm")
            .arg("-qp")
            .args(args)
            .arg(&package().rpm),
    )
}

#[test]
fn rpm_names_version_license_summary_and_url() {
    if !needs(NEEDS) {
        return;
    }
    let info = rpm_query(&["-i"]);
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("rpm -qpi has no {name}:\n{info}"))
    };
    assert_eq!(field("Name"), "distlock");
    assert_eq!(field("Version"), VERSION);
    assert_eq!(field("Release"), "1");
    assert_eq!(field("Architecture"), "x86_64");
    assert_eq!(field("License"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(field("Summary"), env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(field("URL"), "file:///usr/share/doc/distlock/README.md");
    // RHEL/CentOS 7's rpm 4.11 cannot read the zstd payload cargo-generate-rpm writes by default.
    assert_eq!(rpm_query(&["--qf", "%{PAYLOADCOMPRESSOR}"]), "gzip");
    // Requires: glibc and nothing from outside a base system.
    let requires = rpm_query(&["-R"]);
    assert!(
        requires.contains("libc.so.6(GLIBC_2.17)(64bit)"),
        "{requires}"
    );
    assert!(!requires.contains("GLIBC_2.18"), "{requires}");
}

#[test]
fn rpm_lists_binary_man_page_completions_config_and_docs_with_their_modes() {
    if !needs(NEEDS) {
        return;
    }
    let listed: Vec<(String, String)> = rpm_query(&["--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]"])
        .lines()
        .map(|l| {
            let (mode, path) = l.split_once(' ').expect("mode and path");
            (path.to_string(), mode.to_string())
        })
        .collect();
    let paths: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, EXPECTED_RPM_FILES);
    let qpl = rpm_query(&["-l"]);
    assert_eq!(qpl.lines().collect::<Vec<_>>(), EXPECTED_RPM_FILES);
    for (path, mode) in &listed {
        let want = if path == "/usr/bin/distlock" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "mode of {path}");
    }
}

#[test]
fn rpm_configuration_file_is_config_noreplace() {
    if !needs(NEEDS) {
        return;
    }
    assert_eq!(
        rpm_query(&["--configfiles"]).lines().collect::<Vec<_>>(),
        ["/etc/distlock/distlock.yaml"]
    );
    // c = %config, n = noreplace: an upgrade keeps an edited file and writes .rpmnew beside it.
    let flags = rpm_query(&["--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"]);
    let config = flags
        .lines()
        .find_map(|l| l.strip_prefix("/etc/distlock/distlock.yaml "))
        .unwrap_or_else(|| panic!("no flags for the config file:\n{flags}"));
    assert!(
        config.contains('c') && config.contains('n'),
        "flags {config:?}"
    );
}

#[test]
fn rpm_installs_into_a_scratch_root_and_runs_from_there() {
    if !needs(NEEDS) {
        return;
    }
    let root = &package().rpm_root;
    for file in EXPECTED_RPM_FILES {
        assert!(
            root.join(file.trim_start_matches('/')).is_file(),
            "{file} not installed"
        );
    }
    let installed = stdout_ok(Command::new("rpm").arg("--root").arg(root).arg("-qa"));
    assert_eq!(installed.trim(), format!("distlock-{VERSION}-1.x86_64"));
    let bin = root.join("usr/bin/distlock");
    let version = stdout_ok(Command::new(&bin).arg("--version"));
    assert!(
        version.starts_with(&format!("distlock {VERSION}")),
        "{version}"
    );
    let help = stdout_ok(Command::new(&bin).arg("--help"));
    assert!(
        help.contains("Files: /etc/distlock/distlock.yaml"),
        "{help}"
    );
    let out = run(Command::new(&bin)
        .arg("--config")
        .arg(root.join("etc/distlock/distlock.yaml"))
        .arg("--show-config")
        .env_remove("DISTLOCK_CONFIG"));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn tarball_holds_binary_man_page_completions_configs_and_readme() {
    if !needs(NEEDS) {
        return;
    }
    let package = package();
    let top = format!("distlock-{VERSION}-x86_64-linux");
    let listed: Vec<String> = stdout_ok(Command::new("tar").arg("-tzf").arg(&package.tarball))
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| {
            l.strip_prefix(&format!("{top}/"))
                .unwrap_or_else(|| panic!("{l} is outside {top}/"))
                .to_string()
        })
        .collect();
    assert_eq!(listed, TARBALL_FILES);

    let root = &package.tar_root;
    let out = run(Command::new("man")
        .arg("--warnings")
        .arg("-l")
        .arg(root.join("distlock.1"))
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8"));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("EXIT STATUS"));
    for config in ["distlock.yaml", "distlock.yaml.example"] {
        let out = run(Command::new(root.join("distlock"))
            .arg("--config")
            .arg(root.join(config))
            .arg("--show-config")
            .env_remove("DISTLOCK_CONFIG"));
        assert!(out.status.success(), "{config}: {}", text(&out));
    }
    let out = run(Command::new("bash")
        .arg("-c")
        .arg("source \"$1\" && complete -p distlock")
        .arg("bash")
        .arg(root.join("completions/distlock.bash")));
    assert!(out.status.success(), "bash completion:\n{}", text(&out));
}

#[test]
fn readme_install_section_names_the_files_release_writes() {
    if !needs(NEEDS) {
        return;
    }
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let install = readme
        .split("\n## Install\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has an Install section");
    let package = package();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for line in [
        format!("apt install ./{}", name(&package.deb)),
        format!("yum install ./{}", name(&package.rpm)),
        format!("dnf install ./{}", name(&package.rpm)),
        format!("tar xzf {}", name(&package.tarball)),
        format!("cd {}", name(&package.tar_root)),
    ] {
        assert!(
            install.contains(&line),
            "the Install section lacks `{line}`"
        );
    }
    // The tarball's install lines name files it has.
    for file in TARBALL_FILES {
        if install.contains(&format!(" {file} ")) {
            assert!(package.tar_root.join(file).is_file(), "{file}");
        }
    }
}
