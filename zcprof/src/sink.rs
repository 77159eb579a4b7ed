//! The remote receiver: `zcprof sink` drains the streams of a `run`/`compare --to` on another
//! host (or network namespace), checks their byte counts and reports its own costs back, so the
//! receiving side is measured apart from the sender and a real NIC can carry the transfer.
//!
//! One TCP port carries everything, as lines of JSON before any payload:
//! - the sender's zcprof opens a control connection and says `{"zcprof":"run","streams":N,
//!   "bytes":B}`; the sink answers `{"token":"..."}` (or `{"error":"..."}`);
//! - each data stream (opened by the measured transfer process before its measured window) starts
//!   with `{"zcprof":"data","token":"...","stream":I}` and then carries the payload to its end;
//! - when every stream of the token has ended, the sink writes its `SinkReport` on the control
//!   connection and closes it.
//!
//! The sink needs no privileges: its costs are what its `read()` calls returned (each byte read
//! from a socket is a CPU copy socket buffer -> user buffer) and `getrusage(RUSAGE_THREAD)` of the
//! threads that drained the streams.
use std::{
    collections::HashMap,
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

/// Errors of the sink and of a sender talking to it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("cannot reach the sink at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("the sink at {addr} {what}")]
    Protocol { addr: String, what: String },
}

/// The first line of a connection to the sink.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "zcprof", rename_all = "snake_case")]
enum Hello {
    Run { streams: usize, bytes: u64 },
    Data { token: String, stream: usize },
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
    /// From the first stream's start to the last stream's end, on the sink's clock.
    pub elapsed_ns: u64,
    /// The sink host's kernel release.
    pub kernel: String,
}

/// One run the sink is serving: what arrived so far.
#[derive(Default)]
struct RunState {
    streams: usize,
    done: usize,
    report: SinkReport,
    started: Option<Instant>,
}

type Runs = Arc<(Mutex<HashMap<String, RunState>>, Condvar)>;

