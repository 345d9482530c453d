//! The connection to etcd: dialing, the `maxtime` deadline on every request, granting and
//! revoking leases (their keepalive is `lease.rs`), and turning etcd's errors into exit code 3
//! (docs/CONTRACT.md).

use crate::error::{duration, Error, Result};
pub use crate::lease::LeaseState;
pub(crate) use crate::lease::{is_stale_token, KeepAlive, Lease};
use crate::tls;
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity, TlsOptions, Txn,
    TxnResponse, WatchOptions, WatchStream,
};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::{timeout, Instant};

/// Pause between two attempts of a request, so a failing member is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What `Etcd::connect` needs to know, and nothing else of the configuration.
pub struct Options<'a> {
    pub endpoints: &'a [String],
    /// The deadline for dialing and for each request.
    pub maxtime: Duration,
    /// The TTL of the leases we will keep: HTTP/2 pings must find a dead member well within it.
    pub ttl: Duration,
    /// The key prefix, only to say which access a refused request needed.
    pub prefix: &'a str,
    pub security: &'a Security,
}

/// How to reach etcd: TLS files and credentials.
#[derive(Debug, Default)]
pub struct Security {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    /// From DISTLOCK_PASSWORD or the password file; never printed.
    pub password: Option<String>,
}

#[derive(Clone)]
pub struct Etcd {
    client: Client,
    maxtime: Duration,
    endpoints: String,
    /// Who needs which access, for a refusal: `user locker needs readwrite on /distlock/`.
    access: String,
    /// The TLS files given, to name the one at fault when a handshake fails.
    tls: tls::Files,
    /// Whether we authenticate with a user and password (and so hold a token that can expire).
    password: bool,
}

impl Etcd {
    pub async fn connect(config: &Options<'_>) -> Result<Etcd> {
        let endpoints = config.endpoints.join(",");
        let https = config.endpoints.iter().any(|e| e.starts_with("https://"));
        let mut tls = tls::Files::default();
        if https {
            let cert = config
                .security
                .key
                .as_ref()
                .and(config.security.cert.as_deref());
            tls = tls::Files::new(config.security.cacert.as_deref(), cert);
        }
        // Without a user, etcd takes the user from the client certificate's Common Name.
        let cn = tls.cert.as_ref().and_then(|c| c.common_name.as_deref());
        let who = match (config.security.user.as_deref(), cn) {
            (Some(user), _) => format!("user {user}"),
            (None, Some(cn)) => format!("user {cn} (the client certificate's Common Name)"),
            (None, None) => "the client".to_string(),
        };
        let access = format!("{who} needs readwrite on the prefix {}", config.prefix);
        // No client-wide request timeout: it would also cut long watches. Every unary call
        // gets `maxtime` through `call` instead.
        // HTTP/2 pings find a member that stopped answering without closing the connection
        // (frozen, partitioned) well within the TTL, so requests move to another endpoint.
        let ping = (config.ttl / 5).clamp(Duration::from_millis(500), Duration::from_secs(5));
        // Without "require leader", a member cut off from the majority holds every request
        // (and keepalive) until its own timeout; with it, it answers "no leader" at once, so the
        // next attempt can go to another member.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.maxtime)
            .with_keep_alive(ping, ping)
            .with_require_leader(true);
        let tls_files = [&config.security.cacert, &config.security.cert];
        if https {
            options = options.with_tls(tls_options(config.security)?);
        } else if tls_files.iter().any(|f| f.is_some()) {
            tracing::warn!("no endpoint is https://, so the TLS certificates given are not used");
        }
        let mut password = false;
        if let (Some(user), Some(pw)) = (&config.security.user, &config.security.password) {
            // etcd's tokens expire: a simple token after --auth-token-ttl (5 minutes by
            // default) without a request, a JWT after its own TTL, however busy we are. The
            // client then authenticates again and repeats the request, once; `call_until` and
            // the keepalive take care of the rest (see `is_stale_token`).
            options = options.with_user(user, pw).with_auto_token_refresh(true);
            password = true;
        }
        let dial = Limit::after(config.maxtime, "maxtime");
        let client = timeout(
            config.maxtime,
            Client::connect(config.endpoints, Some(options)),
        )
        .await
        .map_err(|_| unreachable(&endpoints, &dial))?
        .map_err(|e| describe(&endpoints, &access, &tls, "connect", e))?;
        tracing::debug!("connecting to {endpoints}");
        Ok(Etcd {
            client,
            maxtime: config.maxtime,
            endpoints,
            access,
            tls,
            password,
        })
    }

