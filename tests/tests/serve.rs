//! `zcprof serve` end to end: Debian's real Prometheus scrapes `zcprof serve --comm nginx` while
//! nginx serves a 12 MiB file three times, and Prometheus's HTTP API must show the bytes the
//! sockets took by reference (sendfile on) or copied (sendfile off). Nothing outlives a test:
//! nginx, Prometheus and zcprof are children stopped on drop, the directory is removed.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use zcprof_tests::{
    privileged, scratch_dir, serve_programs, skip, zcprof_bin, zcprof_programs_loaded,
};

const FILE_SIZE: u64 = 12 << 20;
const FETCHES: u64 = 3;
/// The bytes nginx sends: three times 12 MiB.
const TOTAL: f64 = 37_748_736.0;
/// What "almost nothing" is: the HTTP headers of three responses and then some.
const ALMOST_NOTHING: f64 = 64.0 * 1024.0;

/// A child stopped with SIGTERM (nginx stops its workers, Prometheus flushes, zcprof detaches)
/// and reaped on drop, whether the test passes or panics.
struct Stop(Child);

impl Stop {
    fn term(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.term();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test's directory, removed on drop (after the children, declared after it, are stopped).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `url` with curl; the body, or None while nothing answers.
fn get(url: &str, query: Option<&str>) -> Option<String> {
    get_with(url, query, &[])
}

/// GET `url` with curl and `extra` arguments (a CA, a user).
fn get_with(url: &str, query: Option<&str>, extra: &[String]) -> Option<String> {
    let mut c = Command::new("curl");
    c.args(["-sf", "--max-time", "5"]).args(extra);
    if let Some(q) = query {
        c.args(["-G", "--data-urlencode"]).arg(format!("query={q}"));
    }
    let out = c.arg(url).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `f` every 200 ms until it gives something or `secs` pass.
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of an instant query through Prometheus's HTTP API (None: no series yet).
fn query(prometheus: u16, q: &str) -> Option<f64> {
    let body = get(
        &format!("http://127.0.0.1:{prometheus}/api/v1/query"),
        Some(q),
    )?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// Waits until serve answers on `port`. False, after saying why on stderr, when it ended
/// because this kernel lacks a hook it cannot count sends without (older kernels: the test is
/// for what they cannot do); a panic when it ended for another reason or never answered.
fn serve_ready(test: &str, serve: &mut Stop, port: u16, log: &Path) -> bool {
    serve_ready_with(test, serve, &Secure::plain(port), log)
}

fn serve_ready_with(test: &str, serve: &mut Stop, at: &Secure, log: &Path) -> bool {
    let ready = wait_for(30, || {
        if let Ok(Some(_)) = serve.0.try_wait() {
            return Some(false);
        }
        get_with(&at.metrics(), None, &at.curl)
            .filter(|m| m.contains("zcprof_up 1"))
            .map(|_| true)
    });
    let written = std::fs::read_to_string(log).unwrap_or_default();
    match ready {
        Some(true) => true,
        Some(false) if written.contains("does not attach on this kernel") => {
            skip(test, written.trim());
            false
        }
        _ => panic!("zcprof serve did not start: {written}"),
    }
}

fn missing_tools() -> Option<&'static str> {
    for (tool, arg) in [
        ("prometheus", "--version"),
        ("nginx", "-v"),
        ("curl", "--version"),
    ] {
        if Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some(tool);
        }
    }
    None
}

fn spawn(cmd: &mut Command, log: &Path) -> Stop {
    let log = std::fs::File::create(log).unwrap();
    Stop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// How to reach serve: plain HTTP, or TLS with a certificate and a password made for the test
/// (`--web.config.file`).
struct Secure {
    port: u16,
    /// curl's arguments for it: the CA and the user.
    curl: Vec<String>,
    /// Prometheus's scrape settings for it.
    scrape: String,
    /// serve's arguments for it.
    serve: Vec<String>,
}

impl Secure {
    const USER: &str = "prometheus";
    const PASSWORD: &str = "s3cret-for-the-test";

    fn plain(port: u16) -> Secure {
        Secure {
            port,
            curl: Vec::new(),
            scrape: String::new(),
            serve: Vec::new(),
        }
    }

    /// A self-signed certificate for 127.0.0.1, its key, and a web config naming them and a
    /// user with a bcrypt hash, written in `dir`.
    fn tls(dir: &Path, port: u16) -> Secure {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("a certificate");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
        let hash = bcrypt::hash(Self::PASSWORD, 6).unwrap();
        std::fs::write(
            dir.join("web.yml"),
            format!(
                "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n\
                 basic_auth_users:\n  {}: {hash}\n",
                Self::USER
            ),
        )
        .unwrap();
        let ca = dir.join("cert.pem").display().to_string();
        Secure {
            port,
            curl: vec![
                "--cacert".to_owned(),
                ca.clone(),
                "-u".to_owned(),
                format!("{}:{}", Self::USER, Self::PASSWORD),
            ],
            scrape: format!(
                "    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      \
                 username: {}\n      password: {}\n",
                Self::USER,
                Self::PASSWORD
            ),
            serve: vec![
                "--web.config.file".to_owned(),
                dir.join("web.yml").display().to_string(),
            ],
        }
    }

    fn metrics(&self) -> String {
        let scheme = if self.curl.is_empty() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://127.0.0.1:{}/metrics", self.port)
    }
}

/// The three children of a test and their ports.
struct Stack {
    serve: Stop,
    prometheus: Stop,
    nginx: Stop,
    prom_port: u16,
    nginx_port: u16,
    at: Secure,
}

/// Starts `zcprof serve --comm nginx`, Prometheus scraping it every second, and nginx serving
/// `dir`/www with sendfile on or off, each logging to a file in `dir`.
fn start(dir: &Scratch, sendfile: bool, tls: bool) -> Stack {
    let d = dir.0.display().to_string();
    std::fs::create_dir_all(dir.0.join("www")).unwrap();
    std::fs::write(
        dir.0.join("www/file.bin"),
        vec![7u8; usize::try_from(FILE_SIZE).unwrap()],
    )
    .unwrap();
    let (serve_port, prom_port, nginx_port) = (free_port(), free_port(), free_port());
    let at = if tls {
        Secure::tls(&dir.0, serve_port)
    } else {
        Secure::plain(serve_port)
    };
    let serve = spawn(
        Command::new(zcprof_bin())
            .args([
                "serve",
                "--comm",
                "nginx",
                "--listen",
                &format!("127.0.0.1:{serve_port}"),
            ])
            .args(&at.serve),
        &dir.0.join("serve.log"),
    );
    std::fs::write(
        dir.0.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - \
             job_name: zcprof\n{}    static_configs:\n      - targets: ['127.0.0.1:{serve_port}']\n",
            at.scrape
        ),
    )
    .unwrap();
    let prometheus = spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={d}/prometheus.yml"))
            .arg(format!("--storage.tsdb.path={d}/data"))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &dir.0.join("prometheus.log"),
    );
    std::fs::write(
        dir.0.join("nginx.conf"),
        format!(
            "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; \
             error_log {d}/error.log;
events {{}}
http {{
  access_log off; sendfile {}; tcp_nopush off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{nginx_port}; root {d}/www; }}
}}
",
            if sendfile { "on" } else { "off" }
        ),
    )
    .unwrap();
    let nginx = spawn(
        Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf")),
        &dir.0.join("nginx.log"),
    );
    Stack {
        serve,
        prometheus,
        nginx,
        prom_port,
        nginx_port,
        at,
    }
}

