//! etcd members: a single one (`Etcd`, plain, with TLS or with users and roles) or a cluster
//! (`EtcdCluster`), each on free loopback ports with its data on tmpfs, killed on drop and
//! restartable as the same member.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::etcdctl::{is_history, parse_kvs, stdout_of};
use super::{
    all_threads_stopped, etcdctl, etcdctl_cmd, in_netns, scratch_dir, wait_for, wait_until, Kv,
    Pki, DEADLINE,
};

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

/// A loopback port nothing listens on right now (the kernel picks it). Another process could
/// take it before etcd binds it; `start_members` then starts over with new ports.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {path:?}: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts etcd (`cmd`: the etcd program, maybe run inside a network namespace) with `args`,
/// appending its output to `log`.
fn spawn_etcd(mut cmd: Command, args: &[String], log: &Path) -> Child {
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
    /// Where it runs when not on loopback here.
    netns: Option<Netns>,
}

/// Where a member runs when not on this network namespace's loopback: inside network namespace
/// `ns` (`ip netns exec`), serving clients on `client_ip`:2379 and peers on `peer_ip`:2380.
/// This process cannot reach it there: the harness's own etcdctl runs in namespace `via`.
#[derive(Clone)]
pub struct Netns {
    pub ns: String,
    pub client_ip: String,
    pub peer_ip: String,
    pub via: String,
}

/// What the members of one start have beyond the harness's defaults.
#[derive(Clone, Default)]
struct Setup {
    /// The PKI's directory: https, with `--client-cert-auth`.
    tls: Option<PathBuf>,
    /// The PKI's server certificate to serve; `server` when None.
    server_cert: Option<String>,
    extra_args: Vec<String>,
    /// Member i runs in `netns[i]`; on loopback when empty.
    netns: Vec<Netns>,
}

/// etcd timing for a lone member: it elects itself after one election timeout, so keep that
/// short. The minimum lease TTL etcd grants is 1.5 election timeouts rounded up to a second,
/// so this still gives 1 s leases.
const SINGLE_TIMING: (u32, u32) = (10, 100);

/// For a cluster: short enough for quick failovers, long enough that a loaded 2-core machine
/// does not cause spurious elections.
const CLUSTER_TIMING: (u32, u32) = (50, 500);

impl Member {
    fn new(dir: &Path, name: &str, setup: &Setup, netns: Option<Netns>) -> Member {
        // A namespace of its own has its own ports: etcd's defaults.
        let (client_port, peer_port) = match netns {
            Some(_) => (2379, 2380),
            None => (free_port(), free_port()),
        };
        Member {
            name: name.to_string(),
            client_port,
            peer_port,
            data_dir: dir.join(format!("{name}.data")),
            log: dir.join(format!("{name}.log")),
            args: Vec::new(),
            child: None,
            tls: setup.tls.clone(),
            server_cert: setup.server_cert.as_deref().unwrap_or("server").to_string(),
            extra_args: setup.extra_args.clone(),
            netns,
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = self.netns.as_ref().map_or("127.0.0.1", |n| &n.client_ip);
        format!("{scheme}://{host}:{}", self.client_port)
    }

    /// etcdctl against this member, with the PKI's CA and client certificate under TLS, run
    /// where the member can be reached.
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
        match &self.netns {
            Some(netns) => {
                let mut cmd = in_netns(&netns.via, &cmd);
                cmd.stdin(Stdio::null());
                cmd
            }
            None => cmd,
        }
    }

    pub fn peer_url(&self) -> String {
        let host = self.netns.as_ref().map_or("127.0.0.1", |n| &n.peer_ip);
        format!("http://{host}:{}", self.peer_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.endpoint())
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
        let etcd = Command::new(tool("etcd"));
        let etcd = match &self.netns {
            Some(netns) => in_netns(&netns.ns, &etcd),
            None => etcd,
        };
        self.child = Some(spawn_etcd(etcd, &self.args, &self.log));
    }

