//! Production etcd: TLS with a private CA, client certificates (`--client-cert-auth`), users
//! and RBAC, and keeping the password secret. Every test starts its own etcd, with TLS or
//! authentication through the harness's `Etcd::builder()`. The certificates are made in the
//! test with rcgen (`Pki`), so no openssl is needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

/// The `maxtime` the failure tests give distlock, and what they allow on top of it for
/// starting the process and printing the error.
const MAXTIME: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// Helpers

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs distlock, at most 20 s.
fn run(cmd: Command) -> (Output, Duration) {
    run_timed(cmd, Duration::from_secs(20))
}

#[track_caller]
fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        shell_status(out.status),
        code,
        "{what}: exit status\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Exactly one stderr line, starting `distlock: `; returns it.
#[track_caller]
fn one_error_line(out: &Output, what: &str) -> String {
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("distlock: "),
        "{what}: expected one `distlock: ` line on stderr, got:\n{stderr}"
    );
    lines[0].to_string()
}

/// `--cacert --cert --key` for the PKI's CA and client certificate.
fn tls_flags(pki: &Pki) -> Vec<String> {
    vec![
        format!("--cacert={}", pki.ca().display()),
        format!("--cert={}", pki.cert().display()),
        format!("--key={}", pki.key().display()),
    ]
}

/// --lock, --status, --unlock and a run of a command that checks what it was given: the
/// whole story an operator goes through, against `cmd()`'s etcd.
fn lock_unlock_and_run(what: &str, mut cmd: impl FnMut() -> Command, keys: impl Fn() -> usize) {
    let mut lock = cmd();
    lock.args(["--lock-name=story", "--lock"]);
    let (out, _) = run(lock);
    assert_code(&out, 0, &format!("{what}: --lock"));
    assert!(
        text(&out.stdout).starts_with("DISTLOCK_KEY="),
        "{what}: --lock printed {}",
        text(&out.stdout)
    );
    assert_eq!(keys(), 1, "{what}: the lock's key is in etcd");

    let mut status = cmd();
    status.args(["--lock-name=story", "--status"]);
    let (out, _) = run(status);
    assert_code(&out, 0, &format!("{what}: --status"));
    assert!(text(&out.stdout).contains("held by"), "{what}: --status");

    let mut unlock = cmd();
    unlock.args(["--lock-name=story", "--unlock"]);
    let (out, _) = run(unlock);
    assert_code(&out, 0, &format!("{what}: --unlock"));
    assert_eq!(keys(), 0, "{what}: --unlock removed the key");

    let mut run_cmd = cmd();
    run_cmd.args([
        "--lock-name=story",
        "--",
        "sh",
        "-c",
        r#"test -n "$DISTLOCK_KEY" && test -n "$DISTLOCK_FENCING_TOKEN" && exit 7"#,
    ]);
    let (out, _) = run(run_cmd);
    assert_code(&out, 7, &format!("{what}: run"));
    assert_eq!(keys(), 0, "{what}: the run released its lock");
}

// ---------------------------------------------------------------------------------------------
// TLS

#[test]
fn tls_with_client_certificate_from_flags() {
    let pki = Pki::new();
    let etcd = Etcd::builder().tls(&pki).start();
    let p = prefix("tls-flags");
    lock_unlock_and_run(
        "flags",
        || {
            let mut cmd = distlock_std(&etcd.endpoint(), &p);
            cmd.args(tls_flags(&pki));
            cmd
        },
        || etcd.keys(&p).len(),
    );
}

