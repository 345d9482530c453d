//! distlock's lock, for Rust programs: one holder at a time (or N, or many readers) across a
//! fleet of servers, through etcd, compatible with `etcdctl lock` and the `distlock` command.
//!
//! The `distlock` binary is a user of this library: it adds the command line, the settings,
//! running a command under the lock, signals and output. docs/CONTRACT.md describes the
//! behaviour both share: the keys, the fencing token, what happens when etcd fails.
//!
//! - Connect: [`Etcd::connect`] with [`etcd::Options`] (endpoints, `maxtime`, TLS, user).
//! - Acquire: [`acquire()`] with a [`Request`]: wait as long as it takes, up to a timeout, or not
//!   at all (a busy lock then costs one read and no write). [`Waiting`] hooks report progress
//!   and cancel the wait.
//! - Hold: the [`Held`] lock's lease is kept alive in the background; [`Held::lost`] completes
//!   when the lock is lost (or may be lost within a margin you choose).
//! - Release: [`Held::release`]; from any node, [`holders::unlock`].
//! - At most once per interval: [`stamp`] reads and writes `--min-interval`'s stamp, a key on
//!   a lease etcd counts down.
//! - Status and list: [`queue::contenders`] and [`queue::all_locks`] read the queues,
//!   [`holders::views`] says who holds and who they are ([`view::View`]).
//! - History: with [`Request::history`] set, [`history::write`] leaves one [`history::Entry`]
//!   per acquisition (one request, after the release); [`history::read`] reads them back.
//!
//! ```no_run
//! use distlock::{acquire, etcd, Access, Etcd, Held, LockName, Record, Request};
//! use distlock::record::Mode;
//! use std::time::Duration;
//!
//! # async fn nightly_report() {}
//! # async fn example() -> distlock::Result<()> {
//! let ttl = Duration::from_secs(60);
//! let endpoints = ["http://127.0.0.1:2379".to_string()];
//! let etcd = Etcd::connect(&etcd::Options {
//!     endpoints: &endpoints,
//!     maxtime: Duration::from_secs(5),
//!     ttl,
//!     prefix: "/distlock/",
//!     security: &etcd::Security::default(),
//! })
//! .await?;
//! let name = LockName::parse("report").map_err(distlock::Error::Invalid)?;
//! let record = Record::new(Mode::Run, Some("report".into()), "nightly report", Some(ttl));
//! let request = Request {
//!     prefix: "/distlock/",
//!     name: &name,
//!     ttl,
//!     timeout: Some(Duration::ZERO), // busy: skip this run (Error::Conflict)
//!     access: Access::Exclusive,
//!     record: &record,
//!     history: 20,
//! };
//! let held: Held = acquire(&etcd, &request, &mut ()).await?;
//! println!("fencing token {}", held.token());
//! tokio::select! {
//!     why = held.lost(Duration::from_secs(2)) => eprintln!("stopped: lost the lock: {why}"),
//!     () = nightly_report() => {}
//! }
//! held.release().await?;
//! # Ok(())
//! # }
//! ```

pub mod access;
pub mod acquire;
pub mod error;
pub mod etcd;
pub mod feed;
pub mod held;
pub mod history;
pub mod holders;
mod lease;
pub mod name;
pub mod queue;
pub mod record;
pub mod stamp;
mod tls;
pub mod view;
mod wait;
mod watch;

pub use access::Access;
pub use acquire::{acquire, Request, Waiting};
pub use error::{Error, Result};
pub use etcd::Etcd;
pub use held::Held;
pub use name::LockName;
pub use record::Record;
