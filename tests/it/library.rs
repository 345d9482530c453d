//! The lock as a library (src/lib.rs), used as a Rust program would use it, against a real
//! etcd, with the `distlock` binary and `etcdctl` as the other nodes: they exclude each other,
//! the fencing token is the key's create revision, a busy lock is a conflict that writes
//! nothing, `lost` hears another node's `--unlock`, and a release leaves nothing behind.

use crate::common::*;
use distlock::record::Mode;
use distlock::{acquire, etcd, Access, Error, Held, LockName, Record, Request};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(endpoint: &str, prefix: &str) -> distlock::Etcd {
    let endpoints = [endpoint.to_string()];
    let security = etcd::Security::default();
    distlock::Etcd::connect(&etcd::Options {
        endpoints: &endpoints,
        maxtime: Duration::from_secs(5),
        ttl: TTL,
        prefix,
        security: &security,
    })
    .await
    .unwrap()
}

/// Takes `name` under `prefix` with the given wait, as a run-mode holder.
async fn take(
    etcd: &distlock::Etcd,
    prefix: &str,
    name: &str,
    timeout: Option<Duration>,
) -> distlock::Result<Held> {
    take_as(etcd, prefix, name, timeout, Access::Exclusive).await
}

/// `take`, as `access` says (the record is a plain one: `acquire` makes it say the same).
async fn take_as(
    etcd: &distlock::Etcd,
    prefix: &str,
    name: &str,
    timeout: Option<Duration>,
    access: Access,
) -> distlock::Result<Held> {
    let name = LockName::parse(name).unwrap();
    let record = Record::new(
        Mode::Run,
        Some("library-test".into()),
        "from Rust",
        Some(TTL),
    );
    let request = Request {
        prefix,
        name: &name,
        ttl: TTL,
        timeout,
        access,
        record: &record,
        history: 0,
    };
    acquire(etcd, &request, &mut ()).await
}

