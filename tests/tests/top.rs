//! `zcprof top` (issue 26): two workloads at once, one sending a file with sendfile and one
//! with read + write, to a receiver of their own, each a process of this test executable. Each
//! row holds what its process moved and nothing of the other's, equal to what `zcprof attach`
//! measures on it over the same transfer; the plain and JSON outputs print one interval each;
//! and the screen, driven in tmux at 80x24 and 200x50, ranks the rows as asked, re-ranks them
//! on a key, and leaves the terminal as it found it on q.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use zcprof_tests::{
    catalog_programs, data_file, fig, privileged, scratch_dir, sigint, skip, workload_test,
    zcprof_bin, zcprof_programs_loaded,
};

/// Bytes each sender sends (once, or per round when looping).
const SIZE: u64 = 16 << 20;

/// The workloads, run as this test executable again: `top-sink` (receives every connection
/// and prints its port), `top-sendfile` and `top-read-write` (wait for a line on stdin, then
/// send `ZCPROF_TEST_FROM` to `ZCPROF_TEST_PORT`, once or, with `ZCPROF_TEST_LOOP`, forever).
#[test]
fn workload() {
    let Ok(name) = std::env::var("ZCPROF_TEST_WORKLOAD") else {
        return;
    };
    if name == "top-sink" {
        sink();
        return;
    }
    let port: u16 = std::env::var("ZCPROF_TEST_PORT").unwrap().parse().unwrap();
    let from = std::env::var("ZCPROF_TEST_FROM").unwrap();
    let forever = std::env::var_os("ZCPROF_TEST_LOOP").is_some();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    loop {
        let mut to = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut file = std::fs::File::open(&from).unwrap();
        match name.as_str() {
            "top-sendfile" => send_file(&file, &to),
            "top-read-write" => {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    to.write_all(&buf[..n]).unwrap();
                }
            }
            other => panic!("no workload {other}"),
        }
        if !forever {
            return;
        }
    }
}

/// Sends all of `file` on `to` with sendfile.
fn send_file(file: &std::fs::File, to: &TcpStream) {
    let mut left = file.metadata().unwrap().len();
    while left > 0 {
        // SAFETY: a null offset: the file position advances.
        let n = unsafe {
            libc::sendfile(
                to.as_raw_fd(),
                file.as_raw_fd(),
                std::ptr::null_mut(),
                usize::try_from(left).unwrap(),
            )
        };
        assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
        left -= u64::try_from(n).unwrap();
    }
}

/// Receives every connection into a buffer until killed; prints its port first.
fn sink() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("port {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for conn in listener.incoming() {
        let mut conn = conn.unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
    }
}

/// A workload child of this executable; killed when dropped.
struct Workload(Child);