/// Starts serve, Prometheus and nginx, fetches the file three times, and returns the bytes
/// nginx's sockets took (by reference, copied) as Prometheus read them.
fn serve_nginx(test: &str, sendfile: bool, tls: bool) -> Option<(f64, f64)> {
    if !privileged(test) {
        return None;
    }
    if let Some(tool) = missing_tools() {
        skip(
            test,
            &format!("{tool} is not installed (cargo xtask test installs it as root)"),
        );
        return None;
    }
    let dir = Scratch(scratch_dir(test, env!("CARGO_TARGET_TMPDIR")));
    let Stack {
        serve,
        prometheus,
        nginx,
        prom_port,
        nginx_port,
        at,
    } = start(&dir, sendfile, tls);
    let log = |name: &str| std::fs::read_to_string(dir.0.join(name)).unwrap_or_default();
    let mut serve = serve;
    if !serve_ready_with(test, &mut serve, &at, &dir.0.join("serve.log")) {
        return None;
    }
    if tls {
        refuses_strangers(&at);
    }

    // Prometheus has scraped serve once its up series is 1.
    let up = wait_for(60, || query(prom_port, "zcprof_up").filter(|&v| v > 0.5));
    assert!(
        up.is_some(),
        "Prometheus never scraped zcprof serve; serve: {}; prometheus: {}",
        log("serve.log"),
        log("prometheus.log")
    );
    assert!(
        wait_for(10, || std::net::TcpStream::connect((
            "127.0.0.1",
            nginx_port
        ))
        .ok())
        .is_some(),
        "nginx does not answer: {}",
        log("nginx.log")
    );
    for _ in 0..FETCHES {
        let curl = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
            .arg(format!("http://127.0.0.1:{nginx_port}/file.bin"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&curl.stdout),
            FILE_SIZE.to_string(),
            "curl got the whole file"
        );
    }
    let total = TOTAL;
    let how = if sendfile { "by_reference" } else { "copied" };
    let main = format!("sum(zcprof_socket_send_bytes_total{{comm=\"nginx\",how=\"{how}\"}})");
    let reached = wait_for(30, || query(prom_port, &main).filter(|&v| v >= 0.9 * total));
    // Two more scrapes, so the other series has everything too.
    std::thread::sleep(Duration::from_millis(2500));
    let by_reference = query(
        prom_port,
        "sum(zcprof_socket_send_bytes_total{comm=\"nginx\",how=\"by_reference\"})",
    )
    .unwrap_or(0.0);
    let copied = query(
        prom_port,
        "sum(zcprof_socket_send_bytes_total{comm=\"nginx\",how=\"copied\"})",
    )
    .unwrap_or(0.0);
    assert!(
        reached.is_some(),
        "{how} never reached 0.9 x {total} B: by reference {by_reference}, copied {copied}; \
         metrics: {}",
        get_with(&at.metrics(), None, &at.curl).unwrap_or_default()
    );
    eprintln!(
        "{test}: Prometheus read by_reference {by_reference} B, copied {copied} B of {total} B"
    );

    drop(nginx);
    drop(prometheus);
    ends_on_sigterm(serve, &dir.0.join("serve.log"));
    Some((by_reference, copied))
}