#[test]
fn tls_with_client_certificate_from_the_environment() {
    let pki = Pki::new();
    let etcd = Etcd::builder().tls(&pki).start();
    let p = prefix("tls-env");
    let env = |cmd: &mut Command| {
        cmd.env("DISTLOCK_CACERT", pki.ca())
            .env("DISTLOCK_CERT", pki.cert())
            .env("DISTLOCK_KEY_FILE", pki.key())
            // What a command running under distlock has: the lock's key, not a key file.
            .env("DISTLOCK_KEY", "/distlock/outer/694d7e0a1b2c3d4e");
    };
    lock_unlock_and_run(
        "env",
        || {
            let mut cmd = distlock_std(&etcd.endpoint(), &p);
            env(&mut cmd);
            cmd
        },
        || etcd.keys(&p).len(),
    );

    // A script under distlock calls distlock again: it inherits DISTLOCK_KEY (the outer lock's
    // key) and the TLS variables, and the inner call must still find its client key.
    let mut outer = distlock_std(&etcd.endpoint(), &p);
    env(&mut outer);
    outer.env_remove("DISTLOCK_KEY").args([
        "--lock-name=outer",
        "--",
        env!("CARGO_BIN_EXE_distlock"),
        "--lock-name=inner",
        "--",
        "sh",
        "-c",
        "exit 5",
    ]);
    let (out, _) = run(outer);
    assert_code(
        &out,
        5,
        "distlock inside distlock, TLS from the environment",
    );
    assert!(etcd.keys(&p).is_empty());

    // etcdctl's spelling, DISTLOCK_KEY for the client key, works where distlock did not set
    // that variable itself.
    lock_unlock_and_run(
        "env DISTLOCK_KEY",
        || {
            let mut cmd = distlock_std(&etcd.endpoint(), &p);
            cmd.env("DISTLOCK_CACERT", pki.ca())
                .env("DISTLOCK_CERT", pki.cert())
                .env("DISTLOCK_KEY", pki.key());
            cmd
        },
        || etcd.keys(&p).len(),
    );
}

#[test]
fn tls_with_client_certificate_from_the_config_file() {
    let pki = Pki::new();
    let etcd = Etcd::builder().tls(&pki).start();
    let p = prefix("tls-yaml");
    let file = pki.path("distlock.yaml");
    fs::write(
        &file,
        format!(
            "endpoints:\n  - {}\nprefix: {p}\ncacert: {}\ncert: {}\nkey: {}\n",
            etcd.endpoint(),
            pki.ca().display(),
            pki.cert().display(),
            pki.key().display()
        ),
    )
    .unwrap();
    lock_unlock_and_run(
        "yaml",
        || {
            let mut cmd = distlock_std("unused", "unused");
            cmd.env_remove("DISTLOCK_ENDPOINTS")
                .env_remove("DISTLOCK_PREFIX")
                .env("DISTLOCK_CONFIG", &file);
            cmd
        },
        || etcd.keys(&p).len(),
    );
}

/// One way to get TLS wrong: the flags, and what the error line must say (each, ignoring case).
struct Refusal {
    what: &'static str,
    flags: Vec<String>,
    says: Vec<String>,
}

/// `--cacert`, `--cert` and `--key` for the PKI's CA and its certificate `name`
/// (`<name>.pem`, `<name>-key.pem`).
fn flags_with(pki: &Pki, name: &str) -> Vec<String> {
    vec![
        format!("--cacert={}", pki.ca().display()),
        format!("--cert={}", pki.path(&format!("{name}.pem")).display()),
        format!("--key={}", pki.path(&format!("{name}-key.pem")).display()),
    ]
}

/// Each case in each mode is exit 3 within maxtime with one line that names the certificate
/// at fault (what went wrong, and where to look), on every etcd version. They run in
/// parallel: each may take the whole maxtime.
fn refused_within_maxtime(endpoint: &str, prefix: &str, cases: &[Refusal], modes: &[&[&str]]) {
    let maxtime = format!("--maxtime={}s", MAXTIME.as_secs());
    let mut wrong = Vec::new();
    std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .flat_map(|case| modes.iter().map(move |mode| (case, mode)))
            .map(|(case, mode)| {
                let mut cmd = distlock_std(endpoint, prefix);
                cmd.arg(&maxtime)
                    .args(&case.flags)
                    .arg("--lock-name=x")
                    .args(*mode);
                let what = format!("{}, {mode:?}", case.what);
                (case, what, scope.spawn(move || run(cmd)))
            })
            .collect();
        for (case, what, running) in runs {
            let (out, took) = running.join().unwrap();
            assert_code(&out, 3, &what);
            let line = one_error_line(&out, &what);
            assert!(took <= MAXTIME + SLACK, "{what}: took {took:?}: {line}");
            eprintln!("{what} ({took:?}): {line}");
            let lower = line.to_lowercase();
            let missing: Vec<_> = case
                .says
                .iter()
                .filter(|w| !lower.contains(&w.to_lowercase()))
                .collect();
            if !missing.is_empty() {
                wrong.push(format!("{what}: does not say {missing:?}: {line}"));
            }
        }
    });
    assert!(
        wrong.is_empty(),
        "etcd {:?}:\n{}",
        etcd_version(),
        wrong.join("\n")
    );
}