    /// Runs one etcd request within `maxtime`, retrying where another try can succeed.
    ///
    /// A member that died still looks ready to the client's balancer until a request to it
    /// fails, and a follower that lost its leader holds a write for up to etcd's own request
    /// timeout (longer than `maxtime`). So each attempt gets a part of `maxtime`, and an
    /// unreachable member or an election is retried on the next attempt, which the balancer
    /// may send elsewhere. Every request distlock makes is safe to repeat: writes are guarded
    /// by revisions or idempotent, and a revoked lease is a success.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let limit = Limit::after(self.maxtime, "maxtime");
        self.call_until(what, &limit, request).await
    }

    /// `call`, retrying until `limit` instead of `maxtime`.
    async fn call_until<T, F, Fut>(&self, what: &str, limit: &Limit, mut request: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let attempt = (self.maxtime / 3).max(Duration::from_millis(500));
        let describe = |e| describe(&self.endpoints, &self.access, &self.tls, what, e);
        loop {
            let now = Instant::now();
            let this_try = attempt.min(limit.until.saturating_duration_since(now));
            tracing::trace!("etcd request: {what} (up to {})", duration(this_try));
            // What failed: the request, or (its token stale) authenticating again; `None`: no
            // answer in time.
            let failed = match timeout(this_try, request(self.client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                // Our token is no good any more (see `is_stale_token`): authenticate again,
                // then repeat the request. A refusal of the password itself is final.
                Ok(Err(e)) if self.password && is_stale_token(&e) => {
                    tracing::debug!("{}; authenticating again", describe(e));
                    let left = limit.until.saturating_duration_since(Instant::now());
                    match timeout(left, self.client.refresh_token()).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => Some(e),
                        Err(_) => None,
                    }
                }
                Ok(Err(e)) => Some(e),
                Err(_) => None,
            };
            let error = match failed {
                Some(e) if !is_transient(&e, self.endpoints.contains("https://")) => {
                    return Err(describe(e))
                }
                Some(e) => describe(e),
                None => unreachable(&self.endpoints, limit),
            };
            if Instant::now() + RETRY_PAUSE >= limit.until {
                return Err(error);
            }
            tracing::debug!("{error}; trying again");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    pub(crate) async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse> {
        self.call(what, |c| {
            let txn = txn.clone();
            async move { kv(&c).txn(txn).await }
        })
        .await
    }

    pub(crate) async fn get(
        &self,
        what: &str,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<GetResponse> {
        self.call(what, |c| {
            let options = options.clone();
            async move { kv(&c).get(key, options).await }
        })
        .await
    }

    pub(crate) async fn watch(
        &self,
        what: &str,
        key: &str,
        options: WatchOptions,
    ) -> Result<WatchStream> {
        self.call(what, |mut c| {
            let options = options.clone();
            async move { c.watch(key, Some(options)).await }
        })
        .await
    }

    /// Grants a lease and returns its id, its TTL as granted (etcd may round a short one up),
    /// and the latest moment the server may expire it.
    pub(crate) async fn grant(&self, ttl: Duration) -> Result<Lease> {
        let sent = Instant::now();
        let secs = ttl.as_secs() as i64;
        let granted = self
            .call("grant a lease", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        let ttl = Duration::from_secs(granted.ttl().max(1) as u64);
        Ok(Lease {
            id: granted.id(),
            ttl,
            expires: sent + ttl,
        })
    }

    /// Revokes a lease, deleting every key attached to it. A lease that is already gone is
    /// fine: what we wanted is done.
    pub(crate) async fn revoke(&self, lease: i64) -> Result<()> {
        self.call("revoke the lease", |mut c| async move {
            revoked(c.lease_revoke(lease).await)
        })
        .await
    }

    /// Like `revoke`, but trying until `until` (the latest moment the lease may live) rather
    /// than `maxtime`: after a lost lock etcd is likely unreachable for a while.
    pub(crate) async fn revoke_until(&self, lease: i64, until: Instant) -> Result<()> {
        // At least maxtime, so etcd gets its chance to say the lease is gone.
        let left = until.saturating_duration_since(Instant::now());
        let limit = match left > self.maxtime {
            true => Limit::after(left, "the time left on the lease"),
            false => Limit::after(self.maxtime, "maxtime"),
        };
        self.call_until("revoke the lease", &limit, |mut c| async move {
            revoked(c.lease_revoke(lease).await)
        })
        .await
    }

    /// Seconds left on a lease, or `None` if it is gone.
    pub(crate) async fn time_to_live(&self, lease: i64) -> Result<Option<i64>> {
        let answer = self
            .call("read the lease", |mut c| async move {
                c.lease_time_to_live(lease, None).await
            })
            .await?;
        Ok((answer.ttl() >= 0).then(|| answer.ttl()))
    }

    /// Keeps `lease` alive from now on, in the background (see `KeepAlive`).
    pub(crate) fn keep_alive(&self, lease: Lease) -> KeepAlive {
        KeepAlive::start(self.client.clone(), lease, self.maxtime, self.password)
    }
}

/// How long `call_until` keeps trying, and how its error names that limit.
struct Limit {
    until: Instant,
    within: Duration,
    name: &'static str,
}

impl Limit {
    fn after(within: Duration, name: &'static str) -> Limit {
        Limit {
            until: Instant::now() + within,
            within,
            name,
        }
    }
}

/// A revoke's answer: a lease that is already gone is what we wanted.
fn revoked<T>(answer: Result<T, etcd_client::Error>) -> Result<(), etcd_client::Error> {
    match answer {
        Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("lease not found") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// A KV client that takes any answer etcd sends: other tools may keep large values under the
/// prefix, and tonic's default limit (4 MiB) would turn reading them into a failure.
fn kv(client: &Client) -> etcd_client::KvClient {
    client.kv_client().max_decoding_message_size(usize::MAX)
}

/// TLS for https:// endpoints: the given CA or the system's roots, and a client certificate
/// for mutual TLS when one is configured.
fn tls_options(security: &Security) -> Result<TlsOptions> {
    // A file that is not the PEM it should be is a configuration error (exit 2), found before
    // anything is sent; left to the TLS library it would look like an unreachable etcd.
    let read = |path: &std::path::Path, what: &str, label: &str| {
        let pem = std::fs::read(path).map_err(|e| {
            Error::Invalid(format!("cannot read the {what} {}: {e}", path.display()))
        })?;
        let text = String::from_utf8_lossy(&pem);
        if !text.contains("-----BEGIN ") || !text.contains(&format!("{label}-----")) {
            return Err(Error::Invalid(format!(
                "the {what} {} is not a PEM file with a {label}",
                path.display()
            )));
        }
        Ok(pem)
    };
    let mut tls = TlsOptions::new();
    tls = match &security.cacert {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read(
            path,
            "CA certificate",
            "CERTIFICATE",
        )?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&security.cert, &security.key) {
        let identity = Identity::from_pem(
            read(cert, "client certificate", "CERTIFICATE")?,
            read(key, "client key", "PRIVATE KEY")?,
        );
        tls = tls.identity(identity);
    }
    Ok(tls)
}

fn unreachable(endpoints: &str, limit: &Limit) -> Error {
    Error::Etcd(format!(
        "cannot reach etcd at {endpoints} within {} ({}); check that etcd runs there and the endpoints are right",
        duration(limit.within),
        limit.name
    ))
}

/// Whether another attempt may succeed: the member is unreachable, or the cluster is
/// electing a leader. A refusal (permissions, bad request, wrong password) is final.
fn is_transient(error: &etcd_client::Error, tls: bool) -> bool {
    use tonic::Code;
    let cause = match error {
        etcd_client::Error::GRpcStatus(status) => status_detail(status),
        etcd_client::Error::TransportError(e) => root_cause(e),
        other => other.to_string(),
    };
    if tls::is_tls_failure(&cause) {
        return false;
    }
    match error {
        // A member that crashed or restarted breaks its HTTP/2 connection: tonic reports that
        // as "h2 protocol error: http2 error" (Unknown or Internal, by the h2 reason), or as
        // Cancelled for a request that was queued on the connection when it closed. Over TLS,
        // Cancelled is also how a server that wants a client certificate refuses us: final.
        etcd_client::Error::GRpcStatus(status)
            if status.message().contains("h2 protocol error") =>
        {
            true
        }
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => true,
            Code::Cancelled => !tls,
            Code::Unknown => {
                status.message().contains("transport error") || status.message().contains("leader")
            }
            _ => false,
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// One line for an etcd failure: what we were doing, and what etcd or the network said.
fn describe(
    endpoints: &str,
    access: &str,
    tls: &tls::Files,
    what: &str,
    error: etcd_client::Error,
) -> Error {
    use tonic::Code;
    let unreachable = |detail: &str| {
        if let Some(error) = tls::explain(tls, endpoints, what, detail) {
            return error;
        }
        Error::Etcd(format!(
            "cannot reach etcd at {endpoints} ({detail}); check that etcd runs there and the endpoints are right"
        ))
    };
    let denied = |detail: String| Error::Denied(format!("cannot {what}: {detail}"));
    let detail = match &error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unauthenticated => {
                return denied(format!(
                    "etcd rejected the credentials ({}); check the user and password",
                    status.message()
                ))
            }
            // etcd 3.4 answers a wrong user or password with InvalidArgument.
            Code::InvalidArgument if status.message().contains("authentication failed") => {
                return denied(format!(
                    "etcd rejected the credentials ({}); check the user and password",
                    status.message()
                ))
            }
            Code::PermissionDenied => {
                return denied(format!(
                    "etcd denied permission ({}); {access}",
                    status.message()
                ))
            }
            // etcd 3.4 requires a client certificate (--client-cert-auth) and does not trust
            // ours (or got none): it closes the connection after the TLS 1.3 handshake, and
            // all the request sees is "operation was canceled". (3.5 sends a TLS alert.)
            Code::Cancelled if endpoints.contains("https://") => {
                return tls::refused_client_certificate(tls, endpoints, what, &status_detail(status))
            }
            // Asked with "require leader", a member that lost its cluster's leader says so.
            Code::Unavailable if status.message().contains("no leader") => {
                return Error::Etcd(format!(
                    "cannot {what}: etcd at {endpoints} has no leader (an election, or the member is cut off from the majority of its cluster)"
                ))
            }
            // tonic reports a failed dial as Unknown "transport error".
            Code::Unavailable | Code::DeadlineExceeded => {
                return unreachable(&status_detail(status))
            }
            Code::Unknown if status.message().contains("transport error") => {
                return unreachable(&status_detail(status))
            }
            // A connection that broke (a member crashed or restarted), not a refusal.
            _ if status.message().contains("h2 protocol error") => {
                return unreachable(&status_detail(status))
            }
            Code::Cancelled => return unreachable(&status_detail(status)),
            // The NOSPACE alarm: etcd takes no write until an operator frees space. Final:
            // waiting would not help, and every retry would be refused the same way.
            _ if status.message().contains("database space exceeded") => {
                return denied(format!(
                    "etcd's storage quota is full ({}); an operator must compact and defragment \
                     etcd, or raise --quota-backend-bytes, then disarm the NOSPACE alarm \
                     (etcdctl alarm disarm)",
                    first_line(status.message())
                ))
            }
            _ => format!("etcd refused the request: {}", first_line(status.message())),
        },
        etcd_client::Error::TransportError(e) => return unreachable(&root_cause(e)),
        other => format!("etcd at {endpoints}: {}", first_line(&other.to_string())),
    };
    Error::Etcd(format!("cannot {what}: {detail}"))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The status's own message and the innermost cause: `tcp connect error: Connection refused`.
fn status_detail(status: &tonic::Status) -> String {
    use std::error::Error as _;
    match status.source() {
        Some(source) => {
            let (message, cause) = (first_line(status.message()), root_cause(source));
            if message.contains(&cause) {
                message.to_string()
            } else {
                format!("{message}: {cause}")
            }
        }
        None => first_line(status.message()).to_string(),
    }
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    first_line(&error.to_string()).to_string()
}
