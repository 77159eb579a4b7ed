//! The remote receiver: `zcprof sink` drains the streams of a `run`/`compare --to` on another
//! host (or network namespace), checks their byte counts and reports its own costs back, so the
//! receiving side is measured apart from the sender and a real NIC can carry the transfer.
//!
//! One TCP port carries everything, as lines of JSON before any payload:
//! - a sender may first ask whether a sink is there: `{"zcprof":"probe"}`, answered with
//!   `{"zcprof":"sink","version":"..."}`;
//! - the sender's zcprof opens a control connection per run and says `{"zcprof":"run",
//!   "streams":N,"bytes":B}`; the sink answers `{"token":"..."}` (or `{"error":"..."}`);
//! - each data stream (opened by the measured transfer process before its measured window) starts
//!   with `{"zcprof":"data","token":"...","stream":I}` and then carries the payload to its end;
//! - when every stream of the token has ended, the sink writes its `SinkReport` on the control
//!   connection and closes it. A sender that closes its control connection first abandons the
//!   run.
//!
//! With `--token-file` on both ends, a run's hello carries the file's token and the sink opens
//! runs only for hellos that carry its own: anyone else's is refused, and not counted. (The token
//! crosses the network in the clear, as a bearer token over plain HTTP does: it keeps strangers'
//! runs out, not eavesdroppers.)
//!
//! The sink needs no privileges: its costs are what its `read()` calls returned (each byte read
//! from a socket is a CPU copy socket buffer -> user buffer) and `getrusage(RUSAGE_THREAD)` of the
//! threads that drained the streams.
use std::{
    collections::HashMap,
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs as _},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The port `zcprof sink` listens on, and `--to HOST` without a port sends to.
pub const DEFAULT_PORT: u16 = 9465;

/// Errors of the sink and of a sender talking to it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("cannot reach the sink at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("the sink at {addr} {what}")]
    Protocol { addr: String, what: String },
    #[error("--token-file {path}: {what}")]
    TokenFile { path: String, what: String },
}

/// The shared secret of `--token-file`: the file's first line, which must not be empty.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed: a debug dump of the options must not show it.
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token from `path` (a regular file, its first line, surrounding space trimmed).
    ///
    /// # Errors
    /// When the file cannot be read, is not a regular file, or its first line is empty.
    pub fn read(path: &std::path::Path) -> Result<Token, SinkError> {
        let err = |what: String| SinkError::TokenFile {
            path: path.display().to_string(),
            what,
        };
        let mut text = String::new();
        // A token is one short line: more than 4 KiB is not a token file.
        crate::files::open_regular(path)
            .and_then(|f| f.take(4096).read_to_string(&mut text))
            .map_err(|e| err(e.to_string()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(err("its first line is empty: it holds no token".to_owned()));
        }
        Ok(Token(token.to_owned()))
    }

    /// Whether `offered` is this token, compared in time that does not depend on where they
    /// first differ.
    fn admits(&self, offered: Option<&str>) -> bool {
        let Some(offered) = offered else {
            return false;
        };
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        let differ = a
            .iter()
            .zip(b)
            .fold(u8::from(a.len() != b.len()), |acc, (x, y)| acc | (x ^ y));
        differ == 0
    }
}

/// The first line of a connection to the sink.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "zcprof", rename_all = "snake_case")]
enum Hello {
    /// Is a sink there? (Answered, then closed.)
    Probe,
    Run {
        streams: usize,
        bytes: u64,
        /// The sender's `--token-file` token, when it was given one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Data {
        token: String,
        stream: usize,
    },
}

/// What the sink measured of itself, sent back at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SinkReport {
    /// Bytes each stream delivered.
    pub received: Vec<u64>,
    /// `read()` calls that returned data, over all streams.
    pub reads: u64,
    /// CPU time and scheduler switches of the draining threads (`getrusage(RUSAGE_THREAD)`).
    pub user_ns: u64,
    pub system_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// From the first payload byte to the last stream's end, on the sink's clock.
    pub elapsed_ns: u64,
    /// The sink host's kernel release.
    pub kernel: String,
}

