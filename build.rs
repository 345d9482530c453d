//! Build script: stamps `--version` with the git revision (`0.1.0 (1a2b3c4)`) and the man page
//! with the commit's date. That is all: the man page and the completions are printed by the
//! binary itself (`distlock --generate=man|bash|zsh|fish`, src/manual.rs), which
//! scripts/release runs to write them for the packages.

use std::path::Path;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let git = GitInfo::read(Path::new(&manifest_dir));
    let package = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let version = match &git.short_rev {
        Some(rev) => format!("{package} ({rev})"),
        None => package,
    };
    // src/cli.rs and src/manual.rs read these with option_env!: without them, the bare
    // package version and no date.
    println!("cargo:rustc-env=DISTLOCK_BUILD_VERSION={version}");
    if let Some(date) = git.date {
        println!("cargo:rustc-env=DISTLOCK_BUILD_DATE={date}");
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
            let out = Command::new("git")
                .args(args)
                .current_dir(manifest_dir)
                .stderr(Stdio::null())
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
