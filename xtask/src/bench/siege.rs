//! Case 9 (issue 27's target: `zcprof serve` answers a normal scrape within 50 ms throughout a
//! siege of hostile clients and after it). serve runs as systemd would start it without the
//! unit's `LimitNOFILE` (`ulimit -n 1024`), with `--idle-timeout 3s`. The siege, threads of this
//! process running side by side: 2,000 idle connections held (each one serve closes is opened
//! again), 50 clients sending their headers a byte every 100 ms, and one client cycling through
//! a `Content-Length` of 64 GB, a 1 MiB header, an HTTP/2 preface, a POST and a request cut
//! short, a new connection each. The scrapes are case 8's: curl kept alive and curl with a new
//! connection each, timed by curl, before the siege, throughout it and after it. serve's RSS is
//! read before, at its highest during, and after.
#[allow(clippy::wildcard_imports)]
use super::*;

use std::{
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use super::scrape::{Client, fresh, kept_alive, quantile};
use super::serve::stop;

/// serve's address in this case.
const LISTEN: &str = "127.0.0.1:18467";
/// The idle connections the siege holds.
const IDLE: usize = 2000;
/// The clients sending their headers a byte at a time.
const SLOW: usize = 50;
/// Kept-alive scrapes per phase and repetition.
const KEPT: usize = 100;
/// Scrapes on a new connection each, per phase and repetition.
const FRESH: usize = 40;
/// The target: every scrape answered within this many milliseconds.
const TARGET_MS: f64 = 50.0;

/// When a series of scrapes was taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    Throughout,
    After,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Before, Phase::Throughout, Phase::After];

    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before the siege",
            Phase::Throughout => "throughout the siege",
            Phase::After => "after the siege",
        }
    }
}

/// Milliseconds per scrape, by phase and by client (kept alive, fresh), with the connections
/// opened; and serve's RSS in KiB before, at its highest and after.
#[derive(Default)]
struct Measured {
    times: BTreeMap<(usize, usize), Vec<f64>>,
    connects: BTreeMap<(usize, usize), usize>,
    held: Vec<usize>,
    rss: (u64, u64, u64),
}

pub(super) fn siege(bins: &Bins, dir: &Path, opts: &Options, results: &mut Results) -> Result<()> {
    if !have("curl") {
        eprintln!("bench: SKIPPING siege: curl is missing");
        return Ok(());
    }
    raise_descriptor_limit()?;
    let dir = dir.join("siege");
    std::fs::create_dir_all(&dir)?;
    let mut serve = start_serve(bins)?;
    let outcome = measure(&mut serve, opts.reps);
    let alive = matches!(serve.try_wait(), Ok(None));
    stop(&mut serve);
    let m = outcome?;
    if !alive {
        bail!("zcprof serve ended during the siege");
    }
    let (table, json, verdict) = summary(&m);
    results.sections.push((
        "9. Scrapes under a siege of hostile clients".into(),
        format!(
            "serve under `ulimit -n 1024` with `--idle-timeout 3s`; the siege: {IDLE} idle \
             connections held (median {held} open at once), {SLOW} clients sending headers a \
             byte every 100 ms, and one cycling through a 64 GB `Content-Length`, a 1 MiB \
             header, an HTTP/2 preface, a POST and a cut request. {KEPT} kept-alive scrapes and \
             {FRESH} on a new connection each, per phase, in each of {reps} repetitions; \
             milliseconds per request as curl times it, every request of a phase pooled. \
             serve's RSS: {} KiB before, {} KiB at most during, {} KiB after.\n\n{table}\n\
             {verdict}",
            m.rss.0,
            m.rss.1,
            m.rss.2,
            held = median_usize(&m.held),
            reps = opts.reps
        ),
    ));
    results.json.insert("siege".into(), json);
    Ok(())
}

