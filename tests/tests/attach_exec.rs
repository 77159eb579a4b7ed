//! `exec` and `attach`: a command's or a running process's syscalls as strace counts them, forks
//! followed or not, the command's exit status, a live table while measuring, and real programs
//! (cp, Java's transferTo, nginx with sendfile on and off).
use std::process::{Command, Stdio};

use serde_json::Value;
use zcprof_tests::{
    KillOnDrop, calls, children_of, data_file, fig, privileged, programs_left, run, scratch_dir,
    sigint, skip, wait_attached, zcprof_bin,
};

use crate::methods::classic::{SIZE, STEPS};

pub(crate) fn exec_json(args: &[&str]) -> (Value, Option<i32>) {
    let mut all = vec!["exec", "--format", "json"];
    all.extend(args);
    let out = run(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "zcprof {all:?}: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code())
}

#[test]
fn exec_counts_what_strace_counts() {
    if !privileged("exec_dd") {
        return;
    }
    let dir = scratch_dir("exec-dd", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    let input = format!("if={}", file.display());
    let dd = ["dd", input.as_str(), "of=/dev/null", "bs=64k"];
    let mut args = vec!["--"];
    args.extend(dd);
    let (r, code) = exec_json(&args);
    assert_eq!(code, Some(0));
    assert_eq!(r["kind"], "program");
    let (reads, writes) = (calls(&r, "read"), calls(&r, "write"));
    assert!(
        reads >= STEPS && writes >= STEPS,
        "{}",
        r["syscalls_by_name"]
    );
    // The file, plus dd's few-line summary on stderr.
    let written = fig(&r, "cpu_copy_from_user_bytes");
    assert!(
        (SIZE..SIZE + 4096).contains(&written),
        "dd wrote {written} bytes"
    );
    let strace = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(dir.join("strace.txt"))
        .args(dd)
        .output();
    let Ok(out) = strace else {
        skip("exec_dd strace comparison", "strace is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(dir.join("strace.txt")).unwrap();
    let strace_calls = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        reads,
        strace_calls("read"),
        "read calls, zcprof vs strace -c -f"
    );
    assert_eq!(
        writes,
        strace_calls("write"),
        "write calls, zcprof vs strace -c -f"
    );
}

#[test]
fn exec_cp_shows_how_the_installed_cp_copies() {
    if !privileged("exec_cp") {
        return;
    }
    let dir = scratch_dir("exec-cp", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    let copy = dir.join("copy.bin");
    let (r, code) = exec_json(&["--", "cp", file.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&file).unwrap());
    let moved_in_kernel = fig(&r, "in_kernel_bytes");
    if calls(&r, "copy_file_range") > 0 {
        // The file never passes through user memory; cp reads only its own small files.
        assert_eq!(moved_in_kernel, SIZE, "{}", r["syscalls_by_name"]);
        // Kernel-internal copies (page cache -> page cache on ext4) are the copy ledger's; see
        // tests/ledger.rs.
        let copied = fig(&r, "user_buffer_copy_bytes");
        assert!(
            copied < SIZE / 100,
            "cp copied {copied} bytes through user buffers"
        );
    } else {
        skip(
            "exec_cp copy_file_range check",
            &format!("this cp copies with {}", r["syscalls_by_name"]),
        );
        assert!(fig(&r, "cpu_copy_bytes") >= 2 * SIZE || moved_in_kernel >= SIZE);
    }
}

#[test]
fn exec_follows_forks_unless_told_not_to() {
    if !privileged("exec_follow") {
        return;
    }
    let dir = scratch_dir("exec-follow", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    // "; true" makes the shell fork dd instead of exec'ing it.
    let script = format!(
        "dd if={} of=/dev/null bs=64k 2>/dev/null; true",
        file.display()
    );
    let (followed, code) = exec_json(&["--", "sh", "-c", &script]);
    assert_eq!(code, Some(0));
    assert!(
        calls(&followed, "read") >= STEPS,
        "dd's reads are followed: {}",
        followed["syscalls_by_name"]
    );
    let (alone, _) = exec_json(&["--no-follow", "--", "sh", "-c", &script]);
    assert!(
        calls(&alone, "read") < STEPS,
        "only the shell is measured: {}",
        alone["syscalls_by_name"]
    );
    // The shell forked in both runs; the fork counter and wait4 agree on one child at least.
    assert!(
        calls(&alone, "wait4") >= 1 || calls(&alone, "waitid") >= 1,
        "{}",
        alone["syscalls_by_name"]
    );
}

#[test]
fn exec_exits_with_the_commands_status() {
    if !privileged("exec_status") {
        return;
    }
    let out = run(&["exec", "--format", "json", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = run(&["exec", "--", "zcprof-no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("command not found"), "{err}");
}

#[test]
fn attach_measures_a_running_process_and_leaves_it_running() {
    if !privileged("attach") {
        return;
    }
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=4k"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = dd.id().to_string();
    let out = run(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "1s",
        "--format",
        "json",
    ]);
    let still_running = dd.try_wait().unwrap().is_none();
    let _ = dd.kill();
    let _ = dd.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        still_running,
        "attach must not stop the process it measures"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["method"], format!("pid {pid}"));
    assert!(
        calls(&r, "read") > 0 && calls(&r, "write") > 0,
        "{}",
        r["syscalls_by_name"]
    );
    // dd copies /dev/zero to /dev/null through its buffer: read and write bytes match closely.
    let to_user = fig(&r, "cpu_copy_to_user_bytes");
    let from_user = fig(&r, "cpu_copy_from_user_bytes");
    assert!(
        to_user.abs_diff(from_user) <= 4096,
        "{to_user} vs {from_user}"
    );
    assert!(programs_left().is_empty(), "attach detaches everything");

    let out = run(&["attach", "--pid", "999999999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process with PID 999999999"));
}

/// What Kafka and Netty do for zero-copy: FileChannel.transferTo to a socket.
const JAVA_SENDER: &str = r"
import java.io.InputStream;
import java.net.*;
import java.nio.channels.*;
import java.nio.file.*;

public class TransferTo {
    public static void main(String[] args) throws Exception {
        Path file = Paths.get(args[0]);
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            Thread drain = new Thread(() -> {
                try (Socket s = server.accept(); InputStream in = s.getInputStream()) {
                    byte[] buf = new byte[1 << 16];
                    while (in.read(buf) >= 0) { }
                } catch (Exception e) { throw new RuntimeException(e); }
            });
            drain.start();
            try (FileChannel ch = FileChannel.open(file);
                 SocketChannel out = SocketChannel.open(server.getLocalSocketAddress())) {
                long sent = 0, size = ch.size();
                while (sent < size) sent += ch.transferTo(sent, size - sent, out);
            }
            drain.join();
        }
    }
}
";

#[test]
fn java_transfer_to_uses_sendfile() {
    if !privileged("java_transfer_to") {
        return;
    }
    if Command::new("javac").arg("-version").output().is_err() {
        skip("java_transfer_to", "no JDK (javac) on this machine");
        return;
    }
    let dir = scratch_dir("java", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    std::fs::write(dir.join("TransferTo.java"), JAVA_SENDER).unwrap();
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&dir)
        .arg(dir.join("TransferTo.java"))
        .output()
        .unwrap();
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let (r, code) = exec_json(&[
        "--",
        "java",
        "-cp",
        dir.to_str().unwrap(),
        "TransferTo",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{}", r["syscalls_by_name"]);
    // The JVM's transferTo is sendfile underneath: the file never enters the Java heap.
    assert!(calls(&r, "sendfile") >= 1, "{}", r["syscalls_by_name"]);
    let sendfile_bytes = r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sendfile")
        .unwrap()["bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(sendfile_bytes, SIZE, "sendfile moved the whole file");
}

/// Stops an nginx master the way nginx wants (SIGTERM: it stops its workers, then exits), so
/// no worker outlives the test, whether it passes or panics.
struct StopNginx(std::process::Child);

impl Drop for StopNginx {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Serves a 16 MiB file from an nginx of the test's own (loopback port, private prefix), with
/// `sendfile` on or off, and measures its worker by PID while curl fetches the file.
fn nginx_serving(sendfile: bool) -> Option<Value> {
    if Command::new("nginx").arg("-v").output().is_err() {
        skip(
            "nginx tests",
            "nginx is not installed (cargo xtask test installs it as root)",
        );
        return None;
    }
    let dir = scratch_dir(
        if sendfile { "nginx-on" } else { "nginx-off" },
        env!("CARGO_TARGET_TMPDIR"),
    );
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let size = 16 << 20;
    std::fs::write(www.join("file.bin"), vec![7u8; size]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{
  access_log off; sendfile {}; tcp_nopush off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }}
}}
",
        if sendfile { "on" } else { "off" }
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let master = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let master = StopNginx(master);
    let mut worker = None;
    for _ in 0..2000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && let Some(&w) = children_of(master.0.id()).first()
        {
            worker = Some(w);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let worker = worker.expect("nginx started a worker");
    let zcprof = Command::new(zcprof_bin())
        .args(["attach", "--pid", &worker.to_string(), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut zcprof = KillOnDrop(zcprof);
    wait_attached(&mut zcprof.0);
    // A moment for the last program to attach after the first is seen.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!("http://127.0.0.1:{port}/file.bin"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        size.to_string(),
        "curl got the whole file"
    );
    sigint(&zcprof.0);
    let status = zcprof.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(zcprof.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success());
    Some(serde_json::from_str(&out).unwrap())
}

#[test]
fn nginx_with_sendfile_on_moves_the_file_without_user_copies() {
    if !privileged("nginx_sendfile_on") {
        return;
    }
    let Some(r) = nginx_serving(true) else { return };
    assert!(calls(&r, "sendfile") >= 1, "{}", r["syscalls_by_name"]);
    assert!(
        fig(&r, "in_kernel_bytes") >= 16 << 20,
        "{}",
        r["figures"]["in_kernel_bytes"]
    );
    // Only the request and the response headers pass through user buffers.
    assert!(
        fig(&r, "cpu_copy_bytes") < 64 << 10,
        "{}",
        r["figures"]["cpu_copy_bytes"]
    );
}

#[test]
fn nginx_with_sendfile_off_reads_the_file_into_user_space() {
    if !privileged("nginx_sendfile_off") {
        return;
    }
    let Some(r) = nginx_serving(false) else {
        return;
    };
    assert_eq!(calls(&r, "sendfile"), 0, "{}", r["syscalls_by_name"]);
    assert!(
        fig(&r, "cpu_copy_to_user_bytes") >= 16 << 20,
        "read into user space: {}",
        r["syscalls_by_name"]
    );
    assert!(
        fig(&r, "cpu_copy_from_user_bytes") >= 16 << 20,
        "written out of user space"
    );
}

#[test]
fn attach_with_an_interval_shows_the_table_while_measuring() {
    if !privileged("attach_interval") {
        return;
    }
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=4k"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = run(&[
        "attach",
        "--pid",
        &dd.id().to_string(),
        "--duration",
        "1s",
        "--interval",
        "200ms",
        "--format",
        "json",
    ]);
    let _ = dd.kill();
    let _ = dd.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = String::from_utf8_lossy(&out.stderr);
    // At least one refresh happens inside a one-second attach at 200 ms; each shows the cost row.
    assert!(live.lines().any(|l| l.starts_with("--- ")), "{live}");
    assert!(live.contains(&format!("pid {}", dd.id())), "{live}");
    // The final report is the usual JSON on stdout.
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(calls(&r, "read") > 0);
}

#[test]
fn output_file_keeps_the_report_apart_from_the_commands_stdout() {
    if !privileged("output_file") {
        return;
    }
    let dir = scratch_dir("output", env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("report.json");
    let out = Command::new(zcprof_bin())
        .args(["exec", "--format", "json", "-o"])
        .arg(&file)
        .args(["--", "sh", "-c", "echo hello"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(calls(&r, "write") >= 1, "{}", r["syscalls_by_name"]);
    assert_eq!(r["method"], "sh", "{}", r["method"]);
}
