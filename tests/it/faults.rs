//! The fault suite: a 3-member etcd cluster, each member in a network namespace of its own,
//! and a handful of clients looping on one lock while faults are injected one after another
//! (a member crashed and restarted, paused, isolated; the leader cut off from the majority and
//! crashed; a slowed link; a holder's distlock killed with SIGKILL, another paused past its
//! TTL). Every critical section writes its start and end times and its fencing token; the
//! checker then asserts what a fleet relies on:
//! - no two sections overlap, except where a holder's distlock was paused (fencing's case);
//! - fencing tokens rise in start order;
//! - no command outlives a distlock killed with SIGKILL;
//! - no key and no process is left;
//! - no lock-lost exit (4) while etcd still had the lease: every fault but the pause is
//!   shorter than the TTL, so only the paused holder may lose the lock, and only if
//!   `etcdctl lease timetolive`, asked while its distlock is still stopped (so it cannot have
//!   revoked anything), says the lease is gone.
//!
//! `etcdctl lock` takes part as a known peer. etcd 3.4's etcdctl has been seen running its
//! command after its own session expired while it waited; such overlaps are counted
//! separately, not as failures (mixed fleets should fence with the token).
//!
//! Needs root, `ip` and `tc` (iproute2): without them it skips, saying so (and fails under
//! DISTLOCK_REQUIRE_ALL=1, as in scripts/test). Nothing it creates lives in the root network
//! namespace: a hub namespace holds two bridges (the members' peer network and their client
//! network) and runs the clients; each member's namespace has one veth into each bridge. The
//! members are the harness's `EtcdCluster`, started in their namespaces. Addresses are in
//! 198.18.0.0/15 (set aside for benchmarking networks) and only on those veths and bridges,
//! so every route is a connected route to them and no packet can leave the machine. The
//! namespaces are named `dlfault-<pid>-<role>` and removed when the suite ends, also on a
//! panic; namespaces of an earlier run whose process is gone are removed first.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{
    distlock_std, group_members, in_netns, needs, scratch_dir, shell_status, tool, EtcdCluster,
    Need, Netns, DEADLINE,
};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Lease TTL of every client, in seconds.
const TTL: u64 = 5;
/// Seconds a long section works: longer than the pause past the TTL that client 3 gets.
const LONG: u64 = TTL + 4;
const PREFIX: &str = "/faults/";
const LOCK: &str = "suite";
/// Names of our namespaces start with this, then the pid of the test process that made them.
const NS_PREFIX: &str = "dlfault-";

// ---------------------------------------------------------------------------------------------
// Prerequisites and the network

/// Whether the suite can run: root (network namespaces, veths, tc) and iproute2's `ip` and
/// `tc`, or it skips saying what is missing (fails under DISTLOCK_REQUIRE_ALL=1, as in CI).
fn prerequisites() -> bool {
    if !needs(&[Need::Root, Need::Program("ip"), Need::Program("tc")]) {
        return false;
    }
    // etcd and etcdctl: from PATH or $DISTLOCK_TEST_ETCD; `tool` fails saying what is missing.
    tool("etcd");
    tool("etcdctl");
    true
}

/// Runs `program args` and returns its stdout; panics with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run("ip", args)
}

/// The namespaces of one run, removed on drop (with any process still in them).
struct Net {
    hub: String,
    members: Vec<String>,
    /// How the slowed link is slowed (netem when the kernel has it, else a token bucket).
    slow_qdisc: Vec<String>,
}

const PEER_NET: &str = "198.18.1";
const CLIENT_NET: &str = "198.18.2";