/// A server whose certificate distlock cannot verify is exit 3 within maxtime, in one line
/// that names etcd's server certificate and says why: not signed by a CA we trust, expired,
/// or made out for another name.
#[test]
fn untrusted_server_certificate_is_exit_3_within_maxtime() {
    let pki = Pki::new();
    let etcd = Etcd::builder().tls(&pki).start();
    let expired = Etcd::builder()
        .tls(&pki)
        .server_cert("expired-server")
        .start();
    let misnamed = Etcd::builder()
        .tls(&pki)
        .server_cert("misnamed-server")
        .start();
    let p = prefix("tls-untrusted");
    let says = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let untrusted = [
        Refusal {
            what: "system roots (no --cacert)",
            flags: vec![
                format!("--cert={}", pki.cert().display()),
                format!("--key={}", pki.key().display()),
            ],
            says: says(&["server certificate", "--cacert"]),
        },
        Refusal {
            what: "another CA",
            flags: vec![
                format!("--cacert={}", pki.path("other-ca.pem").display()),
                format!("--cert={}", pki.cert().display()),
                format!("--key={}", pki.key().display()),
            ],
            says: says(&["server certificate", "--cacert"]),
        },
    ];
    let modes: [&[&str]; 2] = [&["--lock"], &["--", "true"]];
    refused_within_maxtime(&etcd.endpoint(), &p, &untrusted, &modes);
    let expired_case = [Refusal {
        what: "expired server certificate",
        flags: tls_flags(&pki),
        says: says(&["server certificate", "expired"]),
    }];
    refused_within_maxtime(&expired.endpoint(), &p, &expired_case, &modes);
    let misnamed_case = [Refusal {
        what: "server certificate for another name",
        flags: tls_flags(&pki),
        says: says(&["server certificate", "127.0.0.1", "name"]),
    }];
    refused_within_maxtime(&misnamed.endpoint(), &p, &misnamed_case, &modes);
    for etcd in [&etcd, &expired, &misnamed] {
        assert!(etcd.keys(&p).is_empty());
    }
}

/// etcd with --client-cert-auth refuses a client without a certificate, with one from another
/// CA, or with an expired one: exit 3 within maxtime, in one line that names the client
/// certificate (its file) and says what to do. etcd 3.4 closes the connection after the
/// handshake, 3.5 sends a TLS alert: the line is the same.
#[test]
fn missing_foreign_or_expired_client_certificate_is_exit_3_within_maxtime() {
    let pki = Pki::new();
    let etcd = Etcd::builder().tls(&pki).start();
    let p = prefix("tls-nocert");
    let file = |name: &str| pki.path(name).display().to_string();
    let cases = [
        Refusal {
            what: "no client certificate",
            flags: vec![format!("--cacert={}", pki.ca().display())],
            says: vec!["client certificate".into(), "--cert".into()],
        },
        Refusal {
            what: "client certificate of another CA",
            flags: flags_with(&pki, "other-client"),
            says: vec![
                "client certificate".into(),
                file("other-client.pem"),
                "trust".into(),
            ],
        },
        Refusal {
            what: "expired client certificate",
            flags: flags_with(&pki, "expired-client"),
            says: vec![
                "client certificate".into(),
                file("expired-client.pem"),
                "expired".into(),
            ],
        },
    ];
    let modes: [&[&str]; 3] = [&["--lock"], &["--", "true"], &["--status"]];
    refused_within_maxtime(&etcd.endpoint(), &p, &cases, &modes);
    assert!(etcd.keys(&p).is_empty());
}

/// A list whose first endpoint is down (nothing listens on it) still works, over TLS too.
#[test]
fn first_endpoint_down_still_works() {
    let pki = Pki::new();
    let tls = Etcd::builder().tls(&pki).start();
    let plain = Etcd::start();
    let p = prefix("first-down");
    let closed = free_port();

    let endpoints = format!("http://127.0.0.1:{closed},{}", plain.endpoint());
    lock_unlock_and_run(
        "http, first endpoint down",
        || {
            let mut cmd = distlock_std(&endpoints, &p);
            cmd.arg("--maxtime=3s");
            cmd
        },
        || get_prefix(&plain.endpoint(), &p).len(),
    );

    let endpoints = format!("https://127.0.0.1:{closed},{}", tls.endpoint());
    lock_unlock_and_run(
        "https, first endpoint down",
        || {
            let mut cmd = distlock_std(&endpoints, &p);
            cmd.arg("--maxtime=3s").args(tls_flags(&pki));
            cmd
        },
        || tls.keys(&p).len(),
    );
}