impl Workload {
    fn start(name: &str, env: &[(&str, String)]) -> Workload {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", &workload_test(module_path!())])
            .args(["--nocapture", "--test-threads=1"])
            .env("ZCPROF_TEST_WORKLOAD", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Workload(cmd.spawn().expect("the workload starts"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Lets a sender start.
    fn go(&mut self) {
        self.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The receiver, and the two senders waiting for `go` (looping when `forever`).
fn workloads(dir: &Path, forever: bool) -> (Workload, Workload, Workload) {
    let file = data_file(dir, SIZE);
    let mut sink = Workload::start("top-sink", &[]);
    let mut line = String::new();
    // libtest prints its own text around the workload's ("test top::workload ... port N").
    let mut out = BufReader::new(sink.0.stdout.take().unwrap());
    let port = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the sink printed no port"
        );
        if let Some((_, port)) = line.split_once("port ") {
            break port.trim().to_owned();
        }
    };
    let mut env = vec![
        ("ZCPROF_TEST_PORT", port),
        ("ZCPROF_TEST_FROM", file.display().to_string()),
    ];
    if forever {
        env.push(("ZCPROF_TEST_LOOP", "1".to_owned()));
    }
    let sendfile = Workload::start("top-sendfile", &env);
    let read_write = Workload::start("top-read-write", &env);
    (sink, sendfile, read_write)
}

/// Bytes of `key` each process was charged over every interval of `lines`.
fn per_pid(lines: &[Value], key: &str) -> HashMap<u64, u64> {
    let mut sums = HashMap::new();
    for l in lines {
        for row in l["rows"].as_array().unwrap() {
            *sums.entry(row["pid"].as_u64().unwrap()).or_default() += row[key].as_u64().unwrap();
        }
    }
    sums
}

/// `zcprof attach` on `pid`, its report to `out`, once its programs are loaded: their count
/// has grown and then held still for half a second (attach prints nothing when it starts).
fn attach(pid: u32, out: &Path) -> Child {
    let loaded = || zcprof_programs_loaded(&catalog_programs()).len();
    let before = loaded();
    let mut child = Command::new(zcprof_bin())
        .args([
            "attach",
            "--pid",
            &pid.to_string(),
            "--format",
            "json",
            "-o",
        ])
        .arg(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (mut last, mut still_since) = (before, Instant::now());
    while start.elapsed() < Duration::from_secs(30) {
        let now = loaded();
        if now != last {
            (last, still_since) = (now, Instant::now());
        } else if now > before && still_since.elapsed() > Duration::from_millis(500) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("zcprof attach --pid {pid} loaded no programs within 30 s");
}

#[test]
fn each_row_holds_what_its_process_moved_and_nothing_else() {
    if !privileged("top_rows") {
        return;
    }
    let dir = scratch_dir("top-rows", env!("CARGO_TARGET_TMPDIR"));
    let (sink, mut sendfile, mut read_write) = workloads(&dir, false);
    let mut top = Command::new(zcprof_bin())
        .args([
            "top",
            "--receives",
            "--format",
            "json",
            "--interval",
            "500ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = top.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("top prints its first interval");
    let mut lines: Vec<Value> = vec![serde_json::from_str(&first).unwrap()];
    let mut attaches = [
        (
            attach(sendfile.pid(), &dir.join("sendfile.json")),
            "sendfile.json",
        ),
        (
            attach(read_write.pid(), &dir.join("read-write.json")),
            "read-write.json",
        ),
    ];
    sendfile.go();
    read_write.go();
    for w in [&mut sendfile, &mut read_write] {
        assert!(w.0.wait().unwrap().success(), "a sender failed");
    }
    // Packets and the receiver's copies of the last bytes land within an interval or two.
    std::thread::sleep(Duration::from_millis(1500));
    sigint(&top);
    let status = top.wait().unwrap();
    let mut err = String::new();
    top.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "top: {status}: {err}");
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(serde_json::from_str(&line).unwrap());
    }
    let (s, r, k) = (
        u64::from(sendfile.pid()),
        u64::from(read_write.pid()),
        u64::from(sink.pid()),
    );
    let copied = per_pid(&lines, "sent_copied_bytes");
    let by_reference = per_pid(&lines, "sent_by_reference_bytes");
    let received = per_pid(&lines, "received_bytes");
    let got = |m: &HashMap<u64, u64>, pid| m.get(&pid).copied().unwrap_or(0);
    assert_eq!(got(&by_reference, s), SIZE, "sendfile's bytes by reference");
    assert_eq!(got(&copied, s), 0, "sendfile copied nothing");
    assert_eq!(got(&copied, r), SIZE, "read + write's bytes copied");
    assert_eq!(
        got(&by_reference, r),
        0,
        "read + write sent nothing by reference"
    );
    assert_eq!(got(&received, k), 2 * SIZE, "the receiver's copies");
    assert_eq!(
        got(&received, s) + got(&received, r),
        0,
        "the senders received nothing"
    );
    assert_eq!(
        got(&copied, k) + got(&by_reference, k),
        0,
        "the receiver sent nothing"
    );
    // attach, on each sender over the same transfer, measured the same bytes by path.
    for (child, report) in &mut attaches {
        assert!(child.wait().unwrap().success(), "attach for {report}");
    }
    let a_sendfile: Value =
        serde_json::from_slice(&std::fs::read(dir.join("sendfile.json")).unwrap()).unwrap();
    let a_read_write: Value =
        serde_json::from_slice(&std::fs::read(dir.join("read-write.json")).unwrap()).unwrap();
    assert_eq!(
        fig(&a_sendfile, "socket_splice_bytes"),
        got(&by_reference, s),
        "attach and top on sendfile"
    );
    assert_eq!(
        fig(&a_read_write, "socket_copy_bytes"),
        got(&copied, r),
        "attach and top on read + write"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batch_and_json_print_one_interval_each() {
    if !privileged("top_batch") {
        return;
    }
    let plain = Command::new(zcprof_bin())
        .args(["top", "-b", "--count", "3", "--interval", "200ms"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("zcprof top "))
            .count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("host, bytes/s: "))
            .count(),
        3,
        "{text}"
    );
    assert!(text.contains("lo (virtual, SG on)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "PID", "COMMAND", "COPIED", "BY", "REF", "ZEROCOPY", "RECEIVED", "PKT", "COPY",
                    "DISK", "RD"
                ]),
        "{text}"
    );
    let json = Command::new(zcprof_bin())
        .args([
            "top",
            "--format",
            "json",
            "--count",
            "3",
            "--interval",
            "200ms",
        ])
        .output()
        .unwrap();
    assert!(json.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert!(l["interval_s"].as_f64().unwrap() > 0.1, "{l}");
        assert!(l["rows"].is_array() && l["devices"].is_array(), "{l}");
        assert!(l["totals"]["sent_copied_bytes"].is_u64(), "{l}");
        assert_eq!(l["by"], "process");
        assert_eq!(
            l["receives_counted"], false,
            "receives are counted with --receives"
        );
    }
    // A reader that goes (`zcprof top -b | head -1`) ends top quietly, with status 0.
    let mut piped = Command::new(zcprof_bin())
        .args(["top", "-b", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(piped.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("zcprof top "), "{first}");
    let out = piped.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "top after its reader went: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmux server of this test's own, removed when dropped.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits (at most 30 s) until the screen satisfies `ok`.
    fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.screen();
            if ok(&text) {
                return text;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{what}:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The line of the screen that shows `pid`'s row (it starts with the id, right-aligned).
fn row_of(screen: &str, pid: u32) -> Option<usize> {
    screen
        .lines()
        .position(|l| l.split_whitespace().next() == Some(pid.to_string().as_str()))
}

#[test]
fn the_screen_ranks_rows_changes_sort_on_a_key_and_q_restores_the_terminal() {
    if !privileged("top_screen") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        skip("top_screen", "tmux is not installed");
        return;
    }
    let dir = scratch_dir("top-screen", env!("CARGO_TARGET_TMPDIR"));
    let (sink, mut sendfile, mut read_write) = workloads(&dir, true);
    sendfile.go();
    read_write.go();
    let (s, r) = (sendfile.pid(), read_write.pid());
    for (w, h) in [(80u16, 24u16), (200, 50)] {
        let tmux = Tmux(format!("zcprof-top-{}-{w}x{h}", std::process::id()));
        let shell = format!(
            "{} top --sort copied --interval 500ms; echo TOP-EXIT=$?; sleep 600",
            zcprof_bin().display()
        );
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            "sh",
            "-c",
            &shell,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let both = |t: &str| row_of(t, s).is_some() && row_of(t, r).is_some();
        let text = tmux.until("both senders' rows", |t| {
            both(t) && row_of(t, r) < row_of(t, s)
        });
        assert!(text.contains("sorted by copied"), "{text}");
        assert!(
            text.lines().all(|l| l.chars().count() <= usize::from(w)),
            "{w}x{h}: {text}"
        );
        // s: the next sort, bytes by reference: sendfile's row goes first.
        let _ = tmux.cmd(&["send-keys", "-t", "top", "s"]);
        tmux.until("sendfile first when sorted by reference", |t| {
            t.contains("sorted by by-reference") && both(t) && row_of(t, s) < row_of(t, r)
        });
        let _ = tmux.cmd(&["send-keys", "-t", "top", "q"]);
        let after = tmux.until("top ends on q", |t| t.contains("TOP-EXIT="));
        assert!(after.contains("TOP-EXIT=0"), "{after}");
        assert!(
            !after.contains("sorted by"),
            "the screen was left behind: {after}"
        );
        let flags = String::from_utf8_lossy(
            &tmux
                .cmd(&[
                    "display",
                    "-p",
                    "-t",
                    "top",
                    "#{cursor_flag} #{alternate_on}",
                ])
                .stdout,
        )
        .trim()
        .to_owned();
        assert_eq!(flags, "1 0", "cursor visible, alternate screen off");
        let escapes =
            String::from_utf8_lossy(&tmux.cmd(&["capture-pane", "-p", "-e", "-t", "top"]).stdout)
                .into_owned();
        assert!(
            !escapes.contains("\u{1b}[?"),
            "escape codes left: {escapes:?}"
        );
    }
    // The senders loop on the file: they go before it does.
    drop((sendfile, read_write, sink));
    let _ = std::fs::remove_dir_all(&dir);
}