/// One run the sink is serving: what arrived so far.
#[derive(Default)]
struct RunState {
    /// Streams that said hello, by number (each may connect once).
    connected: Vec<bool>,
    ended: usize,
    report: SinkReport,
    first_byte: Option<Instant>,
}

impl RunState {
    fn streams(&self) -> usize {
        self.connected.len()
    }
}

type Runs = Arc<(Mutex<HashMap<String, RunState>>, Condvar)>;

/// The most streams a run may have (tee has two); a bound on what a stranger can make the sink
/// allocate.
const MAX_STREAMS: usize = 64;
/// How long a connection may take to say its first line.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a run's streams may take to connect after the run was opened. The sender connects
/// them while preparing, before anything is measured; once connected they may run as long as
/// they need.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting control connection checks that its sender is still there.
const POLL: Duration = Duration::from_millis(100);

/// What a sink did before it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Runs that were opened and ended (delivered or not).
    pub runs: u64,
    /// Of those, runs in which a stream did not deliver the bytes announced, or that the sender
    /// abandoned.
    pub failed: u64,
}

/// Serves runs on `addr` until `runs_to_serve` runs ended (`None`: until `stop` is set, by
/// Ctrl-C).
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(
    addr: &str,
    runs_to_serve: Option<u64>,
    token: Option<Token>,
    stop: &AtomicBool,
) -> Result<Served, SinkError> {
    let token = Arc::new(token);
    let listen_err = |source| SinkError::Listen {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(listen_err)?;
    // Non-blocking accepts, so that the loop notices Ctrl-C and the end of the last run.
    listener.set_nonblocking(true).map_err(listen_err)?;
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_owned(), |a| a.to_string());
    eprintln!("zcprof sink: listening on {local}");
    let runs: Runs = Arc::new((Mutex::new(HashMap::new()), Condvar::new()));
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut handles: Vec<std::thread::JoinHandle<()>> = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst)
            || runs_to_serve.is_some_and(|limit| served.load(Ordering::SeqCst) >= limit)
        {
            break;
        }
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                handles.retain(|h| !h.is_finished());
                continue;
            }
            Err(e) => {
                // Out of descriptors, say: say so and do not spin.
                eprintln!("zcprof sink: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let (runs, token) = (Arc::clone(&runs), Arc::clone(&token));
        let (served, failed) = (Arc::clone(&served), Arc::clone(&failed));
        handles.push(std::thread::spawn(move || {
            let peer = conn
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            match connection(&conn, &runs, token.as_ref().as_ref()) {
                Ok(Some(end)) => {
                    let (line, ok) = end.describe();
                    eprintln!("zcprof sink: run from {peer}: {line}");
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                }
                Ok(None) => {}
                Err(Failure::Run(e)) => {
                    eprintln!("zcprof sink: run from {peer}: {e}");
                    failed.fetch_add(1, Ordering::SeqCst);
                    served.fetch_add(1, Ordering::SeqCst);
                }
                Err(Failure::Connection(e)) => eprintln!("zcprof sink: {peer}: {e}"),
            }
        }));
    }
    // The runs counted have ended and answered; connections still open (another sender's run,
    // a stranger) end with the process.
    for h in handles
        .into_iter()
        .filter(std::thread::JoinHandle::is_finished)
    {
        let _ = h.join();
    }
    Ok(Served {
        runs: served.load(Ordering::SeqCst),
        failed: failed.load(Ordering::SeqCst),
    })
}

/// How a connection went wrong: a run that was opened and failed (it counts as served), or a
/// connection that never became part of a run.
enum Failure {
    Run(io::Error),
    Connection(io::Error),
}

