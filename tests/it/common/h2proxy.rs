//! A proxy on loopback between distlock and a plain-http etcd that reads the HTTP/2 frames of
//! the gRPC traffic passing through (h2c: a client preface, then frames) and lets a test decide
//! what happens to each frame distlock sends: forward it, hold it and forward it later, hold
//! etcd's answers back. It stands for what a network or a busy etcd does to a client, made
//! deterministic: an answer that comes after `--maxtime` although the request landed, or a
//! request that etcd handles after one sent later (etcd serves concurrent streams
//! concurrently). etcd and distlock are the real ones.
//!
//! Frames are moved whole and only ever delayed, never changed. Header blocks go on in the
//! order they came (the HPACK state depends on it); a rule holds only DATA frames, and the
//! frames of a stream after its DATA, which may go later than other streams' frames.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use super::DEADLINE;

/// What a client sends first on an h2c connection with prior knowledge.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The frame type that carries a request's message (RFC 9113, section 6.1).
pub const DATA: u8 = 0x0;

/// One HTTP/2 frame, as the client sent it on connection `conn`.
#[derive(Clone, Debug)]
pub struct Frame {
    pub conn: u64,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    fn read(conn: u64, from: &mut impl Read) -> io::Result<Frame> {
        let mut head = [0u8; 9];
        from.read_exact(&mut head)?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        from.read_exact(&mut payload)?;
        Ok(Frame {
            conn,
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    fn write(&self, to: &mut impl Write) -> io::Result<()> {
        let len = (self.payload.len() as u32).to_be_bytes();
        let mut bytes = Vec::with_capacity(9 + self.payload.len());
        bytes.extend_from_slice(&len[1..]);
        bytes.extend_from_slice(&[self.kind, self.flags]);
        bytes.extend_from_slice(&self.stream.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        to.write_all(&bytes)
    }

    /// Whether the payload holds `needle` (gRPC messages go uncompressed: a key, a record, a
    /// protobuf field are there as bytes).
    pub fn has(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.payload.windows(needle.len()).any(|w| w == needle)
    }

    /// A DATA frame whose payload holds every one of `needles`.
    pub fn data_with(&self, needles: &[&[u8]]) -> bool {
        self.kind == DATA && needles.iter().all(|n| self.has(n))
    }
}

/// `n` as a protobuf varint, the way a gRPC message carries an integer (a lease id).
pub fn varint(n: i64) -> Vec<u8> {
    let mut n = n as u64;
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// What the proxy does next, in order, for a frame the client sent.
pub enum Step {
    /// Send this frame on to etcd (on the connection it came from).
    Forward(Frame),
    /// Wait (at most `DEADLINE`) until etcd has sent a frame on this stream of the
    /// connection: it has handled the request. A wait that times out is noted.
    AwaitAnswer(u32),
    /// From now on hold every frame from etcd back, in order (true), or let them go (false).
    HoldAnswers(bool),
    /// Append a line to the proxy's notes, for the test to check what happened.
    Note(String),
}

/// A test's rule: what to do with each frame the client sends. It runs under the proxy's
/// lock, so it must decide at once; waiting is what `Step::AwaitAnswer` is for.
type Rule = Box<dyn FnMut(Frame) -> Vec<Step> + Send>;

#[derive(Default)]
struct State {
    rule: Option<Rule>,
    answers_held: bool,
    /// (connection, stream) on which etcd has sent something.
    answered: HashSet<(u64, u32)>,
    /// Connections one side of which has closed.
    dead: HashSet<u64>,
    notes: Vec<String>,
    sockets: Vec<TcpStream>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy: listens on a loopback port and connects each client to etcd's port. Dropping
/// it closes every connection.
pub struct H2Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl H2Proxy {
    /// A proxy to the etcd listening on 127.0.0.1:`etcd_port`, forwarding everything until
    /// `steer` sets a rule.
    pub fn start(etcd_port: u16) -> H2Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(&listener, etcd_port, &shared))
        };
        H2Proxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The endpoint to give distlock instead of etcd's.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `rule` to every frame a client sends from now on.
    pub fn steer(&self, rule: impl FnMut(Frame) -> Vec<Step> + Send + 'static) {
        self.shared.lock().rule = Some(Box::new(rule));
    }

    /// What the rule noted so far (and the waits that timed out).
    pub fn notes(&self) -> Vec<String> {
        self.shared.lock().notes.clone()
    }
}

impl Drop for H2Proxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            for socket in &state.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        self.shared.changed.notify_all();
        // Wakes the accept loop, which then sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, etcd_port: u16, shared: &Arc<Shared>) {
    for (conn, client) in (0u64..).zip(listener.incoming()) {
        if shared.lock().closed {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(etcd) = TcpStream::connect(("127.0.0.1", etcd_port)) else {
            continue;
        };
        let _ = (client.set_nodelay(true), etcd.set_nodelay(true));
        let (Ok(client2), Ok(etcd2)) = (client.try_clone(), etcd.try_clone()) else {
            continue;
        };
        {
            let mut state = shared.lock();
            for s in [&client, &etcd] {
                if let Ok(s) = s.try_clone() {
                    state.sockets.push(s);
                }
            }
        }
        let (up, down) = (shared.clone(), shared.clone());
        thread::spawn(move || {
            let _ = client_to_etcd(&up, conn, client, etcd);
            end(&up, conn);
        });
        thread::spawn(move || {
            let _ = etcd_to_client(&down, conn, etcd2, client2);
            end(&down, conn);
        });
    }
}

/// One side closed: close the other too, and wake whoever waits on this connection.
fn end(shared: &Shared, conn: u64) {
    shared.lock().dead.insert(conn);
    shared.changed.notify_all();
}

fn client_to_etcd(
    shared: &Shared,
    conn: u64,
    mut client: TcpStream,
    mut etcd: TcpStream,
) -> io::Result<()> {
    let result = (|| {
        let mut preface = [0u8; PREFACE.len()];
        client.read_exact(&mut preface)?;
        etcd.write_all(&preface)?;
        if preface != PREFACE {
            // Not HTTP/2 with prior knowledge: nothing to read frames of.
            io::copy(&mut client, &mut etcd)?;
            return Ok(());
        }
        loop {
            let frame = Frame::read(conn, &mut client)?;
            let steps = match shared.lock().rule.as_mut() {
                Some(rule) => rule(frame),
                None => vec![Step::Forward(frame)],
            };
            for step in steps {
                match step {
                    Step::Forward(f) if f.conn == conn => f.write(&mut etcd)?,
                    Step::Forward(f) => shared.lock().notes.push(format!(
                        "a frame of connection {} cannot go on connection {conn}",
                        f.conn
                    )),
                    Step::AwaitAnswer(stream) => await_answer(shared, conn, stream),
                    Step::HoldAnswers(on) => {
                        shared.lock().answers_held = on;
                        shared.changed.notify_all();
                    }
                    Step::Note(line) => shared.lock().notes.push(line),
                }
            }
        }
    })();
    let _ = client.shutdown(Shutdown::Both);
    let _ = etcd.shutdown(Shutdown::Both);
    result
}

fn await_answer(shared: &Shared, conn: u64, stream: u32) {
    let deadline = Instant::now() + DEADLINE;
    let mut state = shared.lock();
    while !state.answered.contains(&(conn, stream)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || state.closed || state.dead.contains(&conn) {
            state
                .notes
                .push(format!("no answer from etcd on stream {stream}"));
            return;
        }
        state = shared
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn etcd_to_client(
    shared: &Shared,
    conn: u64,
    mut etcd: TcpStream,
    mut client: TcpStream,
) -> io::Result<()> {
    // The server's preface is a SETTINGS frame: frames from the first byte.
    let result = (|| loop {
        let frame = Frame::read(conn, &mut etcd)?;
        {
            let mut state = shared.lock();
            if frame.stream != 0 {
                state.answered.insert((conn, frame.stream));
                shared.changed.notify_all();
            }
            while state.answers_held && !state.closed && !state.dead.contains(&conn) {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        frame.write(&mut client)?;
    })();
    let _ = client.shutdown(Shutdown::Both);
    let _ = etcd.shutdown(Shutdown::Both);
    result
}
