//! Checks the test harness itself (tests/it/common): that it starts a working etcd and a working
//! 3-member cluster, that the etcdctl helpers read back what they wrote, and that failover
//! helpers find the new leader. If these fail, every other integration test would too.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn single_member_serves_and_etcdctl_helpers_round_trip() {
    let start = Instant::now();
    let etcd = Etcd::start();
    eprintln!("Etcd::start() took {:?}", start.elapsed());
    let ep = etcd.endpoint();
    let p = prefix("harness");

    put(&ep, &format!("{p}a"), "plain value; with spaces");
    let lease = lease_grant(&ep, 30);
    put_with_lease(&ep, &format!("{p}b"), "{\"x\":1}", lease);

    let kvs = get_prefix(&ep, &p);
    assert_eq!(kvs.len(), 2, "{kvs:?}");
    assert_eq!(kvs[0].key, format!("{p}a"));
    assert_eq!(kvs[0].value, "plain value; with spaces");
    assert_eq!(kvs[0].lease, 0);
    assert_eq!(kvs[1].lease, lease);
    assert_eq!(kvs[1].json()["x"], 1);
    assert!(kvs[1].create_revision > kvs[0].create_revision);

    let (ttl, granted) = lease_ttl(&ep, lease).expect("lease exists");
    assert_eq!(granted, 30);
    assert!(ttl > 0 && ttl <= 30);
    assert_eq!(
        get_key(&ep, &format!("{p}a")).unwrap().value,
        "plain value; with spaces"
    );
    assert_eq!(get_key(&ep, &format!("{p}zzz")), None);
    assert!(etcd.metrics_url().ends_with("/metrics"));
}

#[test]
fn etcdctl_lock_holds_until_terminated() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let name = format!("{}l", prefix("harness"));
    let holder = etcdctl_lock(&ep, &name, &[]);
    let key = wait_until(DEADLINE, "etcdctl's lock key", || {
        get_prefix(&ep, &format!("{name}/")).into_iter().next()
    });
    assert_ne!(key.lease, 0);
    holder.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for(DEADLINE, "etcdctl to release its key", || {
        get_prefix(&ep, &name).is_empty()
    });
}

#[test]
fn single_member_restarts_with_its_data() {
    let mut etcd = Etcd::start();
    let ep = etcd.endpoint();
    put(&ep, "/k", "v");
    etcd.kill();
    etcd.restart();
    assert_eq!(get_key(&ep, "/k").unwrap().value, "v");
}

#[test]
fn cluster_of_three_replicates_and_fails_over() {
    let start = Instant::now();
    let mut cluster = EtcdCluster::start(3);
    eprintln!("EtcdCluster::start(3) took {:?}", start.elapsed());
    let all = cluster.endpoints();
    assert_eq!(all.split(',').count(), 3);

    put(&cluster.endpoint(0), "/k", "v");
    for i in 0..3 {
        assert_eq!(get_key(&cluster.endpoint(i), "/k").unwrap().value, "v");
    }

    // Freezing the leader makes the other two elect a new one.
    let old = cluster.wait_leader(None);
    let t = Instant::now();
    cluster.pause(old);
    let new = cluster.wait_leader(Some(old));
    eprintln!("failover took {:?}", t.elapsed());
    assert_ne!(new, old);
    put(&all, "/k2", "v2");
    cluster.resume(old);

    // A killed member comes back with its data and catches up.
    let victim = (new + 1) % 3;
    cluster.kill(victim);
    put(&cluster.endpoint(new), "/k3", "v3");
    cluster.restart(victim);
    wait_for(
        Duration::from_secs(5),
        "the restarted member to catch up",
        || get_key(&cluster.endpoint(victim), "/k3").is_some(),
    );
}

/// The etcd the tests start is the one `tool` finds (in `$DISTLOCK_TEST_ETCD`, else on PATH):
/// the server's /version is the release `etcd --version` names, and etcdctl is of the same
/// release, so a second pass on another etcd really runs on it.
#[test]
fn the_etcd_started_is_the_one_asked_for() {
    let etcd = Etcd::start();
    let (code, body) = http_get(etcd.client_port(), "/version").expect("GET /version");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let server = v["etcdserver"].as_str().unwrap_or_default().to_string();
    let (major, minor) = etcd_version();
    let release = format!("{major}.{minor}.");
    assert!(
        server.starts_with(&release),
        "etcd {server}, not {release}x"
    );
    let out = std::process::Command::new(tool("etcdctl"))
        .arg("version")
        .output()
        .unwrap();
    let etcdctl = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        etcdctl.contains(&format!("etcdctl version: {server}")),
        "etcdctl of another release than etcd {server}: {etcdctl}"
    );
    eprintln!("etcd {server} from {}", tool("etcd").display());
}