#[test]
fn a_library_holder_excludes_the_binary_and_releases_without_a_trace() {
    let server = Etcd::start();
    let p = prefix("lib-hold");
    let rt = runtime();
    let client = rt.block_on(connect(&server.endpoint(), &p));
    let held = rt.block_on(take(&client, &p, "job", None)).unwrap();

    // What etcd holds is the recipe's key, and the token is its create revision.
    let keys = get_prefix(&server.endpoint(), &p);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].key, held.key());
    assert_eq!(keys[0].create_revision, held.token());
    assert!(keys[0].value.contains("from Rust"), "{}", keys[0].value);

    // The binary on another "node" sees it held, by whom, and skips.
    let busy = distlock(&server, &p)
        .args(["--lock-name=job", "--nowait", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(1), "{busy:?}");
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains("job is busy: held by"), "{stderr}");

    rt.block_on(held.release()).unwrap();
    assert!(get_prefix(&server.endpoint(), &p).is_empty());
    distlock(&server, &p)
        .args(["--lock-name=job", "--nowait", "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn not_waiting_on_a_busy_lock_is_a_conflict_that_writes_nothing() {
    let server = Etcd::start();
    let p = prefix("lib-nowait");
    let mut holder = etcdctl_lock(&server.endpoint(), &format!("{p}job"), &[]);
    let keys = wait_until(DEADLINE, "etcdctl to hold the lock", || {
        Some(get_prefix(&server.endpoint(), &p)).filter(|k| !k.is_empty())
    });
    let rt = runtime();
    let client = rt.block_on(connect(&server.endpoint(), &p));

    let proposals = metric(
        server.client_port(),
        "etcd_server_proposals_committed_total",
    );
    let answer = rt.block_on(take(&client, &p, "job", Some(Duration::ZERO)));
    match answer {
        Err(Error::Conflict(message)) => {
            assert!(message.contains("not distlock's"), "{message}")
        }
        Err(e) => panic!("expected a conflict, got {e}"),
        Ok(_) => panic!("took a lock etcdctl holds"),
    }
    assert_eq!(
        metric(
            server.client_port(),
            "etcd_server_proposals_committed_total"
        ),
        proposals,
        "a busy lock must cost no write"
    );
    assert_eq!(get_prefix(&server.endpoint(), &p).len(), keys.len());
    holder.signal(nix::sys::signal::Signal::SIGTERM);
    holder.wait(DEADLINE);
}

#[test]
fn a_timeout_gives_up_in_time_and_leaves_nothing() {
    let server = Etcd::start();
    let p = prefix("lib-timeout");
    distlock(&server, &p)
        .args(["--lock-name=job", "--lock", "--reason=maintenance"])
        .assert()
        .code(0);
    let rt = runtime();
    let client = rt.block_on(connect(&server.endpoint(), &p));
    let started = Instant::now();
    let answer = rt.block_on(take(&client, &p, "job", Some(Duration::from_millis(500))));
    let took = started.elapsed();
    match answer {
        Err(Error::Conflict(message)) => assert!(message.contains("maintenance"), "{message}"),
        Err(e) => panic!("expected a conflict, got {e}"),
        Ok(_) => panic!("took a lock held by --lock"),
    }
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Only the --lock holder's key is left: ours was removed with its lease.
    assert_eq!(get_prefix(&server.endpoint(), &p).len(), 1);
}

#[test]
fn lost_hears_an_unlock_from_another_node() {
    let server = Etcd::start();
    let p = prefix("lib-lost");
    let rt = runtime();
    let client = rt.block_on(connect(&server.endpoint(), &p));
    let held = rt.block_on(take(&client, &p, "job", None)).unwrap();
    let key = held.key().to_string();
    let endpoint = server.endpoint();
    let prefix = p.clone();
    // Whenever it comes: `lost` watches our key from the revision we took it at.
    let unlock = std::thread::spawn(move || {
        assert!(get_key(&endpoint, &key).is_some());
        distlock_at(&endpoint, &prefix)
            .args(["--lock-name=job", "--unlock"])
            .assert()
            .code(0);
        Instant::now()
    });
    // A margin of 1s: the lease, renewed every TTL/3, never comes that close to expiring.
    let why = rt.block_on(async {
        tokio::time::timeout(DEADLINE, held.lost(Duration::from_secs(1))).await
    });
    let heard = Instant::now();
    let unlocked = unlock.join().unwrap();
    let why = why.expect("lost did not complete after the unlock");
    assert!(why.contains("key was removed"), "{why}");
    assert!(heard.duration_since(unlocked) < Duration::from_secs(1));
    assert!(get_prefix(&server.endpoint(), &p).is_empty());
}

#[test]
fn the_record_says_what_access_asked_for() {
    // A reader taken with a plain record: its key must say it is shared, or the others would
    // take it for an exclusive holder (a shared contender waiting behind it, an exclusive one
    // taking over from it).
    let server = Etcd::start();
    let p = prefix("lib-access");
    let rt = runtime();
    let client = rt.block_on(connect(&server.endpoint(), &p));
    let held = rt
        .block_on(take_as(&client, &p, "db", None, Access::Shared))
        .unwrap();
    let keys = get_prefix(&server.endpoint(), &p);
    let record: serde_json::Value = serde_json::from_str(&keys[0].value).unwrap();
    assert_eq!(record["shared"], true, "{record}");
    assert_eq!(record["max_holders"], 1, "{record}");

    // Another reader joins it; a writer does not.
    let reader = distlock(&server, &p)
        .args(["--lock-name=db", "--shared", "--nowait", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(reader.status.code(), Some(0), "{reader:?}");
    let writer = distlock(&server, &p)
        .args(["--lock-name=db", "--nowait", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(writer.status.code(), Some(1), "{writer:?}");
    rt.block_on(held.release()).unwrap();
    assert_eq!(get_prefix(&server.endpoint(), &p), vec![]);
}