// ---------------------------------------------------------------------------------------------
// Authentication and RBAC

const ROOT_PASSWORD: &str = "r00t-pw-for-tests";
/// Distinctive, so that finding it anywhere is certainly a leak.
const PASSWORD: &str = "Lck-s3cret-7f3a9c";

/// etcd with auth enabled: root, and a user `locker` whose role may read and write `prefix`
/// (and nothing else). `Etcd::keys` reads as root.
fn auth_etcd(prefix: &str) -> Etcd {
    Etcd::builder()
        .auth(ROOT_PASSWORD, "locker", PASSWORD, prefix)
        .start()
}

/// distlock as `locker` with the password in DISTLOCK_PASSWORD.
fn as_locker(etcd: &Etcd, prefix: &str) -> Command {
    let mut cmd = distlock_std(&etcd.endpoint(), prefix);
    cmd.args(["--user", "locker"])
        .env("DISTLOCK_PASSWORD", PASSWORD);
    cmd
}

#[track_caller]
fn assert_no_password(out: &Output, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !text(bytes).contains(PASSWORD),
            "{what}: the password is on {stream}:\n{}",
            text(bytes)
        );
    }
}

#[test]
fn user_with_a_prefix_role_can_lock_unlock_run_and_look() {
    let p = prefix("auth");
    let etcd = auth_etcd(&p);

    // The password from DISTLOCK_PASSWORD.
    lock_unlock_and_run(
        "DISTLOCK_PASSWORD",
        || as_locker(&etcd, &p),
        || etcd.keys(&p).len(),
    );

    // The password from --password-file (mode 0600, a trailing newline as editors leave it).
    let dir = scratch_dir();
    let file = dir.path().join("password");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let with_file = || {
        let mut cmd = distlock_std(&etcd.endpoint(), &p);
        cmd.args(["--user=locker", "--password-file"]).arg(&file);
        cmd
    };
    lock_unlock_and_run("--password-file", with_file, || etcd.keys(&p).len());

    // The same from DISTLOCK_USER and DISTLOCK_PASSWORD_FILE, and from the YAML file.
    lock_unlock_and_run(
        "DISTLOCK_USER, DISTLOCK_PASSWORD_FILE",
        || {
            let mut cmd = distlock_std(&etcd.endpoint(), &p);
            cmd.env("DISTLOCK_USER", "locker")
                .env("DISTLOCK_PASSWORD_FILE", &file);
            cmd
        },
        || etcd.keys(&p).len(),
    );
    let yaml = dir.path().join("distlock.yaml");
    fs::write(
        &yaml,
        format!("user: locker\npassword_file: {}\n", file.display()),
    )
    .unwrap();
    lock_unlock_and_run(
        "user and password_file in the YAML file",
        || {
            let mut cmd = distlock_std(&etcd.endpoint(), &p);
            cmd.env("DISTLOCK_CONFIG", &yaml);
            cmd
        },
        || etcd.keys(&p).len(),
    );

    // --list and --status (text and JSON) while the lock is held.
    let mut lock = as_locker(&etcd, &p);
    lock.args(["--lock-name=held", "--lock", "--reason=maintenance"]);
    assert_code(&run(lock).0, 0, "--lock");
    for output in ["text", "json"] {
        let mut list = with_file();
        list.args(["--list", &format!("--output={output}")]);
        let (out, _) = run(list);
        assert_code(&out, 0, &format!("--list --output={output}"));
        assert!(text(&out.stdout).contains("held"), "{}", text(&out.stdout));
        assert!(text(&out.stdout).contains("maintenance"));
        assert_no_password(&out, "--list");

        let mut status = as_locker(&etcd, &p);
        status.args([
            "--lock-name=held",
            "--status",
            &format!("--output={output}"),
        ]);
        let (out, _) = run(status);
        assert_code(&out, 0, &format!("--status --output={output}"));
        assert!(text(&out.stdout).contains("maintenance"));
    }
    // A busy lock with --nowait is "not acquired" (1), not an etcd failure.
    let mut busy = as_locker(&etcd, &p);
    busy.args(["--lock-name=held", "--nowait", "--", "true"]);
    assert_code(&run(busy).0, 1, "--nowait on a held lock");
    let mut unlock = as_locker(&etcd, &p);
    unlock.args(["--lock-name=held", "--unlock"]);
    assert_code(&run(unlock).0, 0, "--unlock");
    assert!(etcd.keys(&p).is_empty());
}