/// A run that ended with every stream closed.
struct RunEnd {
    report: SinkReport,
    expected: u64,
}

impl RunEnd {
    /// One line for the sink's log, and whether every stream delivered the bytes announced.
    fn describe(&self) -> (String, bool) {
        let r = &self.report;
        let short: Vec<String> = r
            .received
            .iter()
            .enumerate()
            .filter(|(_, got)| **got != self.expected)
            .map(|(i, got)| format!("stream {i} received {got} of {} bytes", self.expected))
            .collect();
        let costs = format!(
            "{} reads, {:.1} ms CPU ({:.1} user, {:.1} system), {} voluntary and {} involuntary \
             switches, {:.1} ms",
            r.reads,
            ms(r.user_ns + r.system_ns),
            ms(r.user_ns),
            ms(r.system_ns),
            r.voluntary_switches,
            r.involuntary_switches,
            ms(r.elapsed_ns)
        );
        if short.is_empty() {
            (
                format!(
                    "{} stream(s) of {}, every byte received; {costs}",
                    r.received.len(),
                    crate::units::format_bytes(self.expected)
                ),
                true,
            )
        } else {
            (format!("SHORT: {}; {costs}", short.join(", ")), false)
        }
    }
}

#[expect(clippy::cast_precision_loss, reason = "display")]
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Serves one connection: a probe, a run's control connection (returns the run's end once its
/// streams ended) or one of its data streams.
fn connection(
    mut conn: &TcpStream,
    runs: &Runs,
    token: Option<&Token>,
) -> Result<Option<RunEnd>, Failure> {
    let setup = |conn: &TcpStream| -> io::Result<BufReader<TcpStream>> {
        // Accepted sockets do not inherit the listener's O_NONBLOCK on Linux; made sure anyway.
        conn.set_nonblocking(false)?;
        // A connection that never says its first line must not hold a thread forever.
        conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
        Ok(BufReader::new(conn.try_clone()?))
    };
    let mut reader = setup(conn).map_err(Failure::Connection)?;
    let mut line = String::new();
    // A first line longer than this is no hello.
    (&mut reader).take(4096).read_line(&mut line).map_err(|e| {
        // The read timeout shows as EAGAIN ("os error 11"): say what it means.
        Failure::Connection(match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("closed: no hello line within {} s", HELLO_TIMEOUT.as_secs()),
            ),
            _ => e,
        })
    })?;
    let hello: Hello = match serde_json::from_str(line.trim()) {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(
                conn,
                "{}",
                serde_json::json!({ "error": "not a zcprof sender" })
            );
            return Err(Failure::Connection(io::Error::other(format!(
                "not a zcprof sender ({e})"
            ))));
        }
    };
    let _ = conn.set_read_timeout(None);
    match hello {
        Hello::Probe => {
            let answer =
                serde_json::json!({ "zcprof": "sink", "version": env!("CARGO_PKG_VERSION") });
            writeln!(conn, "{answer}").map_err(Failure::Connection)?;
            Ok(None)
        }
        Hello::Run {
            streams,
            bytes,
            token: offered,
        } => {
            if let Some(token) = token
                && !token.admits(offered.as_deref())
            {
                let why = if offered.is_some() {
                    "its token is not this sink's (--token-file)"
                } else {
                    "this sink takes runs only with its token (--token-file)"
                };
                let _ = writeln!(conn, "{}", serde_json::json!({ "error": why }));
                return Err(Failure::Connection(io::Error::other(format!(
                    "refused a run: {why}"
                ))));
            }
            control(conn, runs, streams, bytes).map(Some)
        }
        Hello::Data { token, stream } => {
            data(reader, runs, &token, stream).map_err(Failure::Connection)?;
            Ok(None)
        }
    }
}

