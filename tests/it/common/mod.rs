//! Test harness shared by the integration tests: real etcd processes on free loopback ports
//! (one member or a 3-member cluster), the real `distlock` binary with a clean environment,
//! `etcdctl` helpers to look at and write keys the way an operator would, a deadline-bound
//! `wait_until`, and a proxy that can hold back or reorder distlock's gRPC traffic (h2proxy.rs).
//! Everything a test starts is killed when its guard drops, also when the test
//! panics, so nothing outlives a failing test.
//!
//! Each test starts its own etcd (about 0.1 s on tmpfs) and uses its own key prefix: tests share
//! nothing and can run in parallel.

// Every test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod h2proxy;
mod pki;
pub use pki::Pki;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long etcd may take to serve after it was started, and how long most waits may last.
pub const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Tools and scratch space

/// The variable that names the directory of the `etcd` and `etcdctl` under test (scripts/test
/// sets it to etcd 3.5's for its second pass); unset, both come from PATH.
pub const ETCD_VAR: &str = "DISTLOCK_TEST_ETCD";

/// The full path of `etcd` or `etcdctl` (or `etcdutl`): from the directory `$DISTLOCK_TEST_ETCD`
/// when that is set, so that the server and the client an operator would use come from the
/// same release, else from PATH; a panic says how to get them.
pub fn tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(ETCD_VAR).filter(|d| !d.is_empty()) {
        let path = Path::new(&dir).join(name);
        assert!(
            path.is_file(),
            "{ETCD_VAR}={} has no `{name}`: it must name a directory with etcd and etcdctl \
             (scripts/setup installs etcd 3.5 and says where, as DISTLOCK_ETCD35_DIR)",
            Path::new(&dir).display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: the integration tests start a real etcd. Run \
                 scripts/setup (scripts/test does it for you), or on Debian/Ubuntu: \
                 apt-get install etcd-server etcd-client"
            )
        })
}

/// The (major, minor) version of the etcd under test, from `etcd --version`: for the few tests
/// and settings that differ between releases, which say so where they ask.
pub fn etcd_version() -> (u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let etcd = tool("etcd");
        let out = Command::new(&etcd)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", etcd.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        // "etcd Version: 3.5.1"
        text.lines()
            .find_map(|l| l.strip_prefix("etcd Version: "))
            .and_then(|v| {
                let mut parts = v.trim().split('.').map(|n| n.parse::<u32>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .unwrap_or_else(|| panic!("no version in `{} --version`: {text}", etcd.display()))
    })
}

/// A fresh directory on tmpfs when there is one: etcd 3.4 fsyncs every write and has no
/// --unsafe-no-fsync, and fsync on tmpfs costs nothing.
pub fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("distlock-test-")
        .tempdir_in(base)
        .or_else(|_| tempfile::Builder::new().prefix("distlock-test-").tempdir())
        .expect("cannot create a scratch directory")
}

/// A loopback port nothing listens on right now (the kernel picks it). Another process could
/// take it before etcd binds it; `start_members` then starts over with new ports.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

/// A unique key prefix for one test, e.g. `/t-fifo-1a2b3c4d/`: readable in etcd dumps and
/// never shared with another test, even against the same etcd.
pub fn prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = nanos ^ std::process::id().rotate_left(16) ^ n.wrapping_mul(0x9e37_79b9);
    format!("/t-{test}-{salt:08x}/")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {path:?}: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts etcd (`cmd`: the etcd program, maybe run inside a network namespace) with `args`,
/// appending its output to `log`.
pub fn spawn_etcd(mut cmd: Command, args: &[String], log: &Path) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("cannot open the etcd log");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // Belt and braces for when the test process dies without unwinding (SIGKILL by a
    // timeout): the kernel then kills etcd too. PDEATHSIG follows the spawning *thread*,
    // which is the test's own thread; the guard's Drop runs there before it ends.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `check` every 10 ms until it returns `Some`, and returns that value; panics naming
/// `what` when `timeout` passes first. This is how tests wait for events: never a fixed sleep.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `wait_until` for a plain condition.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_until(timeout, what, || cond().then_some(()))
}

