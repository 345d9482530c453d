//! Production etcd: TLS with a private CA, client certificates (`--client-cert-auth`), users
//! and RBAC, and keeping the password secret. Every test starts its own etcd: with TLS here
//! (`TlsEtcd`, since the shared harness serves plain http), or the shared one with auth turned
//! on through etcdctl. The certificates are made in the test with rcgen, so no openssl is
//! needed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// The `maxtime` the failure tests give distlock, and what they allow on top of it for
/// starting the process and printing the error.
const MAXTIME: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// A private PKI

/// PEM files of one test's PKI: a CA, a server certificate for 127.0.0.1 and localhost signed
/// by it, a client certificate signed by it, and a second, unrelated CA with its own client
/// certificate (what an attacker or a misconfigured host would present).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = scratch_dir();
        let (ca_pem, ca) = new_ca("distlock test CA");
        let (other_pem, other) = new_ca("some other CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("ca.pem", &ca_pem);
        write("other-ca.pem", &other_pem);
        // etcd 3.4's gRPC gateway dials etcd itself with the server certificate as its client
        // certificate, so the server certificate must be good for both.
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert, key) = new_leaf(&ca, "etcd", &["127.0.0.1", "localhost"], &both);
        write("server.pem", &cert);
        write("server-key.pem", &key);
        let client = [ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = new_leaf(&ca, "distlock-client", &[], &client);
        write("client.pem", &cert);
        write("client-key.pem", &key);
        let (cert, key) = new_leaf(&other, "intruder", &[], &client);
        write("other-client.pem", &cert);
        write("other-client-key.pem", &key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    fn cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    fn key(&self) -> PathBuf {
        self.path("client-key.pem")
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate and its key (both PEM) for `cn` with the given IP/DNS names, signed by `ca`.
fn new_leaf(
    ca: &Issuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

// ---------------------------------------------------------------------------------------------
// etcd with TLS and client certificates

/// One etcd member serving https on a free loopback port with `--client-cert-auth`, killed on
/// drop (and by the kernel if the test process dies without unwinding).
struct TlsEtcd {
    child: Child,
    port: u16,
    log: PathBuf,
    /// The PKI's directory: etcdctl uses its CA and client certificate.
    pki: PathBuf,
    _dir: TempDir,
}

impl TlsEtcd {
    fn start(pki: &Pki) -> TlsEtcd {
        for _attempt in 0..5 {
            let dir = scratch_dir();
            let (port, peer) = (free_port(), free_port());
            let client = format!("https://127.0.0.1:{port}");
            let peer = format!("http://127.0.0.1:{peer}");
            let log = dir.path().join("etcd.log");
            let out = fs::File::create(&log).unwrap();
            let mut cmd = Command::new(tool("etcd"));
            cmd.arg("--name=tls")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=tls={peer}"))
                .arg(format!(
                    "--initial-cluster-token={}",
                    dir.path().file_name().unwrap().to_string_lossy()
                ))
                .arg(format!("--cert-file={}", pki.path("server.pem").display()))
                .arg(format!(
                    "--key-file={}",
                    pki.path("server-key.pem").display()
                ))
                .arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", pki.ca().display()))
                // As the shared harness does for a lone member: elect at once.
                .args(["--heartbeat-interval=10", "--election-timeout=100"])
                .args(["--logger=zap", "--log-outputs=stderr"])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            // SAFETY: prctl is async-signal-safe. The signal follows this (the test's) thread.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            let child = cmd.spawn().expect("cannot start etcd");
            let mut etcd = TlsEtcd {
                child,
                port,
                log,
                pki: pki.dir.path().to_path_buf(),
                _dir: dir,
            };
            match etcd.wait_healthy(Instant::now() + DEADLINE) {
                Ok(()) => return etcd,
                Err(_) if etcd.log_text().contains("address already in use") => continue,
                Err(why) => panic!("{why}\n--- etcd log ---\n{}", etcd.log_text()),
            }
        }
        panic!("could not start a TLS etcd on a free port in 5 attempts");
    }

    fn wait_healthy(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("etcd exited during startup: {status}"));
            }
            let mut health = self.etcdctl_cmd();
            health.args(["endpoint", "health"]);
            if health.output().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("etcd did not become healthy within {DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// etcdctl with the CA and the client certificate.
    fn etcdctl_cmd(&self) -> Command {
        let mut cmd = etcdctl_cmd(&self.endpoint());
        cmd.arg(format!("--cacert={}", self.pki_path("ca.pem").display()))
            .arg(format!("--cert={}", self.pki_path("client.pem").display()))
            .arg(format!(
                "--key={}",
                self.pki_path("client-key.pem").display()
            ));
        cmd
    }

    fn pki_path(&self, name: &str) -> PathBuf {
        self.pki.join(name)
    }

    /// Keys under `prefix`, as etcdctl with a client certificate sees them.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let mut cmd = self.etcdctl_cmd();
        cmd.args(["get", "--prefix", "--keys-only", "--", prefix]);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let etcd = TlsEtcd::start(&pki);
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
    let etcd = TlsEtcd::start(&pki);
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
    let etcd = TlsEtcd::start(&pki);
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

/// Each case (TLS flags) in each mode is exit 3 within maxtime with one line that says it is
/// about a certificate (what went wrong, and where to look). They run in parallel: each may
/// take the whole maxtime.
fn refused_within_maxtime(
    endpoint: &str,
    prefix: &str,
    cases: &[(&str, Vec<String>)],
    modes: &[&[&str]],
) {
    let maxtime = format!("--maxtime={}s", MAXTIME.as_secs());
    std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .flat_map(|(what, flags)| modes.iter().map(move |mode| (what, flags, mode)))
            .map(|(what, flags, mode)| {
                let mut cmd = distlock_std(endpoint, prefix);
                cmd.arg(&maxtime)
                    .args(flags)
                    .arg("--lock-name=x")
                    .args(*mode);
                let what = format!("{what}, {mode:?}");
                (what, scope.spawn(move || run(cmd)))
            })
            .collect();
        for (what, running) in runs {
            let (out, took) = running.join().unwrap();
            assert_code(&out, 3, &what);
            let line = one_error_line(&out, &what);
            assert!(took <= MAXTIME + SLACK, "{what}: took {took:?}: {line}");
            assert!(
                line.contains("certificate"),
                "{what}: the message should say a certificate is the problem: {line}"
            );
            eprintln!("{what} ({took:?}): {line}");
        }
    });
}

/// A server whose certificate distlock cannot verify is exit 3 within maxtime, in one line.
#[test]
fn untrusted_server_is_exit_3_within_maxtime() {
    let pki = Pki::new();
    let etcd = TlsEtcd::start(&pki);
    let p = prefix("tls-untrusted");
    let cases: [(&str, Vec<String>); 2] = [
        (
            "system roots (no --cacert)",
            vec![
                format!("--cert={}", pki.cert().display()),
                format!("--key={}", pki.key().display()),
            ],
        ),
        (
            "another CA",
            vec![
                format!("--cacert={}", pki.path("other-ca.pem").display()),
                format!("--cert={}", pki.cert().display()),
                format!("--key={}", pki.key().display()),
            ],
        ),
    ];
    refused_within_maxtime(
        &etcd.endpoint(),
        &p,
        &cases,
        &[&["--lock"], &["--", "true"]],
    );
    assert!(etcd.keys(&p).is_empty());
}

/// etcd with --client-cert-auth refuses a client without a certificate, or with one from
/// another CA: exit 3 within maxtime, in one line.
#[test]
fn missing_or_foreign_client_certificate_is_exit_3_within_maxtime() {
    let pki = Pki::new();
    let etcd = TlsEtcd::start(&pki);
    let p = prefix("tls-nocert");
    let cases: [(&str, Vec<String>); 2] = [
        (
            "no client certificate",
            vec![format!("--cacert={}", pki.ca().display())],
        ),
        (
            "client certificate of another CA",
            vec![
                format!("--cacert={}", pki.ca().display()),
                format!("--cert={}", pki.path("other-client.pem").display()),
                format!("--key={}", pki.path("other-client-key.pem").display()),
            ],
        ),
    ];
    let modes: [&[&str]; 3] = [&["--lock"], &["--", "true"], &["--status"]];
    refused_within_maxtime(&etcd.endpoint(), &p, &cases, &modes);
    assert!(etcd.keys(&p).is_empty());
}

/// A list whose first endpoint is down (nothing listens on it) still works, over TLS too.
#[test]
fn first_endpoint_down_still_works() {
    let pki = Pki::new();
    let tls = TlsEtcd::start(&pki);
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
/// (and nothing else).
struct AuthEtcd {
    etcd: Etcd,
}

impl AuthEtcd {
    fn start(prefix: &str) -> AuthEtcd {
        let etcd = Etcd::start();
        let ep = etcd.endpoint();
        etcdctl(&ep, ["user", "add", &format!("root:{ROOT_PASSWORD}")]);
        etcdctl(&ep, ["user", "grant-role", "root", "root"]);
        etcdctl(&ep, ["role", "add", "locker-role"]);
        etcdctl(
            &ep,
            [
                "role",
                "grant-permission",
                "locker-role",
                "--prefix=true",
                "readwrite",
                prefix,
            ],
        );
        etcdctl(&ep, ["user", "add", &format!("locker:{PASSWORD}")]);
        etcdctl(&ep, ["user", "grant-role", "locker", "locker-role"]);
        etcdctl(&ep, ["auth", "enable"]);
        AuthEtcd { etcd }
    }

    fn endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// Keys under `prefix`, read as root.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let mut cmd = etcdctl_cmd(&self.endpoint());
        cmd.arg(format!("--user=root:{ROOT_PASSWORD}")).args([
            "get",
            "--prefix",
            "--keys-only",
            "--",
            prefix,
        ]);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// distlock as `locker` with the password in DISTLOCK_PASSWORD.
    fn distlock(&self, prefix: &str) -> Command {
        let mut cmd = distlock_std(&self.endpoint(), prefix);
        cmd.args(["--user", "locker"])
            .env("DISTLOCK_PASSWORD", PASSWORD);
        cmd
    }
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
    let etcd = AuthEtcd::start(&p);

    // The password from DISTLOCK_PASSWORD.
    lock_unlock_and_run(
        "DISTLOCK_PASSWORD",
        || etcd.distlock(&p),
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
    let mut lock = etcd.distlock(&p);
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

        let mut status = etcd.distlock(&p);
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
    let mut busy = etcd.distlock(&p);
    busy.args(["--lock-name=held", "--nowait", "--", "true"]);
    assert_code(&run(busy).0, 1, "--nowait on a held lock");
    let mut unlock = etcd.distlock(&p);
    unlock.args(["--lock-name=held", "--unlock"]);
    assert_code(&run(unlock).0, 0, "--unlock");
    assert!(etcd.keys(&p).is_empty());
}

#[test]
fn wrong_password_is_exit_3_about_credentials() {
    let p = prefix("auth-wrong");
    let etcd = AuthEtcd::start(&p);
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
    let etcd = AuthEtcd::start(&p);
    let other = prefix("auth-theirs");
    for mode in [
        &["--lock-name=x", "--lock"][..],
        &["--lock-name=x", "--", "true"][..],
        &["--lock-name=x", "--unlock"][..],
        &["--lock-name=x", "--status"][..],
        &["--list"][..],
    ] {
        let mut cmd = etcd.distlock(&other);
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

/// The pids of the running children of `pid` (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let path = task.unwrap().path().join("children");
        let list = fs::read_to_string(path).unwrap_or_default();
        found.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    found
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
    let etcd = AuthEtcd::start(&p);

    // A run with -vv: the password is not in distlock's command line, and the command does
    // not get DISTLOCK_PASSWORD at all.
    let mut cmd = etcd.distlock(&p);
    cmd.args(["-vv", "--lock-name=secret", "--", "sleep", "30"]);
    let running = Bg::spawn(cmd, "distlock -- sleep");
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
        let mut cmd = etcd.distlock(&p);
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
        let mut from_env = etcd.distlock(&p);
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