#[test]
fn wrong_password_is_exit_3_about_credentials() {
    let p = prefix("auth-wrong");
    let etcd = auth_etcd(&p);
    let wrong = "not-the-Password-42";
    for mode in [&["--lock"][..], &["--", "true"][..], &["--status"][..]] {
        let mut cmd = distlock_std(&etcd.endpoint(), &p);
        cmd.args(["--user=locker", "--lock-name=x", "--maxtime=2s"])
            .args(mode)
            .env("DISTLOCK_PASSWORD", wrong);
        let (out, took) = run(cmd);
        let what = format!("wrong password, {mode:?}");
        assert_code(&out, 3, &what);
        let line = one_error_line(&out, &what);
        let lower = line.to_lowercase();
        assert!(
            lower.contains("credential")
                || lower.contains("password")
                || lower.contains("authentication"),
            "{what}: the message should say the credentials were rejected: {line}"
        );
        assert!(
            !line.contains(wrong),
            "{what}: the message shows the password: {line}"
        );
        assert!(took <= MAXTIME + SLACK, "{what}: took {took:?}");
        eprintln!("{what}: {line}");
    }
    // An unknown user is refused the same way.
    let mut cmd = distlock_std(&etcd.endpoint(), &p);
    cmd.args(["--user=nobody", "--lock-name=x", "--lock"])
        .env("DISTLOCK_PASSWORD", PASSWORD);
    let (out, _) = run(cmd);
    assert_code(&out, 3, "unknown user");
    one_error_line(&out, "unknown user");
    assert!(etcd.keys("").is_empty(), "nothing was written");
}

#[test]
fn prefix_without_permission_is_exit_3_naming_permission() {
    let p = prefix("auth-mine");
    let etcd = auth_etcd(&p);
    let other = prefix("auth-theirs");
    for mode in [
        &["--lock-name=x", "--lock"][..],
        &["--lock-name=x", "--", "true"][..],
        &["--lock-name=x", "--unlock"][..],
        &["--lock-name=x", "--status"][..],
        &["--list"][..],
    ] {
        let mut cmd = as_locker(&etcd, &other);
        cmd.arg("--maxtime=2s").args(mode);
        let (out, took) = run(cmd);
        let what = format!("no permission on {other}, {mode:?}");
        assert_code(&out, 3, &what);
        let line = one_error_line(&out, &what);
        assert!(
            line.to_lowercase().contains("permission"),
            "{what}: the message should name the missing permission: {line}"
        );
        assert!(took <= MAXTIME + SLACK, "{what}: took {took:?}");
        if !(line.contains(other.trim_end_matches('/')) && line.contains("locker")) {
            eprintln!("NOTE {what}: the message names neither the prefix nor the user: {line}");
        }
        assert_no_password(&out, &what);
    }
    assert!(etcd.keys("").is_empty(), "nothing was written anywhere");
}