/// What a shell shows as `$?`: the exit code, or 128 + the signal that killed the process.
pub fn shell_status(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => panic!("exit status with neither code nor signal: {status:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Background processes

/// A process running in the background in its own process group. Dropping it while it runs
/// SIGKILLs the whole group (the process and whatever it started, e.g. etcdctl's command) and
/// reaps it.
pub struct Bg {
    pub child: Child,
    what: String,
    status: Option<ExitStatus>,
    /// Its stdout and stderr files, when they are files (`logged`) rather than pipes.
    logs: Option<(PathBuf, PathBuf)>,
}

impl Bg {
    /// Starts `cmd` with stdin from /dev/null and stdout/stderr captured (keep them small:
    /// they are pipes, read after exit).
    pub fn spawn(mut cmd: Command, what: &str) -> Bg {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        Self::start(cmd, what, None)
    }

    /// Starts `cmd` with stdout and stderr going to `<dir>/<what>.stdout` and `.stderr`, so
    /// that a test can watch what it says while it runs.
    pub fn logged(mut cmd: Command, dir: &Path, what: &str) -> Bg {
        let stdout = dir.join(format!("{what}.stdout"));
        let stderr = dir.join(format!("{what}.stderr"));
        cmd.stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        Self::start(cmd, what, Some((stdout, stderr)))
    }

    fn start(mut cmd: Command, what: &str, logs: Option<(PathBuf, PathBuf)>) -> Bg {
        cmd.stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Bg {
            child,
            what: what.to_string(),
            status: None,
            logs,
        }
    }

    /// What it is, as given when it was started.
    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill {sig} {}: {e}", self.what));
    }

    /// The exit status if it has exited by now (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits at most `timeout` for it to exit; panics otherwise.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.what);
        wait_until(timeout, &what, || self.try_status())
    }

    /// Waits at most `timeout` for it to exit and returns what a shell shows as `$?`; the
    /// panic on a timeout shows what it said so far.
    pub fn wait_code(&mut self, timeout: Duration) -> i32 {
        let what = format!("{} to exit; {}", self.what, self.report());
        shell_status(wait_until(timeout, &what, || self.try_status()))
    }

    /// Its stderr so far (`logged` only; a pipe is read at the end, by `output`).
    pub fn stderr(&self) -> String {
        self.log(|(_, stderr)| stderr)
    }

    fn log(&self, which: impl Fn(&(PathBuf, PathBuf)) -> &PathBuf) -> String {
        self.logs
            .as_ref()
            .map(|logs| fs::read_to_string(which(logs)).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Everything it said, for assertion messages (`logged` only).
    pub fn report(&self) -> String {
        format!(
            "{} (status {:?})\n--- stdout ---\n{}--- stderr ---\n{}",
            self.what,
            self.status,
            self.log(|(stdout, _)| stdout),
            self.stderr()
        )
    }

    /// Asserts docs/CONTRACT.md's error style for an error exit: exactly one line on stderr that
    /// starts with `distlock: `; returns it (`logged` only).
    pub fn one_error_line(&self) -> String {
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("distlock: "),
            "expected exactly one `distlock: ` line on stderr: {}",
            self.report()
        );
        lines[0].to_string()
    }

    /// Waits at most `timeout` for it to exit and returns its status, stdout and stderr.
    pub fn output(mut self, timeout: Duration) -> Output {
        let status = self.wait(timeout);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_end(&mut stdout).ok();
        }
        if let Some(mut s) = self.child.stderr.take() {
            s.read_to_end(&mut stderr).ok();
        }
        if let Some((out, err)) = &self.logs {
            stdout = fs::read(out).unwrap_or_default();
            stderr = fs::read(err).unwrap_or_default();
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        // Kill the whole group (the leader's children too), but only while the leader is not
        // reaped: until then its pid, which is the group id, cannot have been reused, so the
        // signal cannot reach anyone else's processes. A zombie leader still holds it.
        if self.status.is_none() {
            let _ = signal::killpg(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

/// One etcd process: its ports, directories and command line, so it can be restarted as the
/// same member with the same data.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// The PKI's directory when it serves https with client certificates (`Pki`'s files).
    tls: Option<PathBuf>,
    /// Which of the PKI's server certificates it serves (`server`, or a bad one).
    server_cert: String,
    /// More etcd flags (authentication tokens, ...), after the harness's own.
    extra_args: Vec<String>,
}

/// What the members of one start have beyond the harness's defaults.
#[derive(Clone, Default)]
struct Setup {
    /// The PKI's directory: https, with `--client-cert-auth`.
    tls: Option<PathBuf>,
    /// The PKI's server certificate to serve; `server` when None.
    server_cert: Option<String>,
    extra_args: Vec<String>,
}

/// etcd timing for a lone member: it elects itself after one election timeout, so keep that
/// short. The minimum lease TTL etcd grants is 1.5 election timeouts rounded up to a second,
/// so this still gives 1 s leases.
const SINGLE_TIMING: (u32, u32) = (10, 100);
/// For a cluster: short enough for quick failovers, long enough that a loaded 2-core machine
/// does not cause spurious elections.
const CLUSTER_TIMING: (u32, u32) = (50, 500);

impl Member {
    fn new(dir: &Path, name: &str, setup: &Setup) -> Member {
        Member {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.join(format!("{name}.data")),
            log: dir.join(format!("{name}.log")),
            args: Vec::new(),
            child: None,
            tls: setup.tls.clone(),
            server_cert: setup.server_cert.as_deref().unwrap_or("server").to_string(),
            extra_args: setup.extra_args.clone(),
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// etcdctl against this member, with the PKI's CA and client certificate under TLS.
    pub fn etcdctl_cmd(&self) -> Command {
        let mut cmd = etcdctl_cmd(&self.endpoint());
        if let Some(pki) = &self.tls {
            cmd.arg(format!("--cacert={}", pki.join("ca.pem").display()))
                .arg(format!("--cert={}", pki.join("client.pem").display()))
                .arg(format!("--key={}", pki.join("client-key.pem").display()));
            // A test that serves a bad server certificate on purpose still needs its own
            // etcdctl (the health check) to get through.
            if self.server_cert != "server" {
                cmd.arg("--insecure-skip-tls-verify");
            }
        }
        cmd
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.endpoint())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// The pid of the running process; panics if it is not running.
    pub fn pid(&self) -> Pid {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("etcd {} is not running", self.name));
        Pid::from_raw(child.id() as i32)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn configure(&mut self, initial_cluster: &str, token: &str, (heartbeat, election): (u32, u32)) {
        let (client, peer) = (self.endpoint(), self.peer_url());
        self.args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-token={token}"),
            "--initial-cluster-state=new".into(),
            format!("--heartbeat-interval={heartbeat}"),
            format!("--election-timeout={election}"),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        // Tests need no durability: 3.5 can skip fsync (3.4 has no such flag; on tmpfs, where
        // scratch_dir puts the data, fsync costs nothing anyway).
        if etcd_version() >= (3, 5) {
            self.args.push("--unsafe-no-fsync".into());
        }
        if let Some(pki) = &self.tls {
            let file = |name: &str| pki.join(name).display().to_string();
            let cert = &self.server_cert;
            self.args.extend([
                format!("--cert-file={}", file(&format!("{cert}.pem"))),
                format!("--key-file={}", file(&format!("{cert}-key.pem"))),
                "--client-cert-auth".into(),
                format!("--trusted-ca-file={}", file("ca.pem")),
            ]);
        }
        self.args.extend(self.extra_args.iter().cloned());
    }

    /// Starts the process (appending to its log). Restarting after a kill reuses the data dir,
    /// so it comes back as the same member (etcd ignores --initial-cluster-state then).
    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "etcd {} is already running",
            self.name
        );
        self.child = Some(spawn_etcd(
            Command::new(tool("etcd")),
            &self.args,
            &self.log,
        ));
    }

    /// Polls GET /health (which in etcd 3.4 needs a leader and a working read) until it says
    /// true, or under TLS `etcdctl endpoint health`. Returns Err with the reason if the process
    /// exits or the deadline passes.
    fn wait_healthy(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "etcd {} exited during startup: {status}",
                    self.name
                ));
            }
            if self.is_healthy() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd {} did not become healthy within {DEADLINE:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn is_healthy(&self) -> bool {
        if self.tls.is_some() {
            let mut health = self.etcdctl_cmd();
            health.args(["endpoint", "health"]);
            return health.output().is_ok_and(|o| o.status.success());
        }
        http_get(self.client_port, "/health")
            .is_ok_and(|(code, body)| code == 200 && body.contains("\"true\""))
    }

    fn startup_failed(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- last lines of {} ---\n{}",
            self.log.display(),
            self.log_tail()
        )
    }

    fn lost_port_race(&self) -> bool {
        fs::read_to_string(&self.log).is_ok_and(|l| l.contains("address already in use"))
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill {sig} etcd: {e}"));
    }

    /// Freezes the member (SIGSTOP): it keeps its sockets but answers nothing, like a hung host.
    /// Returns once every thread has stopped: until then, on a loaded machine, a thread that
    /// was not yet scheduled may still answer a request.
    pub fn stop(&self) {
        self.signal(Signal::SIGSTOP);
        let pid = self.pid();
        wait_for(DEADLINE, &format!("etcd {} to stop", self.name), || {
            let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten();
            tasks.flatten().all(|task| {
                let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                // The state letter follows the command name, which is in parentheses.
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                state.is_some_and(|s| s.starts_with('T'))
            })
        });
    }

    pub fn cont(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal HTTP/1.0 GET against 127.0.0.1:port (etcd serves /health and /metrics on the client
/// port), with short timeouts so a SIGSTOPped member does not hang the caller.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_millis(500);
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// A counter or gauge from a member's /metrics (the first series whose line starts with
/// `series`), or None if the member does not answer or has no such series.
pub fn metric(port: u16, series: &str) -> Option<u64> {
    let (code, body) = http_get(port, "/metrics").ok()?;
    (code == 200).then_some(())?;
    body.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .next()
}

/// How many lease keepalives the member at `port` has received from clients (its gRPC
/// counter): which member a client's keepalive stream runs through.
pub fn keepalives_received(port: u16) -> u64 {
    metric(
        port,
        "grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\"",
    )
    .unwrap_or(0)
}

/// Starts members (all at once, so a cluster can form) and waits until each serves. When an
/// etcd lost the race for a port `free_port` picked, starts over with new ports.
fn start_members(count: usize, timing: (u32, u32), setup: &Setup) -> (TempDir, Vec<Member>) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let dir = scratch_dir();
        let mut members: Vec<Member> = (0..count)
            .map(|i| Member::new(dir.path(), &format!("m{i}"), setup))
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        // A unique token keeps members of different test clusters from ever talking to each
        // other, should a port be reused.
        let token = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for m in &mut members {
            m.configure(&initial_cluster, &token, timing);
            m.spawn();
        }
        let deadline = Instant::now() + DEADLINE;
        let mut failure = None;
        for (i, m) in members.iter_mut().enumerate() {
            if let Err(why) = m.wait_healthy(deadline) {
                failure = Some((i, why));
                break;
            }
        }
        match failure {
            None => return (dir, members),
            Some((i, _)) if attempt < 5 && members[i].lost_port_race() => continue,
            Some((i, why)) => members[i].startup_failed(&why),
        }
    }
}

/// A single etcd member, killed on drop.
pub struct Etcd {
    member: Member,
    /// root's password, when authentication is on.
    root_password: Option<String>,
    // Declared after `member` so etcd is dead before its directory is removed.
    _dir: TempDir,
}

/// How to start a single member: plain http by default, or with TLS and client certificates,
/// and with users and roles.
#[derive(Default)]
pub struct EtcdBuilder {
    setup: Setup,
    auth: Option<Auth>,
}

/// etcd's `root` and one user whose role may read and write one prefix (and nothing else).
struct Auth {
    root_password: String,
    user: String,
    password: String,
    prefix: String,
}

impl EtcdBuilder {
    /// Serves https with `pki`'s server certificate and requires a client certificate signed
    /// by its CA (`--client-cert-auth`).
    pub fn tls(mut self, pki: &Pki) -> EtcdBuilder {
        self.setup.tls = Some(pki.dir());
        self
    }

    /// With `tls`: serves the PKI's certificate `name` (`<name>.pem`, `<name>-key.pem`, e.g.
    /// `expired-server`) instead of `server`.
    pub fn server_cert(mut self, name: &str) -> EtcdBuilder {
        self.setup.server_cert = Some(name.to_string());
        self
    }

    /// Passes more flags to etcd, e.g. `--auth-token-ttl=1`.
    pub fn args(mut self, args: &[&str]) -> EtcdBuilder {
        self.setup
            .extra_args
            .extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Turns authentication on: `root` with `root_password`, and `user` with `password`,
    /// whose role may read and write `prefix` only.
    pub fn auth(mut self, root_password: &str, user: &str, password: &str, prefix: &str) -> Self {
        self.auth = Some(Auth {
            root_password: root_password.into(),
            user: user.into(),
            password: password.into(),
            prefix: prefix.into(),
        });
        self
    }

    pub fn start(self) -> Etcd {
        let (dir, mut members) = start_members(1, SINGLE_TIMING, &self.setup);
        let mut etcd = Etcd {
            member: members.pop().unwrap(),
            root_password: None,
            _dir: dir,
        };
        if let Some(auth) = self.auth {
            let role = format!("{}-role", auth.user);
            let root = format!("root:{}", auth.root_password);
            let user = format!("{}:{}", auth.user, auth.password);
            for args in [
                &["user", "add", &root][..],
                &["user", "grant-role", "root", "root"],
                &["role", "add", &role],
                &[
                    "role",
                    "grant-permission",
                    &role,
                    "--prefix=true",
                    "readwrite",
                    &auth.prefix,
                ],
                &["user", "add", &user],
                &["user", "grant-role", &auth.user, &role],
                &["auth", "enable"],
            ] {
                etcd.etcdctl(args);
            }
            etcd.root_password = Some(auth.root_password);
        }
        etcd
    }
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::builder().start()
    }

    pub fn builder() -> EtcdBuilder {
        EtcdBuilder::default()
    }

    /// etcdctl as an operator with full access: the client certificate under TLS, root when
    /// authentication is on.
    pub fn etcdctl_cmd(&self) -> Command {
        let mut cmd = self.member.etcdctl_cmd();
        if let Some(password) = &self.root_password {
            cmd.arg(format!("--user=root:{password}"));
        }
        cmd
    }

    /// Runs `etcdctl <args>` as `etcdctl_cmd` and returns its stdout; panics if it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let mut cmd = self.etcdctl_cmd();
        cmd.args(args);
        stdout_of(cmd)
    }

    /// The keys under `prefix`, as `etcdctl_cmd` sees them.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.etcdctl(&["get", "--prefix", "--keys-only", "--", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Every key under `prefix` (in key order) as `etcdctl_cmd` sees them: as root when
    /// authentication is on.
    pub fn kvs(&self, prefix: &str) -> Vec<Kv> {
        parse_kvs(&self.etcdctl(&["get", "--prefix", "-w", "json", "--", prefix]))
    }

    /// The ids of the leases etcd holds (`etcdctl lease list`, as `etcdctl_cmd`).
    pub fn leases(&self) -> Vec<i64> {
        let out = self.etcdctl(&["lease", "list", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["leases"]
            .as_array()
            .map(|l| l.iter().filter_map(|l| l["ID"].as_i64()).collect())
            .unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        self.member.endpoint()
    }

    pub fn pid(&self) -> Pid {
        self.member.pid()
    }

    pub fn metrics_url(&self) -> String {
        self.member.metrics_url()
    }

    pub fn client_port(&self) -> u16 {
        self.member.client_port
    }

    pub fn log_tail(&self) -> String {
        self.member.log_tail()
    }

    pub fn stop(&self) {
        self.member.stop()
    }

    pub fn cont(&self) {
        self.member.cont()
    }

    pub fn kill(&mut self) {
        self.member.kill()
    }

    /// Starts it again on the same ports and data after `kill`, and waits until it serves.
    pub fn restart(&mut self) {
        self.member.spawn();
        if let Err(why) = self.member.wait_healthy(Instant::now() + DEADLINE) {
            self.member.startup_failed(&why);
        }
    }
}

/// A cluster of etcd members on loopback, all killed on drop.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    _dir: TempDir,
}

impl EtcdCluster {
    pub fn start(count: usize) -> EtcdCluster {
        let (dir, members) = start_members(count, CLUSTER_TIMING, &Setup::default());
        EtcdCluster { members, _dir: dir }
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    /// All client URLs, comma-joined, as DISTLOCK_ENDPOINTS and etcdctl take them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The member that says it leads (`etcd_server_is_leader 1` in its /metrics), among the
    /// running ones that answer. A frozen ex-leader does not answer, so it is not reported.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.is_running()
                && http_get(m.client_port, "/metrics").is_ok_and(|(code, body)| {
                    code == 200 && body.lines().any(|l| l == "etcd_server_is_leader 1")
                })
        })
    }

    /// Waits until some member other than `not` leads (e.g. after stopping the old leader).
    pub fn wait_leader(&self, not: Option<usize>) -> usize {
        wait_until(DEADLINE, "an etcd leader", || {
            self.leader().filter(|&l| Some(l) != not)
        })
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].kill()
    }

    pub fn stop(&self, i: usize) {
        self.members[i].stop()
    }

    pub fn cont(&self, i: usize) {
        self.members[i].cont()
    }

    /// Makes member `to` the leader (`etcdctl move-leader`, asked of the current leader).
    pub fn move_leader(&self, to: usize) {
        let leader = self.wait_leader(None);
        if leader == to {
            return;
        }
        let out = etcdctl(&self.endpoint(to), ["member", "list", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = v["members"]
            .as_array()
            .and_then(|members| members.iter().find(|m| m["name"] == self.members[to].name))
            .and_then(|m| m["ID"].as_u64())
            .unwrap_or_else(|| panic!("no member {} in {out}", self.members[to].name));
        etcdctl(&self.endpoint(leader), ["move-leader", &format!("{id:x}")]);
        wait_for(DEADLINE, "the leadership to move", || {
            self.leader() == Some(to)
        });
    }

    /// Starts member `i` again after `kill`, with its data, and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.spawn();
        if let Err(why) = m.wait_healthy(Instant::now() + DEADLINE) {
            m.startup_failed(&why);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary under test

/// `distlock` against `endpoints` with keys under `prefix`, and nothing from the caller's
/// environment or machine: every inherited DISTLOCK_* variable removed, the config file
/// /dev/null (an empty, valid configuration), stdin /dev/null.
pub fn distlock_std(endpoints: &str, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distlock"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DISTLOCK_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("DISTLOCK_CONFIG", "/dev/null")
        .env("DISTLOCK_ENDPOINTS", endpoints)
        .env("DISTLOCK_PREFIX", prefix)
        .stdin(Stdio::null());
    cmd
}

/// `distlock_std` as an `assert_cmd::Command`, against a single etcd.
pub fn distlock(etcd: &Etcd, prefix: &str) -> assert_cmd::Command {
    assert_cmd::Command::from_std(distlock_std(&etcd.endpoint(), prefix))
}

/// `distlock_std` as an `assert_cmd::Command`, against any endpoints (a cluster, or a port
/// nothing listens on).
pub fn distlock_at(endpoints: &str, prefix: &str) -> assert_cmd::Command {
    assert_cmd::Command::from_std(distlock_std(endpoints, prefix))
}

/// Runs `cmd` to completion (at most `timeout`, then it is killed and the test fails) and
/// returns its output and how long it took.
pub fn run_timed(cmd: Command, timeout: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let out = Bg::spawn(cmd, "distlock").output(timeout);
    (out, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// etcdctl: the operator's view of etcd

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// 0 when the key is not attached to a lease.
    pub lease: i64,
}

impl Kv {
    /// The value parsed as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value)
            .unwrap_or_else(|e| panic!("value of {} is not JSON ({e}): {:?}", self.key, self.value))
    }
}

/// An `etcdctl` command (API v3) against `endpoints`, with short client timeouts.
pub fn etcdctl_cmd(endpoints: &str) -> Command {
    let mut cmd = Command::new(tool("etcdctl"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s")
        .stdin(Stdio::null());
    cmd
}

/// Runs `etcdctl <args>` and returns its stdout; panics with its stderr if it fails.
pub fn etcdctl<I, S>(endpoints: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = etcdctl_cmd(endpoints);
    cmd.args(args);
    stdout_of(cmd)
}

/// Runs an etcdctl command and returns its stdout; panics with its stderr if it fails.
fn stdout_of(mut cmd: Command) -> String {
    let out = cmd.output().expect("cannot run etcdctl");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("etcdctl printed non-UTF-8")
}

/// Every key under `prefix` (in key order), decoded from `etcdctl get -w json`, where keys and
/// values are base64.
pub fn get_prefix(endpoints: &str, prefix: &str) -> Vec<Kv> {
    let out = etcdctl(endpoints, ["get", "--prefix", "-w", "json", "--", prefix]);
    parse_kvs(&out)
}

/// One key, if it exists.
pub fn get_key(endpoints: &str, key: &str) -> Option<Kv> {
    let out = etcdctl(endpoints, ["get", "-w", "json", "--", key]);
    parse_kvs(&out).into_iter().next()
}

fn parse_kvs(json: &str) -> Vec<Kv> {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("etcdctl json ({e}): {json}"));
    let Some(kvs) = v["kvs"].as_array() else {
        return Vec::new();
    };
    let text =
        |k: &serde_json::Value| String::from_utf8(base64_decode(k.as_str().unwrap_or(""))).unwrap();
    kvs.iter()
        .map(|kv| Kv {
            key: text(&kv["key"]),
            value: text(&kv["value"]),
            create_revision: kv["create_revision"].as_i64().unwrap_or(0),
            mod_revision: kv["mod_revision"].as_i64().unwrap_or(0),
            lease: kv["lease"].as_i64().unwrap_or(0),
        })
        .collect()
}

/// Standard base64 with padding, as Go's encoding/json writes []byte.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("not base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `etcdctl put key value`.
pub fn put(endpoints: &str, key: &str, value: &str) {
    etcdctl(endpoints, ["put", "--", key, value]);
}

/// `etcdctl lease grant ttl`; returns the lease id.
pub fn lease_grant(endpoints: &str, ttl: u32) -> i64 {
    let out = etcdctl(
        endpoints,
        ["lease", "grant", &ttl.to_string(), "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["ID"]
        .as_i64()
        .unwrap_or_else(|| panic!("no lease ID in {out}"))
}

/// `etcdctl put --lease=<id> key value`.
pub fn put_with_lease(endpoints: &str, key: &str, value: &str, lease: i64) {
    etcdctl(
        endpoints,
        ["put", &format!("--lease={lease:x}"), "--", key, value],
    );
}

/// The lease's (remaining TTL, granted TTL) in seconds, or None if it does not exist (any
/// more).
pub fn lease_ttl(endpoints: &str, lease: i64) -> Option<(i64, i64)> {
    let out = etcdctl(
        endpoints,
        ["lease", "timetolive", &format!("{lease:x}"), "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ttl = v["ttl"].as_i64().unwrap_or(-1);
    (ttl >= 0).then(|| (ttl, v["granted-ttl"].as_i64().unwrap_or(0)))
}

/// `etcdctl lock <name> [-- cmd...]` in the background (its own process group, killed on
/// drop). Without a command it holds the lock until signalled (SIGTERM releases it).
pub fn etcdctl_lock(endpoints: &str, name: &str, cmd: &[&str]) -> Bg {
    let mut c = etcdctl_cmd(endpoints);
    c.args(["lock", name]);
    if !cmd.is_empty() {
        c.arg("--").args(cmd);
    }
    Bg::spawn(c, "etcdctl lock")
}

/// Parses `--lock`'s stdout: exactly `DISTLOCK_KEY=...` then `DISTLOCK_FENCING_TOKEN=...`.
pub fn parse_lock_stdout(stdout: &str) -> Option<(String, i64)> {
    let mut lines = stdout.lines();
    let key = lines.next()?.strip_prefix("DISTLOCK_KEY=")?;
    let token = lines
        .next()?
        .strip_prefix("DISTLOCK_FENCING_TOKEN=")?
        .parse()
        .ok()?;
    lines.next().is_none().then(|| (key.to_string(), token))
}

/// The outcome of one distlock run, printable in assertion messages.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Asserts the exit code, showing everything when it is not the expected one.
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, expected, "unexpected exit code: {self}");
        assert!(
            !self.stderr.contains("panicked"),
            "distlock panicked: {self}"
        );
        self
    }

    /// Asserts docs/CONTRACT.md's error style: exactly one line on stderr, starting with
    /// `distlock: `.
    pub fn one_error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line on stderr: {self}");
        assert!(
            lines[0].starts_with("distlock: "),
            "error line not prefixed: {self}"
        );
        lines[0]
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self}"))
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs distlock to the end (killing it after a minute, so a hang fails the test).
pub fn run(cmd: &mut assert_cmd::Command) -> Run {
    let start = Instant::now();
    let out = cmd
        .timeout(Duration::from_secs(60))
        .output()
        .expect("cannot run distlock");
    Run {
        code: shell_status(out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

// ---------------------------------------------------------------------------------------------
// Locks, as the tests look at them

/// `distlock --lock-name=<name> --lock <extra>`, asserted to succeed; returns the key and the
/// fencing token it printed.
pub fn lock(etcd: &Etcd, p: &str, name: &str, extra: &[&str]) -> (String, i64) {
    let r = run(distlock(etcd, p)
        .arg(format!("--lock-name={name}"))
        .arg("--lock")
        .args(extra));
    r.code(0);
    parse_lock_stdout(&r.stdout)
        .unwrap_or_else(|| panic!("--lock must print exactly the key and token lines: {r}"))
}

/// The contenders of lock `name` under `p` (keys `<p><name>/...`), in queue order.
pub fn contenders(ep: &str, p: &str, name: &str) -> Vec<Kv> {
    let mut kvs = get_prefix(ep, &format!("{p}{name}/"));
    kvs.sort_by_key(|kv| kv.create_revision);
    kvs
}

/// Waits until lock `name` has exactly `n` contenders, and returns them.
pub fn wait_contenders(ep: &str, p: &str, name: &str, n: usize) -> Vec<Kv> {
    wait_until(DEADLINE, &format!("{n} contender(s) of {name}"), || {
        let kvs = contenders(ep, p, name);
        (kvs.len() == n).then_some(kvs)
    })
}

// ---------------------------------------------------------------------------------------------
// This machine

/// The host name distlock records.
pub fn hostname() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

/// The user name distlock records.
pub fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name
}

/// The lines of a file, or none if it does not exist yet.
pub fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// The pids of the running children of `pid` (of all its threads).
pub fn children(pid: u32) -> Vec<u32> {
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

/// Every process of process group `group`: its pid and its state (`Z` for a zombie).
pub fn group_members(group: i32) -> Vec<(i32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the ')'.
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields.get(2)? == &group.to_string()).then(|| (pid, fields[0].to_string()))
        })
        .collect()
}

/// The executable name of a process (`/proc/<pid>/comm`), empty once it is gone.
pub fn comm(pid: impl std::fmt::Display) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Every setting `--show-config` shows, in its order: the YAML keys, as the example file
/// lists them (generated from the settings table and checked against it by a unit test),
/// then the password, which is never in a file.
pub fn all_settings() -> Vec<String> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("distlock.yaml.example");
    let text = fs::read_to_string(&example).expect("read distlock.yaml.example");
    let mut keys: Vec<String> = text
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .filter_map(|l| l.split_once(':'))
        .map(|(key, _)| key)
        .filter(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(String::from)
        .collect();
    keys.push("password".into());
    keys
}