/// SIGTERM detaches everything and ends serve with status 0, no program left loaded.
fn ends_on_sigterm(mut serve: Stop, log: &Path) {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    serve.term();
    let status = wait_for(10, || serve.0.try_wait().ok().flatten());
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "serve after SIGTERM: {}",
        log()
    );
    assert!(log().contains("programs detached"));
    // The kernel frees a program a moment after its last descriptor closes.
    let left = wait_for(5, || {
        let left = zcprof_programs_loaded(&serve_programs());
        left.is_empty().then_some(left)
    });
    assert_eq!(
        left,
        Some(Vec::new()),
        "no serve program is left loaded: {:?}",
        zcprof_programs_loaded(&serve_programs())
    );
}

/// serve with `--web.config.file` refuses plain HTTP, an unknown CA and a missing or wrong
/// password; curl with the CA and the password gets the metrics.
fn refuses_strangers(at: &Secure) {
    let status = |extra: &[&str], url: &str| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (ca, https) = (at.curl[1].as_str(), at.metrics());
    let http = https.replacen("https", "http", 1);
    assert_eq!(status(&[], &http), "000", "plain HTTP is no TLS handshake");
    assert_eq!(status(&[], &https), "000", "a certificate from no known CA");
    assert_eq!(status(&["--cacert", ca], &https), "401");
    let wrong = format!("{}:wrong", Secure::USER);
    assert_eq!(status(&["--cacert", ca, "-u", &wrong], &https), "401");
    let right = at.curl.iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(status(&right, &https), "200");
}

/// Prometheus scrapes serve over TLS with a password here (the plain case is the next test).
#[test]
fn prometheus_sees_nginx_sendfile_by_reference() {
    let Some((by_reference, copied)) = serve_nginx("serve_sendfile_on", true, true) else {
        return;
    };
    let total = TOTAL;
    assert!(by_reference >= 0.9 * total, "by reference {by_reference}");
    assert!(copied < ALMOST_NOTHING, "copied {copied}");
}

#[test]
fn prometheus_sees_nginx_without_sendfile_copy() {
    let Some((by_reference, copied)) = serve_nginx("serve_sendfile_off", false, false) else {
        return;
    };
    let total = TOTAL;
    assert!(copied >= 0.9 * total, "copied {copied}");
    assert!(by_reference < ALMOST_NOTHING, "by reference {by_reference}");
}