/// A run's control connection: registers the run, hands out its token, waits for its streams
/// to end (or its sender to leave) and writes the report.
fn control(
    mut conn: &TcpStream,
    runs: &Runs,
    streams: usize,
    bytes: u64,
) -> Result<RunEnd, Failure> {
    if streams == 0 || streams > MAX_STREAMS {
        let msg = format!("a run has 1 to {MAX_STREAMS} streams, not {streams}");
        let _ = writeln!(conn, "{}", serde_json::json!({ "error": msg }));
        return Err(Failure::Connection(io::Error::other(msg)));
    }
    let token = format!("{:016x}{:016x}", rand_u64(), rand_u64());
    let (lock, cvar) = &**runs;
    let lock_err = |_| poisoned();
    lock.lock().map_err(lock_err)?.insert(
        token.clone(),
        RunState {
            connected: vec![false; streams],
            report: SinkReport {
                received: vec![0; streams],
                kernel: kernel_release(),
                ..SinkReport::default()
            },
            ..RunState::default()
        },
    );
    // Whatever happens below, the run is forgotten at the end.
    let forget = |runs: &Runs| {
        if let Ok(mut map) = runs.0.lock() {
            map.remove(&token)
        } else {
            None
        }
    };
    if let Err(e) = writeln!(conn, "{}", serde_json::json!({ "token": token })) {
        forget(runs);
        return Err(Failure::Run(e));
    }
    let opened = Instant::now();
    // Non-blocking, to peek whether the sender is still there while waiting.
    let _ = conn.set_nonblocking(true);
    loop {
        let map = lock.lock().map_err(lock_err)?;
        let (map, _) = cvar
            .wait_timeout_while(map, POLL, |m| {
                m.get(&token).is_some_and(|r| r.ended < r.streams())
            })
            .map_err(|_| poisoned())?;
        let Some(state) = map.get(&token) else {
            return Err(Failure::Run(io::Error::other("the run vanished")));
        };
        if state.ended == state.streams() {
            break;
        }
        let connected = state.connected.iter().filter(|c| **c).count();
        drop(map);
        if connected < streams && opened.elapsed() > STREAMS_TIMEOUT {
            forget(runs);
            let msg = format!(
                "only {connected} of {streams} streams connected within {} s",
                STREAMS_TIMEOUT.as_secs()
            );
            let _ = conn.set_nonblocking(false);
            let _ = writeln!(conn, "{}", serde_json::json!({ "error": msg }));
            return Err(Failure::Run(io::Error::other(msg)));
        }
        if sender_gone(conn) {
            forget(runs);
            // A hello without a stream is no run: a stranger (or a sender that never began)
            // cannot end a `--runs N` sink by saying hello and leaving.
            if connected == 0 {
                return Err(Failure::Connection(io::Error::other(
                    "announced a run and left before any stream connected: not counted",
                )));
            }
            return Err(Failure::Run(io::Error::other(
                "the sender closed the run before its streams ended (its transfer failed or was \
                 interrupted)",
            )));
        }
    }
    let state = forget(runs).unwrap_or_default();
    let _ = conn.set_nonblocking(false);
    let answer = serde_json::to_string(&state.report).map_err(|e| Failure::Run(e.into()))?;
    writeln!(conn, "{answer}").map_err(Failure::Run)?;
    Ok(RunEnd {
        report: state.report,
        expected: bytes,
    })
}

fn poisoned() -> Failure {
    Failure::Run(io::Error::other("a sink thread panicked"))
}