/// NUL-separated /proc entries (cmdline, environ) as strings.
fn proc_list(pid: u32, what: &str) -> Vec<String> {
    let bytes = fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
    bytes
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[test]
fn the_password_stays_secret() {
    let p = prefix("auth-secret");
    let etcd = auth_etcd(&p);

    // A run with -vv: the password is not in distlock's command line, and the command does
    // not get DISTLOCK_PASSWORD at all.
    let mut cmd = as_locker(&etcd, &p);
    cmd.args(["-vv", "--lock-name=secret", "--", "sleep", "30"]);
    let running = Background::spawn(cmd, "distlock -- sleep");
    let pid = running.child.id();
    let sleep = wait_until(DEADLINE, "the command to start", || {
        children(pid).into_iter().find(|&c| comm(c) == "sleep")
    });
    let cmdline = proc_list(pid, "cmdline");
    assert!(
        !cmdline.iter().any(|a| a.contains(PASSWORD)),
        "distlock's command line shows the password: {cmdline:?}"
    );
    let environ = proc_list(sleep, "environ");
    assert!(
        environ.iter().any(|e| e.starts_with("DISTLOCK_KEY=")),
        "the command's environment is readable and has the lock: {environ:?}"
    );
    assert!(
        !environ
            .iter()
            .any(|e| e.starts_with("DISTLOCK_PASSWORD=") || e.contains(PASSWORD)),
        "the command got the password: {environ:?}"
    );
    assert!(!proc_list(sleep, "cmdline")
        .iter()
        .any(|a| a.contains(PASSWORD)));
    // distlock's other children (its watchdog) are distlock itself: they may inherit its
    // environment, but never carry the password on their command line.
    for child in children(pid) {
        assert!(
            !proc_list(child, "cmdline")
                .iter()
                .any(|a| a.contains(PASSWORD)),
            "child {child} ({}) shows the password on its command line",
            comm(child)
        );
    }
    running.signal(Signal::SIGTERM);
    let out = running.output(DEADLINE);
    assert_code(&out, 128 + 15, "the command got SIGTERM");
    assert_no_password(&out, "-vv run");

    // -vv for --lock, --status, --unlock, and with every crate's trace logs on.
    for (args, log) in [
        (&["-vv", "--lock-name=secret", "--lock"][..], None),
        (&["-vv", "--lock-name=secret", "--status"][..], None),
        (&["-vv", "--lock-name=secret", "--unlock"][..], None),
        (
            &["-vv", "--lock-name=secret", "--", "true"][..],
            Some("trace"),
        ),
    ] {
        let mut cmd = as_locker(&etcd, &p);
        cmd.args(args);
        if let Some(filter) = log {
            cmd.env("DISTLOCK_LOG", filter);
        }
        let (out, _) = run(cmd);
        assert_code(&out, 0, &format!("{args:?} DISTLOCK_LOG={log:?}"));
        assert_no_password(&out, &format!("{args:?} DISTLOCK_LOG={log:?}"));
    }

    // --show-config, as text and JSON, from the variable and from the file.
    let dir = scratch_dir();
    let file = dir.path().join("password");
    fs::write(&file, PASSWORD).unwrap();
    for output in ["text", "json"] {
        let mut from_env = as_locker(&etcd, &p);
        from_env.args(["--show-config", &format!("--output={output}")]);
        let mut from_file = distlock_std(&etcd.endpoint(), &p);
        from_file
            .args([
                "--user=locker",
                "--show-config",
                &format!("--output={output}"),
            ])
            .arg("--password-file")
            .arg(&file);
        for (what, cmd) in [("env", from_env), ("file", from_file)] {
            let (out, _) = run(cmd);
            let what = format!("--show-config --output={output}, password from {what}");
            assert_code(&out, 0, &what);
            assert_no_password(&out, &what);
            let shown = text(&out.stdout);
            assert!(shown.contains("password"), "{what}: {shown}");
            assert!(shown.contains("locker"), "{what}: {shown}");
            if output == "json" {
                let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
                let value = v["password"]["value"].as_str().unwrap_or_default();
                assert!(value.contains("hidden"), "{what}: {shown}");
            }
        }
    }
    assert!(etcd.keys(&p).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Tokens that expire

/// etcd as `auth_etcd`, with more flags (its token settings).
fn auth_etcd_with(prefix: &str, args: &[&str]) -> Etcd {
    Etcd::builder()
        .auth(ROOT_PASSWORD, "locker", PASSWORD, prefix)
        .args(args)
        .start()
}

/// `--auth-token` for JWTs signed with HS256 and a secret in `dir`, that expire after `ttl`.
fn jwt_tokens(dir: &std::path::Path, ttl: &str) -> String {
    let secret = write_file(dir, "jwt-secret", "a shared secret for the test's JWTs\n");
    format!(
        "--auth-token=jwt,priv-key={},sign-method=HS256,ttl={ttl}",
        secret.display()
    )
}

/// A holder whose command waits for a line on a FIFO, and a waiter queued behind it, both
/// idle for `idle` (several token TTLs; `meanwhile` runs then); then the holder's command ends.
/// The waiter must take the lock and run at once: the holder revokes its lease with a token
/// it has to renew, and the waiter claims the lock with one. Before, the holder could not
/// revoke ("invalid auth token") and the waiter waited for the lease to expire, or never took
/// the lock at all. Returns how long the hand-over took.
fn idle_holder_hands_over(etcd: &Etcd, p: &str, idle: Duration, meanwhile: impl FnOnce()) {
    let dir = scratch_dir();
    let fifo = dir.path().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let ran = dir.path().join("waiter-ran");
    // A lease TTL (4 s) that needs keepalives during the idle time, and that the hand-over
    // must beat by far.
    let contender = |name: &str, script: String, verbose: bool| {
        let mut cmd = as_locker(etcd, p);
        cmd.args(["--lock-name=idle", "--ttl=4s"]);
        if verbose {
            cmd.arg("-vv");
        }
        cmd.args(["--", "sh", "-c", &script]);
        Background::logged(cmd, dir.path(), name)
    };
    let mut holder = contender("holder", format!("read line < '{}'", fifo.display()), false);
    let queued = |n: usize| {
        wait_for(DEADLINE, &format!("{n} contender(s)"), || {
            etcd.keys(&format!("{p}idle/")).len() == n
        })
    };
    queued(1);
    let mut waiter = contender("waiter", format!("touch '{}'", ran.display()), true);
    queued(2);

    // The point of the test is time passing without a request: nothing to wait for instead.
    let idle_until = std::time::Instant::now() + idle;
    meanwhile();
    std::thread::sleep(idle_until.saturating_duration_since(std::time::Instant::now()));
    assert!(
        holder.try_status().is_none() && waiter.try_status().is_none(),
        "both still hold and wait after {idle:?}:\n{}\n{}",
        holder.report(),
        waiter.report()
    );
    assert!(!ran.exists(), "the waiter ran while the lock was held");

    let released = std::time::Instant::now();
    fs::write(&fifo, "go\n").unwrap();
    let waited = wait_until(
        Duration::from_secs(15),
        "the waiter's command to run",
        || ran.exists().then(|| released.elapsed()),
    );
    assert_eq!(holder.wait_code(DEADLINE), 0, "{}", holder.report());
    assert_eq!(waiter.wait_code(DEADLINE), 0, "{}", waiter.report());
    eprintln!("the waiter ran {waited:?} after the holder's command ended");
    assert!(
        waited < Duration::from_secs(1),
        "the waiter ran {waited:?} after the holder's command ended, not at once:\n{}\n{}",
        holder.report(),
        waiter.report()
    );
    assert_eq!(
        holder.stderr(),
        "",
        "the holder released cleanly: {}",
        holder.report()
    );
    assert!(
        !waiter.stderr().contains(PASSWORD),
        "-vv shows the password: {}",
        waiter.report()
    );
    assert!(etcd.keys(p).is_empty(), "keys left: {:?}", etcd.keys(p));
    assert_eq!(etcd.leases(), Vec::<i64>::new(), "leases left in etcd");
}

/// A lock taken with --lock, then --status, --extend and --unlock once the token of every
/// earlier run has expired; and a wrong password is still refused at once, exit 3.
fn lock_outlives_tokens(etcd: &Etcd, p: &str, idle: Duration) {
    let mut lock = as_locker(etcd, p);
    lock.args([
        "--lock-name=kept",
        "--lock",
        "--reason=kept past its tokens",
    ]);
    let (out, _) = run(lock);
    assert_code(&out, 0, "--lock");
    std::thread::sleep(idle);
    for (args, code) in [
        (&["--status"][..], 0),
        (&["--extend=1h"][..], 0),
        (&["--unlock"][..], 0),
    ] {
        let mut cmd = as_locker(etcd, p);
        cmd.arg("--lock-name=kept").args(args);
        let (out, _) = run(cmd);
        assert_code(&out, code, &format!("{args:?}"));
        assert_no_password(&out, &format!("{args:?}"));
    }
    assert!(etcd.keys(p).is_empty(), "keys left: {:?}", etcd.keys(p));

    let mut wrong = distlock_std(&etcd.endpoint(), p);
    wrong
        .args(["--user=locker", "--lock-name=x", "--lock"])
        .env("DISTLOCK_PASSWORD", "not-the-password");
    let (out, took) = run(wrong);
    assert_code(&out, 3, "wrong password");
    let line = one_error_line(&out, "wrong password");
    assert!(line.contains("credentials"), "{line}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {line}");
    assert_eq!(etcd.leases(), Vec::<i64>::new(), "leases left in etcd");
}

/// Simple tokens that expire after 1 s without a request (`--auth-token-ttl`, 300 s by
/// default): every wait or command longer than that outlives its token.
#[test]
fn simple_tokens_that_expire_strand_no_one() {
    let p = prefix("token-simple");
    let etcd = auth_etcd_with(&p, &["--auth-token-ttl=1"]);
    let idle = Duration::from_secs(4);
    idle_holder_hands_over(&etcd, &p, idle, || {});
    lock_outlives_tokens(&etcd, &p, idle);
}

/// JWTs that expire 2 s after they were issued, however busy the client is.
#[test]
fn jwt_tokens_that_expire_strand_no_one() {
    let p = prefix("token-jwt");
    let dir = scratch_dir();
    let etcd = auth_etcd_with(&p, &[&jwt_tokens(dir.path(), "2s")]);
    let idle = Duration::from_secs(7);
    idle_holder_hands_over(&etcd, &p, idle, || {});
    lock_outlives_tokens(&etcd, &p, idle);
}

/// A JWT names the revision of etcd's users and roles it was issued at; after any change to
/// them (an operator adds a user) etcd refuses it: "revision of auth store is old". The
/// holder and the waiter authenticate again, as etcdctl would.
#[test]
fn a_change_to_users_and_roles_strands_no_one() {
    let p = prefix("token-rbac");
    let dir = scratch_dir();
    let etcd = auth_etcd_with(&p, &[&jwt_tokens(dir.path(), "5m")]);
    idle_holder_hands_over(&etcd, &p, Duration::ZERO, || {
        etcd.etcdctl(&["user", "add", "newcomer:newcomer-pw"]);
        etcd.etcdctl(&["role", "add", "newcomers"]);
    });
    lock_outlives_tokens(&etcd, &p, Duration::ZERO);
}

/// An operator changes the user's password while a waiter waits: etcd drops the user's
/// tokens, and the waiter's next request cannot authenticate again. That is exit 3 about the
/// credentials, not a wait for etcd that never ends. (The holder is `etcdctl lock`, whose key
/// the waiter must look at again when it goes: a request. A distlock holder's key tells the
/// waiter it is next without one, and it takes the lock.)
#[test]
fn a_changed_password_ends_the_wait_with_exit_3() {
    let p = prefix("token-passwd");
    let etcd = auth_etcd(&p);
    let mut holder = etcd.etcdctl_cmd();
    holder.args(["lock", &format!("{p}pw")]);
    let holder = Background::spawn(holder, "etcdctl lock as root");
    wait_for(DEADLINE, "etcdctl to hold the lock", || {
        etcd.keys(&format!("{p}pw/")).len() == 1
    });
    let dir = scratch_dir();
    let mut cmd = as_locker(&etcd, &p);
    cmd.args(["--lock-name=pw", "--", "true"]);
    let mut waiter = Background::logged(cmd, dir.path(), "waiter");
    wait_for(DEADLINE, "the waiter to queue", || {
        etcd.keys(&format!("{p}pw/")).len() == 2
    });

    let mut passwd = etcd.etcdctl_cmd();
    passwd
        .args(["user", "passwd", "locker", "--interactive=false"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = passwd.spawn().unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "a-new-Password-9").unwrap();
    assert!(child.wait().unwrap().success(), "etcdctl user passwd");
    holder.signal(Signal::SIGTERM);

    assert_eq!(waiter.wait_code(DEADLINE), 3, "{}", waiter.report());
    let last = waiter
        .stderr()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.starts_with("distlock: ") && last.contains("rejected the credentials"),
        "{}",
        waiter.report()
    );
    assert!(!waiter.stderr().contains(PASSWORD), "{}", waiter.report());
    eprintln!("{}", waiter.stderr());
}

// ---------------------------------------------------------------------------------------------
// Client certificates as users

/// With authentication on and a client certificate but no user and password, etcd takes the
/// user from the certificate's Common Name (here `distlock-client`): that user's role decides,
/// and no password is needed. Outside its prefix it is refused, exit 3, naming permission.
#[test]
fn client_certificate_common_name_is_the_user() {
    let pki = Pki::new();
    let p = prefix("cn-user");
    let etcd = Etcd::builder()
        .tls(&pki)
        .auth(ROOT_PASSWORD, "distlock-client", "never-used-Pw-1", &p)
        .start();
    lock_unlock_and_run(
        "CN as the user",
        || {
            let mut cmd = distlock_std(&etcd.endpoint(), &p);
            cmd.args(tls_flags(&pki));
            cmd
        },
        || etcd.keys(&p).len(),
    );

    let other = prefix("cn-theirs");
    let mut cmd = distlock_std(&etcd.endpoint(), &other);
    cmd.args(tls_flags(&pki))
        .args(["--maxtime=2s", "--lock-name=x", "--lock"]);
    let (out, _) = run(cmd);
    assert_code(&out, 3, "CN user outside its prefix");
    let line = one_error_line(&out, "CN user outside its prefix");
    assert!(
        line.contains("permission") && line.contains("user distlock-client"),
        "the line names the permission and the certificate's user: {line}"
    );
    eprintln!("{line}");
    assert!(etcd.keys("").is_empty(), "nothing was written");
}