/// The siege holds 2,000 connections itself.
fn raise_descriptor_limit() -> Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 8192,
        rlim_max: 8192,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
        bail!(
            "raising the descriptor limit to 8192: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// serve as systemd starts it without `LimitNOFILE`, answering.
fn start_serve(bins: &Bins) -> Result<Child> {
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -n 1024 && exec {} serve --comm zcpbenchnone --listen {LISTEN} \
                 --idle-timeout 3s",
                bins.zcprof.display()
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting zcprof serve")?;
    let start = Instant::now();
    while TcpStream::connect(LISTEN).is_err() {
        if start.elapsed() > Duration::from_secs(30) || matches!(child.try_wait(), Ok(Some(_))) {
            stop(&mut child);
            bail!("zcprof serve did not listen on {LISTEN}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

fn clients() -> [Client; 2] {
    let url = format!("http://{LISTEN}/metrics");
    [
        Client {
            name: "kept alive",
            url: url.clone(),
            curl: Vec::new(),
            kept_alive: true,
        },
        Client {
            name: "a new connection each",
            url,
            curl: Vec::new(),
            kept_alive: false,
        },
    ]
}

fn measure(serve: &mut Child, reps: usize) -> Result<Measured> {
    let mut m = Measured {
        rss: (rss_kib(serve.id()), 0, 0),
        ..Measured::default()
    };
    let clients = clients();
    for _ in 0..reps {
        for (p, phase) in Phase::ALL.into_iter().enumerate() {
            let siege = (phase == Phase::Throughout).then(Siege::start);
            if let Some(s) = &siege {
                s.wait_held(Duration::from_secs(20));
                m.held.push(s.held.load(Ordering::Relaxed));
            }
            for (c, client) in clients.iter().enumerate() {
                let (t, n) = if client.kept_alive {
                    kept_alive(client, KEPT)?
                } else {
                    fresh(client, FRESH)?
                };
                m.times.entry((p, c)).or_default().extend(t);
                *m.connects.entry((p, c)).or_default() += n;
            }
            if let Some(s) = siege {
                m.rss.1 = m.rss.1.max(rss_kib(serve.id()));
                s.end();
            }
            if matches!(serve.try_wait(), Ok(Some(_))) {
                bail!("zcprof serve ended {}", phase.name());
            }
        }
    }
    m.rss.2 = rss_kib(serve.id());
    Ok(m)
}

/// The hostile clients, each kind a thread, until `end`.
struct Siege {
    stop: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Siege {
    fn start() -> Siege {
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let threads = vec![
            {
                let (stop, held) = (stop.clone(), held.clone());
                std::thread::spawn(move || hold_idle(&stop, &held))
            },
            {
                let stop = stop.clone();
                std::thread::spawn(move || slow_headers(&stop))
            },
            {
                let stop = stop.clone();
                std::thread::spawn(move || malformed(&stop))
            },
        ];
        Siege {
            stop,
            held,
            threads,
        }
    }

    /// Until the idle connections are all open (or `limit` has passed).
    fn wait_held(&self, limit: Duration) {
        let start = Instant::now();
        while self.held.load(Ordering::Relaxed) < IDLE && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn end(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn connect() -> Option<TcpStream> {
    let addr = LISTEN.parse().ok()?;
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
}

/// Whether serve has closed `s` (a read returns end of file or an error).
fn closed(s: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    match s.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Holds `IDLE` connections that send nothing, opening again each one serve closes.
fn hold_idle(stop: &AtomicBool, held: &AtomicUsize) {
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    while !stop.load(Ordering::Relaxed) {
        idle.retain(|s| !closed(s));
        while idle.len() < IDLE && !stop.load(Ordering::Relaxed) {
            match connect() {
                Some(s) => idle.push(s),
                None => break,
            }
        }
        held.store(idle.len(), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `SLOW` clients each sending a request's head a byte every 100 ms, a new one when serve
/// closes one.
fn slow_headers(stop: &AtomicBool) {
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut slow: Vec<(TcpStream, usize)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        slow.retain_mut(|(s, sent)| {
            let byte = head.get(*sent).copied().unwrap_or(b'a');
            *sent += 1;
            s.write_all(&[byte]).is_ok()
        });
        while slow.len() < SLOW {
            match connect() {
                Some(s) => slow.push((s, 0)),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The malformed and oversized requests, one after another, each on a new connection, read
/// until serve closes it (at most 2 s each).
fn malformed(stop: &AtomicBool) {
    let big_header = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let requests = [
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 64000000000\r\n\r\n",
        big_header.as_str(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "GET /metr",
    ];
    for request in requests.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut s) = connect() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = s.write_all(request.as_bytes());
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

/// The RSS of `pid` in KiB (0 when it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median_usize(v: &[usize]) -> usize {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

fn summary(m: &Measured) -> (String, Value, String) {
    let clients = clients();
    let mut table =
        "| phase | scrapes | requests | connections opened | p50 ms | p99 ms | max ms |\n\
                     |---|---|---|---|---|---|---|\n"
            .to_owned();
    let mut json = serde_json::Map::new();
    let mut worst = 0.0f64;
    for (p, phase) in Phase::ALL.into_iter().enumerate() {
        for (c, client) in clients.iter().enumerate() {
            let times = m.times.get(&(p, c)).map_or(&[][..], Vec::as_slice);
            let connects = m.connects.get(&(p, c)).copied().unwrap_or(0);
            let (p50, p99, top) = (quantile(times, 500), quantile(times, 990), max(times));
            worst = worst.max(top);
            let _ = writeln!(
                table,
                "| {} | {} | {} | {connects} | {p50:.2} | {p99:.2} | {top:.2} |",
                phase.name(),
                client.name,
                times.len()
            );
            json.insert(
                format!("{}, {}", phase.name(), client.name),
                json!({ "requests": times.len(), "connections": connects, "p50_ms": p50,
                        "p99_ms": p99, "max_ms": top }),
            );
        }
    }
    json.insert(
        "rss_kib".into(),
        json!({ "before": m.rss.0, "highest_during": m.rss.1, "after": m.rss.2 }),
    );
    let verdict = format!(
        "- Target: every scrape answered within {TARGET_MS} ms, throughout the siege and \
         after: the slowest took {worst:.2} ms: {}.\n",
        if worst <= TARGET_MS { "met" } else { "NOT met" }
    );
    (table, Value::Object(json), verdict)
}