impl Net {
    fn create() -> Net {
        remove_stale_namespaces();
        let me = std::process::id();
        // The guard exists before anything is created, so a failure below removes it all.
        let mut net = Net {
            hub: format!("{NS_PREFIX}{me}-hub"),
            members: (0..3).map(|i| format!("{NS_PREFIX}{me}-m{i}")).collect(),
            slow_qdisc: Vec::new(),
        };
        for ns in std::iter::once(&net.hub).chain(&net.members) {
            ip(&["netns", "add", ns]);
        }
        let hub = net.hub.clone();
        for ns in std::iter::once(&hub).chain(&net.members) {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for bridge in ["brpeer", "brclient"] {
            ip(&["-n", &hub, "link", "add", bridge, "type", "bridge"]);
            ip(&["-n", &hub, "link", "set", bridge, "up"]);
        }
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{CLIENT_NET}.254/24"),
            "dev",
            "brclient",
        ]);
        for (i, ns) in net.members.iter().enumerate() {
            for (net_prefix, bridge, side) in [
                (PEER_NET, "brpeer", "peer"),
                (CLIENT_NET, "brclient", "client"),
            ] {
                let hub_end = format!("{side}{i}");
                // Both ends are created inside their namespaces: nothing touches the root one.
                ip(&[
                    "link", "add", "name", &hub_end, "netns", &hub, "type", "veth", "peer", "name",
                    side, "netns", ns,
                ]);
                ip(&["-n", &hub, "link", "set", &hub_end, "master", bridge]);
                ip(&["-n", &hub, "link", "set", &hub_end, "up"]);
                ip(&["-n", ns, "link", "set", side, "up"]);
                let addr = format!("{net_prefix}.{}/24", i + 1);
                ip(&["-n", ns, "addr", "add", &addr, "dev", side]);
            }
        }
        net.verify();
        net.slow_qdisc = pick_slow_qdisc(&net.hub);
        net
    }

    /// Before any traffic: the links exist and are up, and every route in every namespace is
    /// a connected route to our own interfaces (no default route, nothing via a gateway).
    fn verify(&self) {
        let up = |ns: &str, name: &str| {
            let links = ip(&["-n", ns, "-o", "link", "show"]);
            let line = links.lines().find(|l| {
                l.split(':')
                    .nth(1)
                    .map(|n| n.trim().split('@').next() == Some(name))
                    == Some(true)
            });
            assert!(
                line.is_some_and(|l| l.contains(",UP") || l.contains("<UP")),
                "link {name} missing or down in {ns}: {links}"
            );
        };
        for name in ["brpeer", "brclient"] {
            up(&self.hub, name);
        }
        for (i, ns) in self.members.iter().enumerate() {
            for side in ["peer", "client"] {
                up(&self.hub, &format!("{side}{i}"));
                up(ns, side);
            }
        }
        for ns in std::iter::once(&self.hub).chain(&self.members) {
            let routes = ip(&["-n", ns, "route", "show", "table", "all"]);
            for route in routes.lines().filter(|l| !l.trim().is_empty()) {
                let ours = route.contains(PEER_NET) || route.contains(CLIENT_NET);
                let local = route.starts_with("local ") || route.starts_with("broadcast ");
                let multicast = route.starts_with("multicast ") || route.starts_with("anycast ");
                let ipv6_link = route.starts_with("fe80::") || route.starts_with("::1 ");
                assert!(
                    !route.contains(" via ") && !route.starts_with("default"),
                    "{ns} has a route that could leave our network: {route}"
                );
                assert!(
                    ours || local || multicast || ipv6_link || route.contains("127.0.0."),
                    "{ns} has a route that is not ours: {route}"
                );
            }
            let links = ip(&["-n", ns, "-o", "link", "show"]);
            for line in links.lines() {
                let name = line.split(':').nth(1).unwrap_or("").trim();
                let name = name.split('@').next().unwrap_or(name);
                assert!(
                    ["lo", "brpeer", "brclient", "peer", "client"]
                        .iter()
                        .any(|ok| name == *ok || name.starts_with(ok)),
                    "{ns} has a link we did not make: {line}"
                );
            }
        }
    }

    fn member_ns(&self, i: usize) -> &str {
        &self.members[i]
    }

    /// Takes member `i`'s link into bridge `side` ("peer" or "client") down or up, on the hub's
    /// end.
    fn link(&self, side: &str, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hub, "link", "set", &format!("{side}{i}"), state]);
    }

    /// Slows member `i`'s client link in both directions, or restores it.
    fn slow(&self, i: usize, on: bool) {
        let hub_end = format!("client{i}");
        for (ns, dev) in [
            (self.hub.as_str(), hub_end.as_str()),
            (self.member_ns(i), "client"),
        ] {
            if on {
                let mut args = vec!["-n", ns, "qdisc", "replace", "dev", dev, "root"];
                args.extend(self.slow_qdisc.iter().map(String::as_str));
                run("tc", &args);
            } else {
                run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
            }
        }
    }
}