/// How long the sink waits for a run's streams before it gives up on it.
const STREAM_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves runs on `addr` until `runs` runs were served (`None`: forever, until Ctrl-C).
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(addr: &str, runs_to_serve: Option<u64>) -> Result<(), SinkError> {
    let listener = TcpListener::bind(addr).map_err(|source| SinkError::Listen {
        addr: addr.to_owned(),
        source,
    })?;
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_owned(), |a| a.to_string());
    eprintln!("zcprof sink: listening on {local}");
    let runs: Runs = Arc::new((Mutex::new(HashMap::new()), Condvar::new()));
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Non-blocking accepts, so that a sink told to serve N runs notices the last one ended.
    listener
        .set_nonblocking(true)
        .map_err(|source| SinkError::Listen {
            addr: addr.to_owned(),
            source,
        })?;
    let mut handles: Vec<std::thread::JoinHandle<()>> = Vec::new();
    loop {
        if runs_to_serve
            .is_some_and(|limit| served.load(std::sync::atomic::Ordering::SeqCst) >= limit)
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
                eprintln!("zcprof sink: accept: {e}");
                continue;
            }
        };
        let _ = conn.set_nonblocking(false);
        let (runs, served) = (Arc::clone(&runs), Arc::clone(&served));
        handles.push(std::thread::spawn(move || {
            let peer = conn
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            match connection(conn, &runs) {
                Ok(Some(report)) => {
                    eprintln!(
                        "zcprof sink: run from {peer}: received {:?} in {} reads",
                        report.received, report.reads
                    );
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(None) => {}
                Err(e) => eprintln!("zcprof sink: {peer}: {e}"),
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// Serves one connection: a run's control connection (returns the run's report once its streams
/// ended) or one of its data streams.
fn connection(conn: TcpStream, runs: &Runs) -> io::Result<Option<SinkReport>> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let hello: Hello = serde_json::from_str(line.trim())
        .map_err(|e| io::Error::other(format!("not a zcprof sender ({e})")))?;
    match hello {
        Hello::Run { streams, bytes } => control(conn, runs, streams, bytes).map(Some),
        Hello::Data { token, stream } => {
            data(reader, runs, &token, stream)?;
            Ok(None)
        }
    }
}

fn control(mut conn: TcpStream, runs: &Runs, streams: usize, bytes: u64) -> io::Result<SinkReport> {
    let token = format!(
        "{:x}{:x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(rand_u64())
    );
    {
        let (lock, _) = &**runs;
        let mut map = lock.lock().map_err(|_| io::Error::other("lock"))?;
        map.insert(
            token.clone(),
            RunState {
                streams,
                report: SinkReport {
                    received: vec![0; streams],
                    kernel: kernel_release(),
                    ..SinkReport::default()
                },
                ..RunState::default()
            },
        );
    }
    let _ = bytes;
    writeln!(conn, "{}", serde_json::json!({ "token": token }))?;
    let (lock, cvar) = &**runs;
    let map = lock.lock().map_err(|_| io::Error::other("lock"))?;
    let (mut map, timeout) = cvar
        .wait_timeout_while(map, STREAM_TIMEOUT, |m| {
            m.get(&token).is_some_and(|r| r.done < r.streams)
        })
        .map_err(|_| io::Error::other("lock"))?;
    let state = map.remove(&token).unwrap_or_default();
    drop(map);
    if timeout.timed_out() {
        let msg = serde_json::json!({ "error": format!("only {} of {} streams ended", state.done, state.streams) });
        writeln!(conn, "{msg}")?;
        return Err(io::Error::other("streams timed out"));
    }
    writeln!(conn, "{}", serde_json::to_string(&state.report)?)?;
    Ok(state.report)
}

fn data(
    mut reader: BufReader<TcpStream>,
    runs: &Runs,
    token: &str,
    stream: usize,
) -> io::Result<()> {
    let (lock, cvar) = &**runs;
    {
        let mut map = lock.lock().map_err(|_| io::Error::other("lock"))?;
        let state = map
            .get_mut(token)
            .ok_or_else(|| io::Error::other("data for an unknown run"))?;
        if stream >= state.streams {
            return Err(io::Error::other("stream number out of range"));
        }
        state.started.get_or_insert_with(Instant::now);
    }
    let before = thread_usage();
    // What the header line's reader buffered already belongs to the payload.
    let mut total = reader.buffer().len() as u64;
    let mut reads = u64::from(total > 0);
    reader.consume(reader.buffer().len());
    let mut conn = reader.into_inner();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                reads += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let after = thread_usage();
    let mut map = lock.lock().map_err(|_| io::Error::other("lock"))?;
    if let Some(state) = map.get_mut(token) {
        let r = &mut state.report;
        r.received[stream] = total;
        r.reads += reads;
        r.user_ns += after.0.saturating_sub(before.0);
        r.system_ns += after.1.saturating_sub(before.1);
        r.voluntary_switches += after.2.saturating_sub(before.2);
        r.involuntary_switches += after.3.saturating_sub(before.3);
        state.done += 1;
        if state.done == state.streams {
            r.elapsed_ns = state.started.map_or(0, |s| {
                u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX)
            });
        }
    }
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

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // A token only keeps concurrent runs apart; the clock would do, getrandom is simpler.
    // SAFETY: valid buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u64::from_le_bytes(b)
}

/// The sender's side of a run: the control connection, open while the transfer runs.
pub struct Remote {
    addr: String,
    control: BufReader<TcpStream>,
    /// Sent by the transfer process as the first line of each stream.
    pub token: String,
    /// The resolved address the streams connect to.
    pub peer: SocketAddr,
}

/// How long a sender waits to connect, and for the sink's answers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Remote {
    /// Opens a run of `streams` streams of `bytes` each at the sink on `addr` (`HOST:PORT`).
    ///
    /// # Errors
    /// When the sink cannot be reached or does not answer as a sink.
    pub fn open(addr: &str, streams: usize, bytes: u64) -> Result<Remote, SinkError> {
        use std::net::ToSocketAddrs as _;
        let connect = |source| SinkError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let peer = addr
            .to_socket_addrs()
            .map_err(connect)?
            .next()
            .ok_or_else(|| connect(io::Error::other("the name resolves to no address")))?;
        let stream = TcpStream::connect_timeout(&peer, CONNECT_TIMEOUT).map_err(connect)?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(connect)?;
        let mut control = BufReader::new(stream);
        let hello = serde_json::to_string(&Hello::Run { streams, bytes }).unwrap_or_default();
        writeln!(control.get_mut(), "{hello}").map_err(connect)?;
        let answer = read_answer(&mut control, addr)?;
        let token =
            answer["token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| SinkError::Protocol {
                    addr: addr.to_owned(),
                    what: format!("refused the run: {}", answer["error"]),
                })?;
        Ok(Remote {
            addr: addr.to_owned(),
            control,
            token,
            peer,
        })
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

    /// Waits for the sink's report after every stream was closed.
    ///
    /// # Errors
    /// When the sink does not report, or reports an error.
    pub fn finish(mut self, wait: Duration) -> Result<SinkReport, SinkError> {
        let _ = self.control.get_ref().set_read_timeout(Some(wait));
        let answer = read_answer(&mut self.control, &self.addr)?;
        if let Some(e) = answer.get("error") {
            return Err(SinkError::Protocol {
                addr: self.addr,
                what: format!("reported an error: {e}"),
            });
        }
        serde_json::from_value(answer).map_err(|e| SinkError::Protocol {
            addr: self.addr,
            what: format!("sent a report zcprof cannot read ({e})"),
        })
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
    match control.read_line(&mut line) {
        Ok(0) => Err(protocol(
            "closed the connection without answering".to_owned(),
        )),
        Ok(_) => serde_json::from_str(line.trim())
            .map_err(|_| protocol(format!("is not a zcprof sink (it said {:?})", line.trim()))),
        Err(e) => Err(protocol(format!("did not answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_through_a_local_sink() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let serve_addr = addr.clone();
        let server = std::thread::spawn(move || serve(&serve_addr, Some(1)));
        // The sink binds in its thread: retry until it listens.
        let mut remote = None;
        for _ in 0..100 {
            if let Ok(r) = Remote::open(&addr, 2, 1000) {
                remote = Some(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let remote = remote.expect("the sink answers");
        for stream in 0..2 {
            let mut s = TcpStream::connect(remote.peer).unwrap();
            s.write_all(Remote::data_hello(&remote.token, stream).as_bytes())
                .unwrap();
            s.write_all(&vec![1u8; 1000 + stream * 5]).unwrap();
        }
        let report = remote.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(report.received, vec![1000, 1005]);
        assert!(report.reads >= 2);
        server.join().unwrap().unwrap();
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
        let err = Remote::open(&addr, 1, 10).err().expect("refused");
        assert!(err.to_string().contains("is not a zcprof sink"), "{err}");
        server.join().unwrap();
    }
}
