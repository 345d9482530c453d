//! Test harness shared by the integration tests: real etcd processes on free loopback ports
//! (one member or a 3-member cluster; for the fault suite, members in network namespaces), the
//! real `distlock` binary with a clean environment, `etcdctl` helpers to look at and write keys
//! the way an operator would, a deadline-bound `wait_until`, and a proxy that can hold back or
//! reorder distlock's gRPC traffic (h2proxy.rs). Everything a test starts is killed when its
//! guard drops, also when the test panics, so nothing outlives a failing test.
//!
//! Each test starts its own etcd (about 0.1 s on tmpfs) and uses its own key prefix: tests share
//! nothing and can run in parallel.
//!
//! By concern: `process` (background processes, waiting), `procfs` (what /proc says about
//! processes), `etcd` (members and clusters), `etcdctl` (the operator's view of etcd),
//! `distlock` (the binary under test, and locks as the tests look at them), `gate` (what a
//! test needs beyond etcd, and skipping without it), `pki` (TLS material), `h2proxy` (a gRPC
//! proxy).

mod distlock;
mod etcd;
mod etcdctl;
mod gate;
pub mod h2proxy;
mod pki;
mod process;
mod procfs;

// `self::`: a plain `distlock` would name the library crate.
pub use self::distlock::*;
pub use etcd::*;
pub use etcdctl::*;
pub use gate::*;
pub use pki::Pki;
pub use process::*;
pub use procfs::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How long etcd may take to serve after it was started, and how long most waits may last.
pub const DEADLINE: Duration = Duration::from_secs(10);

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
