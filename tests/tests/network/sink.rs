//! Privileged tests of `zcprof sink` and `--to`: a sink in a network namespace of the test's own,
//! at the far end of a veth pair, receives a measured transfer and reports back; a port nobody
//! listens on, a sink that reports a short count and `--to` with `--net veth` each end in one
//! line and a non-zero exit, with nothing left behind.
//!
//! Traffic goes only to loopback and to the namespace this test creates, inside 10.200.0.0/16.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, TcpListener},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use zcprof_tests::{privileged, processes_mentioning, run, scratch_dir, skip, zcprof_bin};

const SIZE: u64 = 8 << 20;

/// Whether this test can run here: root (eBPF) and iproute2's `ip`; says why not on stderr.
fn possible(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ip").is_file()));
    if !found {
        skip(test, "the sink's namespace needs iproute2's ip in PATH");
    }
    found
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS` whose failure does not matter (cleaning up what may be gone already).
fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A route of the host's main table (other than the default) that overlaps 10.200.0.0/16.
/// /proc/net/route prints addresses as the hex of their bytes in memory, read as a native u32.
fn route_into_10_200() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|n| u32::from(Ipv4Addr::from(n.to_ne_bytes())))
    };
    let ours = u32::from(Ipv4Addr::new(10, 200, 0, 0));
    routes.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, mask) = (addr(f.get(1)?)?, addr(f.get(7)?)?);
        (mask != 0 && (dest ^ ours) & mask & 0xffff_0000 == 0).then(|| line.to_owned())
    })
}

/// A network namespace with one end of a veth pair, the other end here, on a /30 derived from
/// the test's pid. Dropping it (also on panic) deletes the namespace, which takes the pair.
struct Namespace {
    name: String,
    host_link: String,
    host_addr: Ipv4Addr,
    sink_addr: Ipv4Addr,
}

impl Namespace {
    fn create() -> Namespace {
        let pid = std::process::id();
        // Each part is masked to fit its byte.
        let (c, d) = (
            u8::try_from((pid >> 6) & 255).unwrap(),
            u8::try_from((pid & 63) * 4).unwrap(),
        );
        let ns = Namespace {
            name: format!("zsk{pid}"),
            host_link: format!("zsk{pid}a"),
            host_addr: Ipv4Addr::new(10, 200, c, d + 1),
            sink_addr: Ipv4Addr::new(10, 200, c, d + 2),
        };
        let peer = format!("zsk{pid}b");
        // `ip netns add` makes its directory (/run/netns or /var/run/netns, as it was built) but
        // not its parents, which the VMs' initramfs lacks.
        for dir in ["/run/netns", "/var/run/netns"] {
            let _ = std::fs::create_dir_all(dir);
        }
        // Left over from a dead run with the same pid: start clean.
        ip_quiet(&["netns", "del", &ns.name]);
        ip_quiet(&["link", "del", &ns.host_link]);
        ip(&["netns", "add", &ns.name]);
        // From here on, dropping `ns` removes what exists.
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_link,
        ]);
        ip(&["link", "set", &ns.host_link, "up"]);
        let inside = ["-n", ns.name.as_str()];
        let sink_net = format!("{}/30", ns.sink_addr);
        for args in [
            &["addr", "add", &sink_net, "dev", &peer][..],
            &["link", "set", &peer, "up"],
            &["link", "set", "lo", "up"],
        ] {
            ip(&[&inside[..], args].concat());
        }
        ns
    }
}

/// Whether the namespace `name` or the link `link` is there.
fn still_there(name: &str, link: &str) -> bool {
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|n| n == name)
        });
    netns || ip_quiet(&["link", "show", link])
}

impl Drop for Namespace {
    fn drop(&mut self) {
        ip_quiet(&["netns", "del", &self.name]);
        // Deleting the namespace deletes the peer, and with it the host end; this is for a pair
        // whose peer never got there.
        ip_quiet(&["link", "del", &self.host_link]);
    }
}

/// A `zcprof sink` run in the namespace, killed if the test ends before it exits by itself.
struct Sink {
    child: Child,
    /// The rest of its stderr, once it exits.
    log: mpsc::Receiver<String>,
    addr: String,
}

impl Sink {
    fn start(ns: &Namespace, runs: u32) -> Sink {
        let addr = format!("{}:9465", ns.sink_addr);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(zcprof_bin())
            .args(["sink", "--listen", &addr, "--runs", &runs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec runs");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert_eq!(
            first.trim(),
            format!("zcprof sink: listening on {addr}"),
            "the sink's first words"
        );
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            let _ = tx.send(rest);
        });
        Sink { child, log, addr }
    }

    /// Waits up to `limit` for the sink to exit by itself; its status and log.
    fn wait(&mut self, limit: Duration) -> (Option<i32>, String) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self
                    .log
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                return (status.code(), log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sink did not exit within {limit:?} of its last run");
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn zcprof(args: &[&str], dir: &Path) -> Output {
    Command::new(zcprof_bin())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("zcprof runs")
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    text.trim_end().to_owned()
}

/// The directory is as empty as before the run, and no process works on it.
fn nothing_left(dir: &Path) {
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(
        files.is_empty(),
        "files left in {}: {files:?}",
        dir.display()
    );
    let procs = processes_mentioning(dir.to_str().unwrap());
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

fn json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Checks one run's report against the sink it went to.
fn check_remote_run(r: &Value, ns: &Namespace, sink: &str) {
    let method = r["method"].as_str().unwrap();
    let streams = if method == "tee" { 2 } else { 1 };
    assert_eq!(r["bytes"], SIZE, "{method}");
    assert_eq!(
        r["received"],
        serde_json::json!(vec![SIZE; streams]),
        "{method}"
    );
    let net = &r["net"];
    assert_eq!(net["kind"], "remote", "{net}");
    assert_eq!(net["device"], ns.host_link.as_str(), "{net}");
    assert_eq!(net["receiver"], sink, "{net}");
    assert!(net["scatter_gather"].is_boolean(), "{net}");
    // The sink's own copy, from its report, and nothing of zcprof's own process.
    let copies = r["receiver_copies"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["bytes"], SIZE * streams as u64, "{copies:?}");
    assert_eq!(copies[0]["evidence"], "reported", "{copies:?}");
    assert!(
        copies[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("(zcprof sink at {sink})")),
        "{copies:?}"
    );
    let report = &r["sink"];
    assert_eq!(report["received"], r["received"], "{report}");
    assert!(report["reads"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["elapsed_ns"].as_u64().unwrap() > 0, "{report}");
    // The packets left by the pair's host end: counted per device, a virtual one.
    let dev = r["devices"]["net"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == ns.host_link.as_str())
        .unwrap_or_else(|| panic!("no packets on {}: {}", ns.host_link, r["devices"]));
    assert!(
        dev["bytes"].as_u64().unwrap() >= SIZE * streams as u64,
        "{dev}"
    );
    assert_eq!(dev["physical"], false, "{dev}");
}

#[test]
fn a_sink_in_a_namespace_receives_verifies_and_reports() {
    if !possible("sink_in_a_namespace") {
        return;
    }
    if let Some(route) = route_into_10_200() {
        skip(
            "sink_in_a_namespace",
            &format!("this host routes into 10.200.0.0/16 already ({route}); not shadowing it"),
        );
        return;
    }
    let dir = scratch_dir("sink", env!("CARGO_TARGET_TMPDIR"));
    let ns = Namespace::create();
    {
        let mut sink = Sink::start(&ns, 1);
        let out = zcprof(
            &[
                "run",
                "--method",
                "sendfile",
                "--to",
                &sink.addr,
                "--size",
                "8M",
                "--block-size",
                "64K",
                "--format",
                "json",
            ],
            &dir,
        );
        let r = json(&out, "run --to");
        check_remote_run(&r, &ns, &sink.addr);
        let (status, log) = sink.wait(Duration::from_secs(10));
        assert_eq!(status, Some(0), "the sink's log: {log}");
        assert!(log.contains("every byte received"), "{log}");
    }
    {
        // compare: one run at the sink per method, tee's two streams included.
        let mut sink = Sink::start(&ns, 2);
        let out = zcprof(
            &[
                "compare",
                "--methods",
                "read-write,tee",
                "--to",
                &sink.addr,
                "--size",
                "8M",
                "--format",
                "json",
            ],
            &dir,
        );
        let r = json(&out, "compare --to");
        let runs = r["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{}", r["failed"]);
        for run in runs {
            check_remote_run(run, &ns, &sink.addr);
        }
        let (status, log) = sink.wait(Duration::from_secs(10));
        assert_eq!(status, Some(0), "the sink's log: {log}");
    }
    nothing_left(&dir);
    let (name, link) = (ns.name.clone(), ns.host_link.clone());
    drop(ns);
    assert!(
        !still_there(&name, &link),
        "the namespace or its pair outlived the test"
    );
}

#[test]
fn a_port_nobody_listens_on_is_one_line_and_leaves_nothing() {
    if !privileged("sink_nobody_listens") {
        return;
    }
    let dir = scratch_dir("sink-nobody", env!("CARGO_TARGET_TMPDIR"));
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = zcprof(
        &["run", "--method", "sendfile", "--to", &addr, "--size", "1M"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.contains(&format!("cannot reach the sink at {addr}")),
        "{line}"
    );
    nothing_left(&dir);
}

/// A sink of the test's own that speaks the protocol but reports `short` bytes fewer than it
/// received on stream 0.
fn fake_sink(short: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (counts_tx, counts_rx) = mpsc::channel::<u64>();
        let counts_rx = std::sync::Arc::new(std::sync::Mutex::new(counts_rx));
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (tx, rx) = (counts_tx.clone(), std::sync::Arc::clone(&counts_rx));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let hello: Value = serde_json::from_str(&line).unwrap();
                match hello["zcprof"].as_str().unwrap() {
                    "probe" => {
                        writeln!(conn, r#"{{"zcprof":"sink","version":"fake"}}"#).unwrap();
                    }
                    "run" => {
                        writeln!(conn, r#"{{"token":"fake"}}"#).unwrap();
                        let got = rx.lock().unwrap().recv().unwrap();
                        let report = serde_json::json!({
                            "received": [got - short],
                            "reads": 1, "user_ns": 0, "system_ns": 0,
                            "voluntary_switches": 0, "involuntary_switches": 0,
                            "elapsed_ns": 1, "kernel": "fake",
                        });
                        writeln!(conn, "{report}").unwrap();
                    }
                    _ => {
                        let mut sink = Vec::new();
                        let n = reader.read_to_end(&mut sink).unwrap_or(0);
                        tx.send(n as u64).unwrap();
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_sink_that_reports_a_short_count_fails_the_run() {
    if !privileged("sink_short") {
        return;
    }
    let dir = scratch_dir("sink-short", env!("CARGO_TARGET_TMPDIR"));
    let addr = fake_sink(4096);
    let out = zcprof(
        &[
            "run", "--method", "sendfile", "--to", &addr, "--size", "8M", "--format", "json",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no report for a failed run");
    let line = stderr_line(&out);
    assert!(
        line.contains(&format!(
            "the sink at {addr} received {} of {SIZE} bytes on stream 0",
            SIZE - 4096
        )),
        "{line}"
    );
    nothing_left(&dir);
}

#[test]
fn to_with_veth_is_refused_before_anything_starts() {
    for extra in [&["--net", "veth"][..], &["--sg", "off"]] {
        let mut args = vec!["run", "--method", "sendfile", "--to", "127.0.0.1:9"];
        args.extend(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let line = stderr_line(&out);
        assert!(
            line.contains("cannot be combined with --net veth or --sg"),
            "{line}"
        );
    }
}

/// issue 27: a sink started with `--token-file` refuses a run without that token in one line
/// (exit 1, nothing left) and does not count it; the same run with the token is served, and the
/// sink then ends after its one run with status 0.
#[test]
fn a_sink_with_a_token_file_serves_only_runs_that_carry_it() {
    if !privileged("sink_token") {
        return;
    }
    let dir = scratch_dir("sink-token", env!("CARGO_TARGET_TMPDIR"));
    let secrets = scratch_dir("sink-token-files", env!("CARGO_TARGET_TMPDIR"));
    let token = secrets.join("token");
    std::fs::write(&token, "a-shared-secret\n").unwrap();
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let mut sink = Command::new(zcprof_bin())
        .args(["sink", "--listen", &addr, "--runs", "1", "--token-file"])
        .arg(&token)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sink never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = ["run", "--method", "sendfile", "--size", "1M", "--to", &addr];
    let refused = zcprof(&run, &dir);
    assert_eq!(refused.status.code(), Some(1));
    let line = stderr_line(&refused);
    assert!(line.contains("takes runs only with its token"), "{line}");
    nothing_left(&dir);
    let token_arg = token.to_str().unwrap();
    let mut with_token = run.to_vec();
    with_token.extend(["--token-file", token_arg, "--format", "json"]);
    let r = json(&zcprof(&with_token, &dir), "the run with the token");
    assert_eq!(r["received"], serde_json::json!([1 << 20]));
    let status = sink.wait().unwrap();
    let mut said = String::new();
    sink.stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(status.success(), "the sink: {said}");
    assert!(said.contains("refused a run"), "{said}");
    nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&secrets);
}