/// netem's delay when the kernel has it; otherwise a token bucket slow enough to queue.
fn pick_slow_qdisc(hub: &str) -> Vec<String> {
    let netem = ["netem", "delay", "150ms", "50ms"];
    let probe = Command::new("tc")
        .args(["-n", hub, "qdisc", "replace", "dev", "client2", "root"])
        .args(netem)
        .output();
    let words: Vec<&str> = if probe.is_ok_and(|o| o.status.success()) {
        run("tc", &["-n", hub, "qdisc", "del", "dev", "client2", "root"]);
        netem.to_vec()
    } else {
        vec!["tbf", "rate", "48kbit", "burst", "1600", "latency", "1s"]
    };
    words.into_iter().map(String::from).collect()
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.hub).chain(&self.members) {
            remove_namespace(ns);
        }
    }
}

/// Kills whatever still runs in `ns` and removes it (its veths and bridges go with it).
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Namespaces an earlier run of this suite left behind (its process is gone): ours by name.
fn remove_stale_namespaces() {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(owner) = owner {
            if !Path::new(&format!("/proc/{owner}")).exists() {
                eprintln!("removing the stale namespace {name} of an earlier run");
                remove_namespace(name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// How long the cluster may take to serve again after a fault.
const RECOVERY: Duration = Duration::from_secs(20);

/// The harness's 3-member cluster, member i in namespace `m<i>` on our two networks, reached
/// from the hub.
fn start_cluster(net: &Net) -> EtcdCluster {
    let netns = (0..3)
        .map(|i| Netns {
            ns: net.member_ns(i).to_string(),
            client_ip: format!("{CLIENT_NET}.{}", i + 1),
            peer_ip: format!("{PEER_NET}.{}", i + 1),
            via: net.hub.clone(),
        })
        .collect();
    EtcdCluster::start_in(netns)
}

/// `etcdctl` in the hub namespace, where the clients run.
fn etcdctl(cluster: &EtcdCluster, args: &[&str]) -> Result<String, String> {
    let out = cluster
        .etcdctl_cmd()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Distlock,
    Etcdctl,
}

/// What the runner knows about one client's current run, for the fault injector.
#[derive(Default)]
struct Current {
    /// Sequence number and pid of the distlock (or etcdctl) process now running.
    run: Option<(u32, i32)>,
}

/// One run's end as the runner saw it.
#[derive(Debug)]
struct Exit {
    client: usize,
    seq: u32,
    code: i32,
    /// When the runner saw it exit.
    at: f64,
    stderr: String,
}

struct Client {
    id: usize,
    kind: Kind,
    /// How long the critical section works.
    work: &'static str,
    current: Mutex<Current>,
}

/// The command each holder runs: it records its start (with token, lease and process group),
/// marks the lock as held by it, works, and records its end (also when stopped by SIGTERM).
fn section_script(dir: &Path, client: usize, kind: Kind, work: &str) -> String {
    // etcdctl's ETCD_LOCK_REV is the revision of its lock response, not its key's create
    // revision (the fencing token distlock hands out): read that (0 if etcd does not answer).
    let token = match kind {
        Kind::Distlock => "t=$DISTLOCK_FENCING_TOKEN; l=$DISTLOCK_LEASE_ID",
        Kind::Etcdctl => {
            "t=$(etcdctl get \"$ETCD_LOCK_KEY\" -w fields 2>/dev/null | sed -n 's/^\"CreateRevision\" : //p'); l=-"
        }
    };
    format!(
        "log='{d}/log{client}'; now=$(date +%s.%N); {token}; g=$(cut -d' ' -f5 /proc/$$/stat); \
         echo \"start $SEQ $now ${{t:-0}} $l $g\" >> \"$log\"; \
         trap 'echo \"end $SEQ $(date +%s.%N)\" >> \"$log\"; exit 143' TERM; \
         if [ -e '{d}/long{client}' ]; then s={long}; else s={work}; fi; \
         echo $s > '{d}/held{client}'; sleep $s; rm -f '{d}/held{client}'; \
         echo \"end $SEQ $(date +%s.%N)\" >> \"$log\"",
        d = dir.display(),
        long = LONG
    )
}

fn client_loop(
    client: &Client,
    net: &Net,
    endpoints: &str,
    dir: &Path,
    stop: &AtomicBool,
    exits: &Mutex<Vec<Exit>>,
) {
    let script = section_script(dir, client.id, client.kind, client.work);
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let stderr_path = dir.join(format!("stderr{}-{seq}", client.id));
        let mut cmd = match client.kind {
            Kind::Distlock => {
                let mut cmd = in_netns(&net.hub, &distlock_std(endpoints, PREFIX));
                cmd.args([&format!("--lock-name={LOCK}"), &format!("--ttl={TTL}")]);
                cmd
            }
            Kind::Etcdctl => {
                let mut cmd = in_netns(&net.hub, &Command::new(tool("etcdctl")));
                cmd.env("ETCDCTL_API", "3")
                    .env("ETCDCTL_ENDPOINTS", endpoints)
                    .env("ETCDCTL_COMMAND_TIMEOUT", "1s")
                    .arg(format!("--endpoints={endpoints}"))
                    .args(["lock", &format!("--ttl={TTL}"), &format!("{PREFIX}{LOCK}")]);
                cmd
            }
        };
        cmd.args(["--", "sh", "-c", &script])
            .env("SEQ", seq.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .process_group(0);
        let mut child = cmd.spawn().expect("cannot start a client");
        client.current.lock().unwrap().run = Some((seq, child.id() as i32));
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        client.current.lock().unwrap().run = None;
        exits.lock().unwrap().push(Exit {
            client: client.id,
            seq,
            code: shell_status(status),
            at: now(),
            stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
        });
    }
}

/// The lease (hex) of run `seq` of `client`, from its start line.
fn lease_of(dir: &Path, client: usize, seq: u32) -> Option<String> {
    let log = fs::read_to_string(dir.join(format!("log{client}"))).ok()?;
    log.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.first() == Some(&"start") && w.get(1) == Some(&seq.to_string().as_str()))
            .then(|| w.get(4).map(|s| s.to_string()))
            .flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// The checker

#[derive(Debug, Clone)]
struct Section {
    client: usize,
    seq: u32,
    kind: Kind,
    start: f64,
    end: Option<f64>,
    token: i64,
    /// The command's process group.
    group: i32,
}

fn sections(dir: &Path, clients: &[Arc<Client>]) -> Vec<Section> {
    let mut all = Vec::new();
    for c in clients {
        let log = fs::read_to_string(dir.join(format!("log{}", c.id))).unwrap_or_default();
        let mut ends = HashMap::new();
        for l in log.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.first() == Some(&"end") && w.len() >= 3 {
                ends.insert(w[1].to_string(), w[2].parse::<f64>().unwrap());
            }
        }
        for l in log.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.first() == Some(&"start") && w.len() >= 6 {
                all.push(Section {
                    client: c.id,
                    seq: w[1].parse().unwrap(),
                    kind: c.kind,
                    start: w[2].parse().unwrap(),
                    end: ends.get(w[1]).copied(),
                    token: w[3].parse().unwrap_or_else(|_| panic!("no token in {l}")),
                    group: w[5].parse().unwrap(),
                });
            }
        }
    }
    all.sort_by(|a, b| a.start.total_cmp(&b.start));
    all
}

/// Whether every process of the command's process `group` is gone. Zombies count as gone: the
/// container's init may not reap what distlock's death orphaned.
fn group_gone(group: i32) -> bool {
    group_members(group).iter().all(|(_, state)| state == "Z")
}

// ---------------------------------------------------------------------------------------------
// The suite

#[derive(Default)]
struct Log {
    faults: Vec<String>,
    /// (client, seq) whose distlock was paused while it held the lock.
    /// (client, seq, whether etcd had dropped the lease before SIGCONT, None if it did not
    /// answer) of distlock processes paused while they held the lock.
    paused: Vec<(usize, u32, Option<bool>)>,
    /// (client, seq, time) of distlock processes killed with SIGKILL.
    killed: Vec<(usize, u32, f64)>,
    problems: Vec<String>,
}

/// Waits (at most `limit`) until a distlock client of `candidates` holds the lock (in a long
/// section, if asked), and returns it with its run's sequence number and pid.
fn holding(
    dir: &Path,
    clients: &[Arc<Client>],
    candidates: &[usize],
    long: bool,
    limit: Duration,
) -> Option<(usize, u32, i32)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for &c in candidates {
            let held = fs::read_to_string(dir.join(format!("held{c}")));
            if held.is_ok_and(|h| !long || h.trim() == LONG.to_string()) {
                if let Some((seq, pid)) = clients[c].current.lock().unwrap().run {
                    return Some((c, seq, pid));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// How long a fault lasts, or the time left to recover after it: the scenario itself, not a
/// wait for an event.
fn wait_out(d: Duration) {
    std::thread::sleep(d);
}

#[test]
fn fault_suite() {
    if !prerequisites() {
        return;
    }
    let started = Instant::now();
    let tmp = scratch_dir();
    let dir = tmp.path();
    let net = Net::create();
    let mut cluster = start_cluster(&net);
    let endpoints = cluster.endpoints();

    // Four distlock clients and etcdctl lock. Client 3 is the one paused past its TTL while
    // it holds: that section works longer than the pause, so its command outlives the lease.
    let clients: Vec<Arc<Client>> = [
        (Kind::Distlock, "0.2"),
        (Kind::Distlock, "0.2"),
        (Kind::Distlock, "0.2"),
        (Kind::Distlock, "0.2"),
        (Kind::Etcdctl, "0.2"),
    ]
    .into_iter()
    .enumerate()
    .map(|(id, (kind, work))| {
        Arc::new(Client {
            id,
            kind,
            work,
            current: Mutex::new(Current::default()),
        })
    })
    .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let exits = Arc::new(Mutex::new(Vec::new()));
    let mut log = Log::default();

    std::thread::scope(|scope| {
        for c in &clients {
            let (c, net, endpoints, stop, exits) = (c.clone(), &net, &endpoints, &stop, &exits);
            scope.spawn(move || client_loop(&c, net, endpoints, dir, stop, exits));
        }
        // Whatever happens below, the clients stop looping when the scope ends.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        inject_faults(&net, &mut cluster, dir, &clients, &mut log);
        stop.store(true, Ordering::Relaxed);
        // Each client finishes its current run; a waiter that cannot get the lock would hang
        // here, which is a failure the deadline reports.
        let deadline = Instant::now() + Duration::from_secs(40);
        while clients
            .iter()
            .any(|c| c.current.lock().unwrap().run.is_some())
        {
            if Instant::now() > deadline {
                for c in &clients {
                    if let Some((seq, pid)) = c.current.lock().unwrap().run {
                        log.problems
                            .push(format!("client {} run {seq} did not finish", c.id));
                        let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    let exits = std::mem::take(&mut *exits.lock().unwrap());
    let all = sections(dir, &clients);
    let report = check(&all, &exits, &log, &clients);

    // No keys left (a killed or paused holder's key goes with its lease), no processes.
    let keys_gone = (|| {
        let deadline = Instant::now() + Duration::from_secs(TTL + 5);
        loop {
            match etcdctl(&cluster, &["get", "--prefix", "--keys-only", PREFIX]) {
                // The lock's history (under `.distlock/`) is meant to stay.
                Ok(out)
                    if out
                        .lines()
                        .all(|l| l.is_empty() || l.contains("/.distlock/")) =>
                {
                    return Ok(())
                }
                Ok(out) if Instant::now() > deadline => return Err(out),
                Err(e) if Instant::now() > deadline => return Err(e),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })();
    let mut problems = report.problems;
    if let Err(left) = keys_gone {
        problems.push(format!("keys left under {PREFIX}: {left}"));
    }
    for s in &all {
        if !group_gone(s.group) {
            problems.push(format!(
                "the command of client {} run {} still runs",
                s.client, s.seq
            ));
            let _ = signal::killpg(Pid::from_raw(s.group), Signal::SIGKILL);
        }
    }
    for m in &mut cluster.members {
        m.kill();
    }
    for ns in std::iter::once(&net.hub).chain(&net.members) {
        let pids = ip(&["netns", "pids", ns]);
        if !pids.trim().is_empty() {
            problems.push(format!("processes left in {ns}: {pids}"));
        }
    }

    let summary = format!(
        "fault suite: {} critical sections, {} faults, {} overlaps, tokens {}, {} false losses, {} etcdctl overlaps ({} overlaps with a paused holder, {} real losses, {} waiters joined again, slowed link by {}; {:.0}s)",
        all.len(),
        log.faults.len(),
        report.overlaps,
        if report.tokens_rising { "rising" } else { "NOT rising" },
        report.false_losses,
        report.etcdctl_overlaps,
        report.paused_overlaps,
        report.real_losses,
        report.rejoins,
        net.slow_qdisc.first().map_or("?", String::as_str),
        started.elapsed().as_secs_f64()
    );
    // Straight to the file descriptor: cargo test captures eprintln!, and CI's log should show
    // this line.
    let _ = writeln!(std::io::stderr(), "{summary}");
    drop(cluster);
    drop(net);
    assert!(
        problems.is_empty(),
        "{summary}\nfaults: {}\n{}",
        log.faults.join("; "),
        problems.join("\n")
    );
}

/// The faults, one after another, each with time to recover before the next.
fn inject_faults(
    net: &Net,
    cluster: &mut EtcdCluster,
    dir: &Path,
    clients: &[Arc<Client>],
    log: &mut Log,
) {
    let settle = Duration::from_secs(3);
    let follower = |cluster: &EtcdCluster| (cluster.wait_leader(None) + 1) % 3;
    wait_out(settle);

    let f = follower(cluster);
    log.faults
        .push(format!("m{f} crashed, restarted 0.5s later"));
    cluster.kill(f);
    wait_out(Duration::from_millis(500));
    cluster.restart(f);
    cluster.wait_healthy(RECOVERY);
    wait_out(settle);

    let f = follower(cluster);
    log.faults.push(format!("m{f} paused 3s"));
    cluster.pause(f);
    wait_out(Duration::from_secs(3));
    cluster.resume(f);
    cluster.wait_healthy(RECOVERY);
    wait_out(settle);

    let f = follower(cluster);
    log.faults.push(format!("m{f} isolated 4s"));
    net.link("peer", f, false);
    net.link("client", f, false);
    wait_out(Duration::from_secs(4));
    net.link("peer", f, true);
    net.link("client", f, true);
    cluster.wait_healthy(RECOVERY);
    wait_out(settle);

    let l = cluster.wait_leader(None);
    log.faults.push(format!(
        "leader m{l} cut off from the majority 4s (clients still reach it)"
    ));
    net.link("peer", l, false);
    wait_out(Duration::from_secs(4));
    net.link("peer", l, true);
    cluster.wait_healthy(RECOVERY);
    wait_out(settle);

    let l = cluster.wait_leader(None);
    log.faults.push(format!("m{l}'s client link slowed 6s"));
    net.slow(l, true);
    wait_out(Duration::from_secs(6));
    net.slow(l, false);
    wait_out(settle);

    let l = cluster.wait_leader(None);
    log.faults
        .push(format!("leader m{l} crashed, restarted 0.5s later"));
    cluster.kill(l);
    wait_out(Duration::from_millis(500));
    cluster.restart(l);
    cluster.wait_healthy(RECOVERY);
    wait_out(settle);

    // SIGKILL of a distlock that holds the lock: its command must die with it.
    match holding(dir, clients, &[0, 1, 2], false, Duration::from_secs(15)) {
        Some((c, seq, pid)) => {
            log.faults.push(format!(
                "client {c}'s distlock killed (SIGKILL) while holding"
            ));
            let command = section_group(dir, c, seq);
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let at = now();
            log.killed.push((c, seq, at));
            if let Some(command) = command {
                let gone = Instant::now() + Duration::from_secs(1);
                while !group_gone(command) && Instant::now() < gone {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if !group_gone(command) {
                    log.problems.push(format!(
                        "client {c}'s command (process group {command}) outlived its distlock killed with SIGKILL by more than 1s"
                    ));
                }
            }
        }
        None => log
            .problems
            .push("no quick client held the lock within 15s".into()),
    }
    wait_out(settle);

    // SIGSTOP of client 3's distlock past its TTL while it holds (a long section): its lease
    // expires,
    // the next holder starts while the paused holder's command still runs (what fencing
    // tokens are for), and on SIGCONT distlock finds the lock lost and stops the command.
    fs::write(dir.join("long3"), "").unwrap();
    let held = holding(dir, clients, &[3], true, Duration::from_secs(30));
    let _ = fs::remove_file(dir.join("long3"));
    match held {
        Some((c, seq, pid)) => {
            log.faults.push(format!(
                "client {c}'s distlock paused (SIGSTOP) {}s while holding",
                TTL + 2
            ));
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGSTOP);
            wait_out(Duration::from_secs(TTL + 2));
            // Asked while distlock is still stopped, so it cannot have revoked the lease.
            let gone = lease_of(dir, c, seq).and_then(|lease| {
                let out = etcdctl(cluster, &["lease", "timetolive", &lease, "-w", "json"]);
                let v: serde_json::Value = serde_json::from_str(&out.ok()?).ok()?;
                Some(v["ttl"].as_i64()? <= 0)
            });
            log.paused.push((c, seq, gone));
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        None => log
            .problems
            .push("client 3 did not hold the lock in a long section within 30s".into()),
    }
    wait_out(settle);
}

/// The process group of the command of run `seq` of `client`, once it has started.
fn section_group(dir: &Path, client: usize, seq: u32) -> Option<i32> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let log = fs::read_to_string(dir.join(format!("log{client}"))).unwrap_or_default();
        let found = log.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"start") && w.get(1) == Some(&seq.to_string().as_str()))
                .then(|| w.get(5).and_then(|p| p.parse().ok()))
                .flatten()
        });
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

struct Report {
    overlaps: usize,
    etcdctl_overlaps: usize,
    paused_overlaps: usize,
    tokens_rising: bool,
    false_losses: usize,
    real_losses: usize,
    /// Waiters that lost their place (lease expired) and joined the queue again.
    rejoins: usize,
    problems: Vec<String>,
}

fn check(all: &[Section], exits: &[Exit], log: &Log, clients: &[Arc<Client>]) -> Report {
    let mut problems = log.problems.clone();
    let paused = |s: &Section| log.paused.iter().any(|p| (p.0, p.1) == (s.client, s.seq));
    let killed = |s: &Section| log.killed.iter().any(|k| (k.0, k.1) == (s.client, s.seq));
    // A section without an end line was stopped without a chance to write one (SIGKILL): a
    // killed holder's command ends at the latest a second after the kill (checked then),
    // anyone else's before its distlock exits.
    let end = |s: &Section| {
        let killed_at = log
            .killed
            .iter()
            .find(|k| (k.0, k.1) == (s.client, s.seq))
            .map(|k| k.2 + 1.0);
        let exited_at = exits
            .iter()
            .find(|e| (e.client, e.seq) == (s.client, s.seq))
            .map(|e| e.at);
        s.end.or(killed_at).or(exited_at)
    };
    for s in all {
        if end(s).is_none() && !paused(s) {
            problems.push(format!(
                "client {} run {} has no end (killed: {})",
                s.client,
                s.seq,
                killed(s)
            ));
        }
    }

    let (mut overlaps, mut etcdctl_overlaps, mut paused_overlaps) = (0, 0, 0);
    let mut etcdctl_late = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let a_end = end(a).unwrap_or(f64::INFINITY);
            if b.start >= a_end {
                continue;
            }
            if paused(a) || paused(b) {
                paused_overlaps += 1;
            } else if a.kind == Kind::Etcdctl || b.kind == Kind::Etcdctl {
                etcdctl_overlaps += 1;
                etcdctl_late.extend([(a.client, a.seq), (b.client, b.seq)]);
            } else {
                overlaps += 1;
                problems.push(format!("overlap: {a:?} and {b:?}"));
            }
        }
    }

    // Tokens rise in start order (an etcdctl section that overlapped is reported above).
    let ordered: Vec<&Section> = all
        .iter()
        .filter(|s| !etcdctl_late.contains(&(s.client, s.seq)) && s.token > 0)
        .collect();
    let mut tokens_rising = true;
    for w in ordered.windows(2) {
        if w[1].token <= w[0].token {
            tokens_rising = false;
            problems.push(format!("tokens do not rise: {:?} then {:?}", w[0], w[1]));
        }
    }

    let rejoins = exits
        .iter()
        .filter(|e| e.stderr.contains("joining it again at the back"))
        .count();
    let (mut false_losses, mut real_losses) = (0, 0);
    for e in exits {
        let kind = clients[e.client].kind;
        let was_killed = log.killed.iter().any(|k| (k.0, k.1) == (e.client, e.seq));
        match (kind, e.code) {
            (Kind::Etcdctl, _) => {}
            (_, 0) => {}
            (_, 137) if was_killed => {}
            // Real only if etcd no longer had the lease before distlock could have said
            // anything: the paused holder's, asked while it was still stopped. Every other
            // fault here is shorter than the TTL, so no other holder has a reason to give up.
            (_, 4) => {
                let gone = log
                    .paused
                    .iter()
                    .find(|p| (p.0, p.1) == (e.client, e.seq))
                    .and_then(|p| p.2);
                if gone == Some(true) {
                    real_losses += 1;
                } else {
                    false_losses += 1;
                    problems.push(format!(
                        "client {} run {}: lock-lost exit while etcd still had the lease (lease gone before the resume: {gone:?}): {}",
                        e.client, e.seq, e.stderr
                    ));
                }
            }
            (_, code) => problems.push(format!(
                "client {} run {} exited {code}: {}",
                e.client, e.seq, e.stderr
            )),
        }
    }
    Report {
        overlaps,
        etcdctl_overlaps,
        paused_overlaps,
        tokens_rising,
        false_losses,
        real_losses,
        rejoins,
        problems,
    }
}