/// A name whose tasks have all exited is shown once more, with its final totals, then dropped.
#[test]
fn an_exited_name_is_shown_once_more_then_dropped() {
    use std::io::Write as _;
    const SENT: usize = 1 << 20;
    if !privileged("serve_exit") {
        return;
    }
    let dir = Scratch(scratch_dir("serve_exit", env!("CARGO_TARGET_TMPDIR")));
    let port = free_port();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let serve = spawn(
        Command::new(zcprof_bin()).args([
            "serve",
            "--comm",
            "zcpgone",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]),
        &dir.0.join("serve.log"),
    );
    let mut serve = serve;
    if !serve_ready("serve_exit", &mut serve, port, &dir.0.join("serve.log")) {
        return;
    }
    // A thread named zcpgone sends 1 MiB over loopback and ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::io::copy(&mut s, &mut std::io::sink()).unwrap()
    });
    std::thread::Builder::new()
        .name("zcpgone".to_owned())
        .spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(&vec![1u8; SENT]).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(reader.join().unwrap(), SENT as u64);
    let first = get(&metrics, None).unwrap();
    assert!(
        first.contains(&format!(
            "zcprof_socket_send_bytes_total{{comm=\"zcpgone\",how=\"copied\"}} {SENT}"
        )),
        "the exited name's final totals: {first}"
    );
    let second = get(&metrics, None).unwrap();
    assert!(
        !second.contains("zcpgone"),
        "dropped at the next scrape: {second}"
    );
    drop(serve);
}

/// The RSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Everything a connection gets until serve closes it or `secs` pass (None: still open).
fn until_closed(s: &mut std::net::TcpStream, secs: u64) -> Option<String> {
    use std::io::Read as _;
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&got).into_owned())
        }
        Err(_) => None,
    }
}

/// Hostile clients against the real serve under systemd's default descriptor limit (1024):
/// 2,000 idle connections, a `Content-Length` of 64 GB, slow and oversized headers, an HTTP/2
/// preface, a POST. Throughout and after, a normal scrape is answered, serve stays up with
/// bounded memory, and the idle connections are closed by the configured timeout. The previous
/// server (`tiny_http`) aborted at the first request and stopped accepting for good at the
/// second.
#[test]
fn hostile_clients_neither_abort_nor_wedge_serve() {
    use std::io::Write as _;
    if !privileged("serve_hostile") {
        return;
    }
    if Command::new("curl").arg("--version").output().is_err() {
        skip("serve_hostile", "curl is not installed");
        return;
    }
    // This test holds 2,000 connections itself.
    let limit = libc::rlimit {
        rlim_cur: 8192,
        rlim_max: 8192,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) },
        0
    );
    let dir = Scratch(scratch_dir("serve_hostile", env!("CARGO_TARGET_TMPDIR")));
    let port = free_port();
    let log = dir.0.join("serve.log");
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let mut serve = spawn(
        Command::new("sh").args([
            "-c",
            &format!(
                "ulimit -n 1024 && exec {} serve --comm zcphostile --listen 127.0.0.1:{port} \
                 --idle-timeout 3s",
                zcprof_bin().display()
            ),
        ]),
        &log,
    );
    if !serve_ready("serve_hostile", &mut serve, port, &log) {
        return;
    }
    let pid = serve.0.id();
    let rss_before = rss_kib(pid);
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let scrape = |when: &str| {
        let body = get(&metrics, None).unwrap_or_else(|| {
            panic!(
                "{when}: no answer to a scrape: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert!(body.contains("zcprof_up 1"), "{when}: {body}");
    };
    let mut idle: Vec<std::net::TcpStream> = (0..2000).map(|_| connect()).collect();
    scrape("with 2,000 idle connections");
    for request in [
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 64000000000\r\n\r\n".to_owned(),
        format!(
            "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        ),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "GET /metr".to_owned(),
    ] {
        let mut s = connect();
        // A write can fail when serve has closed first (the 1 MiB header): that is a refusal.
        let _ = s.write_all(request.as_bytes());
        let got = until_closed(&mut s, 15).expect("serve closes every hostile connection");
        let first = got.lines().next().unwrap_or("");
        if request.starts_with("POST") {
            assert!(first.starts_with("HTTP/1.1 405"), "{request:.40}: {got}");
        }
        scrape(&format!("after {:?}", &request[..request.len().min(40)]));
    }
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    // Every connection still open is closed by the 3 s timeout (or was replaced by a newer).
    let last = idle.last_mut().unwrap();
    assert!(
        until_closed(last, 10).is_some(),
        "an idle connection is closed within the timeout"
    );
    drop(idle);
    assert!(
        serve.0.try_wait().unwrap().is_none(),
        "serve is still running: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    scrape("after the idle connections went");
}
