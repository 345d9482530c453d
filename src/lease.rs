//! A lease and its keepalive: renewing it in the background and knowing, at every moment, the
//! latest time etcd may expire it (the send time of the last acknowledged keepalive plus the
//! TTL), and telling a broken connection (retried) from etcd's answer that the lease is gone.

use etcd_client::Client;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, timeout, Instant};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub id: i64,
    pub ttl: Duration,
    pub expires: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeaseState {
    /// The lease is known to live at least until this moment.
    Alive(Instant),
    /// etcd said the lease no longer exists (expired or revoked).
    Gone,
}

pub(crate) struct KeepAlive {
    pub state: watch::Receiver<LeaseState>,
    renew: Arc<Notify>,
    /// When the last keepalive (answered or not) was sent: it may have reached etcd.
    sent: Arc<Mutex<Instant>>,
    ttl: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// Keeps `lease` alive from now on, in the background, and reports how long it is safe.
    ///
    /// Nothing is sent until a third of the TTL has passed, so a short command costs no
    /// keepalive at all. Each acknowledged keepalive moves the expiry to its *send* time plus
    /// the TTL: the server may have received it any time after we sent it, so that is the
    /// latest moment we can be sure it has not expired the lease yet.
    /// `password`: the client authenticates with a user and password, so its token can go
    /// stale while the keepalive runs.
    pub fn start(client: Client, lease: Lease, maxtime: Duration, password: bool) -> KeepAlive {
        let (tx, rx) = watch::channel(LeaseState::Alive(lease.expires));
        let renew = Arc::new(Notify::new());
        let sent = Arc::new(Mutex::new(lease.expires - lease.ttl));
        let task = tokio::spawn(keep_alive_loop(
            client,
            lease,
            maxtime,
            password,
            tx,
            renew.clone(),
            sent.clone(),
        ));
        KeepAlive {
            state: rx,
            renew,
            sent,
            ttl: lease.ttl,
            task,
        }
    }

    /// Sends a keepalive now instead of at the next period (e.g. before starting a command on
    /// a lease that has too little time left).
    pub fn renew_now(&self) {
        self.renew.notify_one();
    }

    /// Stops renewing and returns the latest moment etcd may still hold the lease: the send
    /// time of the last keepalive, answered or not, plus the TTL. `None` if etcd said it is
    /// gone. (A leader change in etcd extends every lease, so even that is not certain.)
    pub fn stop(&self) -> Option<Instant> {
        self.task.abort();
        let sent = *self.sent.lock().unwrap_or_else(|e| e.into_inner());
        match *self.state.borrow() {
            LeaseState::Gone => None,
            LeaseState::Alive(_) => Some(sent + self.ttl),
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_alive_loop(
    mut client: Client,
    lease: Lease,
    maxtime: Duration,
    password: bool,
    state: watch::Sender<LeaseState>,
    renew: Arc<Notify>,
    last_sent: Arc<Mutex<Instant>>,
) {
    let period = lease.ttl / 3;
    // While etcd does not answer, retry often: the next answer may be the one that saves us.
    let retry = (lease.ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut stream = None;
    let mut next = Instant::now() + period;
    loop {
        tokio::select! {
            () = sleep_until(next) => {}
            () = renew.notified() => {}
        }
        let sent = Instant::now();
        *last_sent.lock().unwrap_or_else(|e| e.into_inner()) = sent;
        // An attempt that hangs is given up early enough to try again before the lease runs
        // out, e.g. on another endpoint.
        let answer = timeout(maxtime.min(lease.ttl / 4), async {
            match &mut stream {
                // Opening the stream sends the first keepalive and checks its answer.
                None => {
                    let opened = client.lease_keep_alive(lease.id).await?;
                    stream = Some(opened);
                    Ok(Some(lease.ttl.as_secs() as i64))
                }
                Some((keeper, responses)) => {
                    keeper.keep_alive().await?;
                    Ok(responses.message().await?.map(|r| r.ttl()))
                }
            }
        })
        .await;
        match &answer {
            Ok(Ok(Some(ttl))) if *ttl > 0 => {
                let _ = state.send(LeaseState::Alive(sent + Duration::from_secs(*ttl as u64)));
                next = sent + period;
            }
            // etcd answers a keepalive for a lease it does not have with a TTL of 0.
            Ok(Ok(Some(_))) => {
                let _ = state.send(LeaseState::Gone);
                return;
            }
            Ok(Err(e)) if is_lease_not_found(e) => {
                let _ = state.send(LeaseState::Gone);
                return;
            }
            // Anything else is the transport (a reset stream or connection, a dead member, an
            // h2 error, an election), not an answer about the lease. etcd-client does not
            // reopen a broken stream: drop it and dial again, maybe another endpoint. The
            // holder stops its command by the deadline if no renewal comes in time.
            Ok(Ok(None)) | Ok(Err(_)) => {
                if let Ok(Err(e)) = &answer {
                    tracing::debug!("keepalive of lease {:x} failed ({e}); retrying", lease.id);
                    // etcd 3.4 and 3.5 do not check the token of a keepalive, but one that
                    // does would refuse each retry with the same stale token.
                    if password && is_stale_token(e) {
                        let again = timeout(maxtime.min(lease.ttl / 4), client.refresh_token());
                        if let Ok(Err(e)) = again.await {
                            tracing::debug!("cannot authenticate again ({e})");
                        }
                    }
                }
                stream = None;
                next = Instant::now() + retry;
            }
            // The attempt has waited long enough already: try again at once, on a new stream
            // (the balancer may pick another member).
            Err(_) => {
                tracing::debug!("keepalive of lease {:x} got no answer; retrying", lease.id);
                stream = None;
                next = Instant::now();
            }
        }
    }
}

/// etcd's own answer that a lease does not exist (expired or revoked). etcd-client reports
/// the same error type, `LeaseKeepAliveError`, for a keepalive it could not send because the
/// stream broke ("channel closed"): only the message tells them apart.
fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::NotFound && status.message().contains("lease not found")
        }
        _ => false,
    }
}

/// Whether etcd refused a request because of our token rather than our password or rights:
/// it expired or is unknown to this member ("invalid auth token"), or it was issued before
/// the last change to users and roles, which any `etcdctl user add` or `role add` causes
/// (a JWT carries that revision: "revision of auth store is old", or from etcd 3.5's lease
/// requests "auth: revision in header is old"). Authenticating again mends both, as etcd's
/// Go client does. The codes vary (Unauthenticated, InvalidArgument; Unknown where etcd
/// passes on an error of its own), so the messages decide.
pub(crate) fn is_stale_token(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            matches!(
                status.code(),
                Code::Unauthenticated | Code::InvalidArgument | Code::Unknown
            ) && [
                "invalid auth token",
                "auth store is old",
                "revision in header is old",
            ]
            .iter()
            .any(|m| message.contains(m))
        }
        _ => false,
    }
}