    /// Polls GET /health (which in etcd 3.4 needs a leader and a working read) until it says
    /// true, or under TLS or in a namespace `etcdctl endpoint health`. Returns Err with the
    /// reason if the process exits or the deadline passes.
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
        if self.tls.is_some() || self.netns.is_some() {
            let mut health = self.etcdctl_cmd();
            health.args(["endpoint", "health"]);
            return health.output().is_ok_and(|o| o.status.success());
        }
        http_get(self.client_port, "/health")
            .is_ok_and(|(code, body)| code == 200 && body.contains("\"true\""))
    }

    /// Whether it says it leads: `etcd_server_is_leader 1` in its /metrics, or in a namespace
    /// (no HTTP from here) its own id as the leader's in `etcdctl endpoint status`. A frozen
    /// member does not answer, so it does not say so.
    fn says_it_leads(&self) -> bool {
        if self.netns.is_some() {
            let mut status = self.etcdctl_cmd();
            status.args(["endpoint", "status", "-w", "json"]);
            let Ok(out) = status.output() else {
                return false;
            };
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let header = &v[0]["Status"]["header"];
            return out.status.success()
                && header["member_id"].as_u64().is_some()
                && v[0]["Status"]["leader"].as_u64() == header["member_id"].as_u64();
        }
        http_get(self.client_port, "/metrics").is_ok_and(|(code, body)| {
            code == 200 && body.lines().any(|l| l == "etcd_server_is_leader 1")
        })
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
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
        let pid = self.pid();
        wait_for(DEADLINE, &format!("etcd {} to stop", self.name), || {
            all_threads_stopped(pid)
        });
    }

    /// Lets a paused member run again (SIGCONT).
    pub fn resume(&self) {
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
            .map(|i| {
                Member::new(
                    dir.path(),
                    &format!("m{i}"),
                    setup,
                    setup.netns.get(i).cloned(),
                )
            })
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
            .filter(|l| !l.is_empty() && !is_history(prefix, l))
            .map(String::from)
            .collect()
    }

    /// Every key under `prefix` (in key order) as `etcdctl_cmd` sees them: as root when
    /// authentication is on.
    pub fn kvs(&self, prefix: &str) -> Vec<Kv> {
        parse_kvs(&self.etcdctl(&["get", "--prefix", "-w", "json", "--", prefix]))
            .into_iter()
            .filter(|kv| !is_history(prefix, &kv.key))
            .collect()
    }

    /// The ids of the leases etcd holds (`etcdctl lease list`, as `etcdctl_cmd`).
    pub fn leases(&self) -> Vec<i64> {
        let out = self.etcdctl(&["lease", "list", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        // etcdctl 3.4 writes `id`, 3.5 `ID`.
        let id = |l: &serde_json::Value| l["id"].as_i64().or_else(|| l["ID"].as_i64());
        v["leases"]
            .as_array()
            .map(|l| l.iter().filter_map(id).collect())
            .unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        self.member.endpoint()
    }

    pub fn metrics_url(&self) -> String {
        self.member.metrics_url()
    }

    pub fn client_port(&self) -> u16 {
        self.member.client_port
    }

    pub fn pause(&self) {
        self.member.pause()
    }

    pub fn resume(&self) {
        self.member.resume()
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

    /// A cluster of one member per entry of `netns`, each in its network namespace (the fault
    /// suite's): etcd's own ports on the namespace's addresses instead of loopback.
    pub fn start_in(netns: Vec<Netns>) -> EtcdCluster {
        let setup = Setup {
            netns,
            ..Setup::default()
        };
        let (dir, members) = start_members(setup.netns.len(), CLUSTER_TIMING, &setup);
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

    /// etcdctl against every member (`endpoints`), run where they can be reached.
    pub fn etcdctl_cmd(&self) -> Command {
        let cmd = etcdctl_cmd(&self.endpoints());
        match self.members.first().and_then(|m| m.netns.as_ref()) {
            Some(netns) => {
                let mut cmd = in_netns(&netns.via, &cmd);
                cmd.stdin(Stdio::null());
                cmd
            }
            None => cmd,
        }
    }

    /// The member that says it leads, among the running ones that answer. A frozen ex-leader
    /// does not answer, so it is not reported.
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.is_running() && m.says_it_leads())
    }

    /// Waits until some member other than `not` leads (e.g. after stopping the old leader).
    pub fn wait_leader(&self, not: Option<usize>) -> usize {
        wait_until(DEADLINE, "an etcd leader", || {
            self.leader().filter(|&l| Some(l) != not)
        })
    }

    /// Waits at most `timeout` until every member serves again (after a fault).
    pub fn wait_healthy(&self, timeout: Duration) {
        wait_for(timeout, "every etcd member healthy", || {
            self.members.iter().all(Member::is_healthy)
        });
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].kill()
    }

    pub fn pause(&self, i: usize) {
        self.members[i].pause()
    }

    pub fn resume(&self, i: usize) {
        self.members[i].resume()
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