/// The peer closed (or reset) a connection it sends nothing more on.
fn sender_gone(conn: &TcpStream) -> bool {
    match conn.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

/// A data stream: drains it to its end, counting bytes, reads and this thread's rusage.
fn data(
    mut reader: BufReader<TcpStream>,
    runs: &Runs,
    token: &str,
    stream: usize,
) -> io::Result<()> {
    let (lock, cvar) = &**runs;
    let lock_err = |_| io::Error::other("a sink thread panicked");
    {
        let mut map = lock.lock().map_err(lock_err)?;
        let state = map
            .get_mut(token)
            .ok_or_else(|| io::Error::other("data for an unknown run"))?;
        match state.connected.get_mut(stream) {
            None => return Err(io::Error::other("stream number out of range")),
            Some(true) => return Err(io::Error::other(format!("stream {stream} came twice"))),
            Some(seen) => *seen = true,
        }
    }
    let before = thread_usage();
    // What the header line's reader buffered already belongs to the payload.
    let mut total = reader.buffer().len() as u64;
    let mut reads = u64::from(total > 0);
    let mut first_byte = (total > 0).then(Instant::now);
    reader.consume(reader.buffer().len());
    let mut conn = reader.into_inner();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first_byte.get_or_insert_with(Instant::now);
                total += n as u64;
                reads += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset ends the stream as surely as a close: what arrived is reported.
            Err(_) => break,
        }
    }
    let after = thread_usage();
    let mut map = lock.lock().map_err(lock_err)?;
    // Gone when the sender abandoned the run meanwhile.
    if let Some(state) = map.get_mut(token) {
        if let Some(t) = first_byte {
            state.first_byte = Some(state.first_byte.map_or(t, |f| f.min(t)));
        }
        let r = &mut state.report;
        r.received[stream] = total;
        r.reads += reads;
        r.user_ns += after.0.saturating_sub(before.0);
        r.system_ns += after.1.saturating_sub(before.1);
        r.voluntary_switches += after.2.saturating_sub(before.2);
        r.involuntary_switches += after.3.saturating_sub(before.3);
        state.ended += 1;
        if state.ended == state.connected.len() {
            r.elapsed_ns = state.first_byte.map_or(0, |s| {
                u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX)
            });
        }
    }
    drop(map);
    cvar.notify_all();
    Ok(())
}

/// This thread's (user ns, system ns, voluntary switches, involuntary switches).
fn thread_usage() -> (u64, u64, u64, u64) {
    // SAFETY: a zeroed rusage is a valid out-value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut u) };
    let ns = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_usec).unwrap_or(0) * 1_000
    };
    (
        ns(u.ru_utime),
        ns(u.ru_stime),
        u64::try_from(u.ru_nvcsw).unwrap_or(0),
        u64::try_from(u.ru_nivcsw).unwrap_or(0),
    )
}

fn kernel_release() -> String {
    nix::sys::utsname::uname().map_or_else(
        |_| "unknown".to_owned(),
        |u| u.release().to_string_lossy().into_owned(),
    )
}

/// Random bits for run tokens, which keep concurrent runs apart and make a stranger's data
/// stream unlikely to land in someone's run.
fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: valid buffer. Should getrandom fail, the clock still tells runs apart.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the low bits are the point"
        )]
        return t as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(b)
}

/// How long a sender waits to connect, and for the sink's answers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `addr` (`HOST:PORT`) and connects to the first of its addresses that answers.
fn connect(addr: &str) -> Result<TcpStream, SinkError> {
    let err = |source| SinkError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let candidates: Vec<SocketAddr> = addr.to_socket_addrs().map_err(err)?.collect();
    let mut last = io::Error::other("the name resolves to no address");
    for peer in candidates {
        match TcpStream::connect_timeout(&peer, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(CONNECT_TIMEOUT))
                    .map_err(err)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(err(last))
}

/// What a probe found: a sink, where it is, and the address this host reaches it from.
#[derive(Clone, Copy, Debug)]
pub struct Probed {
    /// The sink's address, resolved.
    pub peer: SocketAddr,
    /// This end of the connection: its interface carries the route to the sink.
    pub local: SocketAddr,
}

/// Checks that a zcprof sink answers on `addr` (`HOST:PORT`), before anything is prepared for a
/// run.
///
/// # Errors
/// When nothing answers, or something that is not a sink does.
pub fn probe(addr: &str) -> Result<Probed, SinkError> {
    let stream = connect(addr)?;
    let err = |source| SinkError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let (peer, local) = (
        stream.peer_addr().map_err(err)?,
        stream.local_addr().map_err(err)?,
    );
    let mut control = BufReader::new(stream);
    send_hello(&mut control, &Hello::Probe, addr)?;
    let answer = read_answer(&mut control, addr)?;
    if answer["zcprof"] != "sink" {
        return Err(not_a_sink(addr, &answer));
    }
    Ok(Probed { peer, local })
}

/// The sender's side of a run: the control connection, open while the transfer runs. Dropping it
/// abandons the run at the sink.
pub struct Remote {
    addr: String,
    control: BufReader<TcpStream>,
    /// Sent by the transfer process as the first line of each stream.
    pub token: String,
    /// The resolved address the streams connect to.
    pub peer: SocketAddr,
}

impl Remote {
    /// Opens a run of `streams` streams of `bytes` each at the sink on `addr` (`HOST:PORT`), with
    /// the `--token-file` token when there is one.
    ///
    /// # Errors
    /// When the sink cannot be reached or does not answer as a sink.
    pub fn open(
        addr: &str,
        streams: usize,
        bytes: u64,
        token: Option<&Token>,
    ) -> Result<Remote, SinkError> {
        let stream = connect(addr)?;
        let peer = stream.peer_addr().map_err(|source| SinkError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
        let mut control = BufReader::new(stream);
        let hello = Hello::Run {
            streams,
            bytes,
            token: token.map(|t| t.0.clone()),
        };
        send_hello(&mut control, &hello, addr)?;
        let answer = read_answer(&mut control, addr)?;
        let Some(token) = answer["token"].as_str().map(str::to_owned) else {
            return Err(not_a_sink(addr, &answer));
        };
        Ok(Remote {
            addr: addr.to_owned(),
            control,
            token,
            peer,
        })
    }

    /// The sink's address as the user gave it.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The first line a data stream sends.
    #[must_use]
    pub fn data_hello(token: &str, stream: usize) -> String {
        let hello = Hello::Data {
            token: token.to_owned(),
            stream,
        };
        format!("{}\n", serde_json::to_string(&hello).unwrap_or_default())
    }

    /// Waits up to `wait` for the sink's report after every stream was closed.
    ///
    /// # Errors
    /// When the sink does not report, or reports an error.
    pub fn finish(mut self, wait: Duration) -> Result<SinkReport, SinkError> {
        let _ = self.control.get_ref().set_read_timeout(Some(wait));
        let answer = read_answer(&mut self.control, &self.addr)?;
        if let Some(e) = answer.get("error") {
            return Err(SinkError::Protocol {
                addr: self.addr,
                what: format!("reported an error: {}", e.as_str().unwrap_or_default()),
            });
        }
        serde_json::from_value(answer).map_err(|e| SinkError::Protocol {
            addr: self.addr,
            what: format!("sent a report zcprof cannot read ({e})"),
        })
    }
}

fn send_hello(
    control: &mut BufReader<TcpStream>,
    hello: &Hello,
    addr: &str,
) -> Result<(), SinkError> {
    let line = serde_json::to_string(hello).unwrap_or_default();
    writeln!(control.get_mut(), "{line}").map_err(|source| SinkError::Connect {
        addr: addr.to_owned(),
        source,
    })
}

/// A sink's refusal in its own words, or the plain fact that this is no sink.
fn not_a_sink(addr: &str, answer: &serde_json::Value) -> SinkError {
    SinkError::Protocol {
        addr: addr.to_owned(),
        what: match answer.get("error").and_then(serde_json::Value::as_str) {
            Some(e) => format!("refused the run: {e}"),
            None => format!("is not a zcprof sink (it said {answer})"),
        },
    }
}

fn read_answer(
    control: &mut BufReader<TcpStream>,
    addr: &str,
) -> Result<serde_json::Value, SinkError> {
    let mut line = String::new();
    let protocol = |what: String| SinkError::Protocol {
        addr: addr.to_owned(),
        what,
    };
    // An answer is one short line; a stranger's stream of bytes is cut off.
    match control.take(1 << 16).read_line(&mut line) {
        Ok(0) => Err(protocol(
            "closed the connection without answering (is it a zcprof sink?)".to_owned(),
        )),
        Ok(_) => serde_json::from_str(line.trim()).map_err(|_| {
            let said: String = line.trim().chars().take(80).collect();
            protocol(format!("is not a zcprof sink (it said {said:?})"))
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(protocol(
                "did not answer in time (is it a zcprof sink?)".to_owned(),
            ))
        }
        Err(e) => Err(protocol(format!("did not answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NEVER: AtomicBool = AtomicBool::new(false);

    /// A sink on a free loopback port serving `runs` runs, and its address once it answers.
    fn local_sink(runs: u64) -> (String, std::thread::JoinHandle<Result<Served, SinkError>>) {
        local_sink_with(runs, None)
    }

    /// `local_sink` taking runs only with `token`.
    fn local_sink_with(
        runs: u64,
        token: Option<Token>,
    ) -> (String, std::thread::JoinHandle<Result<Served, SinkError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let serve_addr = addr.clone();
        let server = std::thread::spawn(move || serve(&serve_addr, Some(runs), token, &NEVER));
        // The sink binds in its thread: retry until it answers.
        for _ in 0..200 {
            if probe(&addr).is_ok() {
                return (addr, server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the sink at {addr} never answered");
    }

    fn send(remote: &Remote, stream: usize, bytes: usize) {
        let mut s = TcpStream::connect(remote.peer).unwrap();
        s.write_all(Remote::data_hello(&remote.token, stream).as_bytes())
            .unwrap();
        s.write_all(&vec![1u8; bytes]).unwrap();
    }

    #[test]
    fn a_run_through_a_local_sink() {
        let (addr, server) = local_sink(1);
        let probed = probe(&addr).unwrap();
        assert_eq!(probed.peer.to_string(), addr);
        assert!(probed.local.ip().is_loopback());
        let remote = Remote::open(&addr, 2, 1000, None).unwrap();
        send(&remote, 0, 1000);
        send(&remote, 1, 1000);
        let report = remote.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(report.received, vec![1000, 1000]);
        assert!(report.reads >= 2);
        assert!(!report.kernel.is_empty());
        assert_eq!(
            server.join().unwrap().unwrap(),
            Served { runs: 1, failed: 0 }
        );
    }

    #[test]
    fn a_short_stream_is_reported_as_it_arrived() {
        let (addr, server) = local_sink(1);
        let remote = Remote::open(&addr, 1, 1000, None).unwrap();
        send(&remote, 0, 995);
        let report = remote.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(report.received, vec![995]);
        assert_eq!(
            server.join().unwrap().unwrap(),
            Served { runs: 1, failed: 1 }
        );
    }

    #[test]
    fn a_sender_that_leaves_abandons_its_run() {
        let (addr, server) = local_sink(1);
        let remote = Remote::open(&addr, 2, 1000, None).unwrap();
        // One stream connects and stays open; then the sender goes away.
        let mut s = TcpStream::connect(remote.peer).unwrap();
        s.write_all(Remote::data_hello(&remote.token, 0).as_bytes())
            .unwrap();
        drop(remote);
        // The sink notices within its poll period, not after a stream timeout.
        let started = Instant::now();
        assert_eq!(
            server.join().unwrap().unwrap(),
            Served { runs: 1, failed: 1 }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(s);
    }

    /// issue 27, item 4: a stranger's hello, then nothing, ended `zcprof sink --runs 1` (exit
    /// 1), and the real run then found no sink.
    #[test]
    fn a_hello_without_streams_is_not_a_run() {
        let (addr, server) = local_sink(1);
        let stranger = Remote::open(&addr, 1, 1000, None).unwrap();
        drop(stranger);
        // Past the sink's poll period: it has noticed the stranger left.
        std::thread::sleep(POLL * 3);
        let remote = Remote::open(&addr, 1, 1000, None).expect("the sink is still there");
        send(&remote, 0, 1000);
        let report = remote.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(report.received, vec![1000]);
        assert_eq!(
            server.join().unwrap().unwrap(),
            Served { runs: 1, failed: 0 }
        );
    }

    /// issue 27: with `--token-file`, a run without the sink's token, or with another, is
    /// refused and not counted; the run with it is served.
    #[test]
    fn a_sink_with_a_token_serves_only_runs_that_carry_it() {
        let dir = std::env::temp_dir().join(format!("zcprof-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
        std::fs::write(&ours, "s3cret-token\n").unwrap();
        std::fs::write(&theirs, "s3cret-tokeN\n").unwrap();
        let (ours, theirs) = (Token::read(&ours).unwrap(), Token::read(&theirs).unwrap());
        let (addr, server) = local_sink_with(1, Some(ours.clone()));
        for (offered, said) in [
            (None, "takes runs only with its token"),
            (Some(&theirs), "its token is not this sink's"),
        ] {
            let err = Remote::open(&addr, 1, 1000, offered)
                .err()
                .expect("refused");
            assert!(err.to_string().contains(said), "{err}");
        }
        let remote = Remote::open(&addr, 1, 1000, Some(&ours)).expect("admitted");
        send(&remote, 0, 1000);
        assert_eq!(
            remote.finish(Duration::from_secs(10)).unwrap().received,
            vec![1000]
        );
        assert_eq!(
            server.join().unwrap().unwrap(),
            Served { runs: 1, failed: 0 }
        );
        std::fs::write(dir.join("empty"), "\n  \n").unwrap();
        let err = Token::read(&dir.join("empty")).unwrap_err().to_string();
        assert!(err.contains("holds no token"), "{err}");
        assert!(Token::read(&dir.join("missing")).is_err());
        assert_eq!(format!("{ours:?}"), "Token(..)");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_runs_and_streams_are_refused() {
        let (addr, _server) = local_sink(100);
        let err = Remote::open(&addr, 0, 10, None).err().expect("refused");
        assert!(err.to_string().contains("refused the run"), "{err}");
        let err = Remote::open(&addr, 1_000_000_000_000, 10, None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("1 to 64 streams"), "{err}");
        // A stream number twice: the second is turned away, the first still counts.
        let remote = Remote::open(&addr, 1, 10, None).unwrap();
        send(&remote, 0, 10);
        // Best effort: the sink may close the duplicate before it is written, or (on a loaded
        // machine) the connection may not be taken at all; either way it must not count.
        if let Ok(mut again) = TcpStream::connect(remote.peer) {
            let _ = again.write_all(Remote::data_hello(&remote.token, 0).as_bytes());
            let _ = again.write_all(&[1u8; 10]);
        }
        let report = remote.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(report.received, vec![10]);
    }

    #[test]
    fn something_that_is_not_a_sink_is_named_so() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(c.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").unwrap();
        });
        let err = probe(&addr).expect_err("refused");
        assert!(err.to_string().contains("is not a zcprof sink"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn nobody_listening_is_named_so() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = probe(&addr).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot reach the sink at {addr}")),
            "{err}"
        );
    }

    #[test]
    fn a_port_in_use_cannot_be_listened_on() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let err = serve(&addr, Some(1), None, &NEVER).expect_err("in use");
        assert!(err.to_string().starts_with("cannot listen on"), "{err}");
    }

    #[test]
    fn stop_ends_the_sink() {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let server = std::thread::spawn(move || serve("127.0.0.1:0", None, None, &flag));
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        assert_eq!(server.join().unwrap().unwrap(), Served::default());
    }
}
