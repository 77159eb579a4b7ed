//! Real servers from Debian, attached by PID while they serve, each figure checked against the
//! kernel's own evidence of whose packets left (bpftrace, `evidence.rs`): haproxy in front of a
//! backend behind a veth without scatter-gather or on loopback, splicing or not, and nginx
//! sending a file with its headers corked in front of it over such a veth (issue 21, items 1 to
//! 3). Everything a test starts (servers, namespaces, links, bpftrace) goes on drop.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::Value;
use zcprof_tests::{calls, fig, privileged, scratch_dir, skip, zcprof_bin};

use super::{
    evidence::{Packets, Xmit},
    path_bytes, paths,
};

/// How long each attach measures: long beside zcprof's start (about half a second), so that
/// bpftrace, counting from before the start to after the end, sees little more than zcprof,
/// and a figure charged twice exceeds it.
const WINDOW: &str = "4s";

/// Headers and the odd packet on either side of a window.
const SLACK: u64 = 64 << 10;

/// nginx's port in its namespace.
const NGINX_PORT: u16 = 18083;

/// The file the servers send.
const FILE_SIZE: u64 = 8 << 20;

/// A network namespace of the test's own, joined to this one by a veth pair whose namespace end
/// has scatter-gather off (its packets are linearised: copied). It goes, with its link, on drop.
struct Namespace {
    name: String,
    host_if: String,
    net: String,
}

impl Namespace {
    fn create(tag: u32) -> Result<Namespace, String> {
        let id = std::process::id();
        let ns = Namespace {
            name: format!("zcpt-{id}-{tag}"),
            host_if: format!("zcpt{id}{tag}h"),
            net: format!("10.213.{}", (id + tag) % 250),
        };
        let ns_if = format!("zcpt{id}{tag}n");
        let (name, host_if, net) = (&ns.name, &ns.host_if, &ns.net);
        sh(&format!(
            "ip netns add {name}
             ip link add {host_if} type veth peer name {ns_if} netns {name}
             ip addr add {net}.1/30 dev {host_if}
             ip link set {host_if} up
             ip -n {name} addr add {net}.2/30 dev {ns_if}
             ip -n {name} link set {ns_if} up
             ip -n {name} link set lo up
             ip netns exec {name} ethtool -K {ns_if} sg off"
        ))?;
        Ok(ns)
    }

    fn addr(&self) -> String {
        format!("{}.2", self.net)
    }

    /// `program` run inside the namespace (ip execs it: the child is the program).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Bytes the host end of the veth received and sent: the kernel's own counters.
    fn veth_bytes(&self) -> (u64, u64) {
        let read = |what: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{what}", self.host_if))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        (read("rx_bytes"), read("tx_bytes"))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the host end.
        let _ = sh(&format!(
            "ip netns del {} 2>/dev/null; ip link del {} 2>/dev/null; true",
            self.name, self.host_if
        ));
    }
}

fn sh(script: &str) -> Result<(), String> {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Waits until `url` answers.
fn answering(url: &str) -> Result<(), String> {
    for _ in 0..100 {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{url} did not answer within 10 s"))
}

/// A server killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A python HTTP server sending `dir` from `addr:port`, in `ns` or on loopback. The server
/// goes before the namespace (fields drop in order).
struct Backend {
    _server: Server,
    ns: Option<Namespace>,
    addr: String,
    port: u16,
}

impl Backend {
    fn start(dir: &Path, ns: Option<Namespace>, port: u16) -> Result<Backend, String> {
        let addr = ns.as_ref().map_or("127.0.0.1".to_owned(), Namespace::addr);
        let mut cmd = match &ns {
            Some(ns) => ns.command("python3"),
            None => Command::new("python3"),
        };
        let server = cmd
            .args(["-m", "http.server", &port.to_string(), "--bind", &addr])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let backend = Backend {
            _server: Server(server),
            ns,
            addr,
            port,
        };
        answering(&format!("http://{}:{port}/", backend.addr))?;
        Ok(backend)
    }

    fn site(&self) -> &'static str {
        if self.ns.is_some() {
            "a veth without scatter-gather"
        } else {
            "loopback"
        }
    }
}

/// haproxy on loopback in front of `backend`, splicing or not; killed on drop.
fn haproxy(dir: &Path, port: u16, backend: &Backend, splice: bool) -> Server {
    let config = dir.join(format!("haproxy-{port}.cfg"));
    std::fs::write(
        &config,
        format!(
            "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout \
             client 30s\n  timeout server 30s\n{}listen p\n  bind 127.0.0.1:{port}\n  server b \
             {}:{}\n",
            if splice {
                "  option splice-response\n  option splice-request\n"
            } else {
                ""
            },
            backend.addr,
            backend.port
        ),
    )
    .expect("the haproxy config");
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

/// The programs a test needs, or the first one missing.
fn tools(names: &[&str]) -> Result<(), String> {
    for tool in names {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).exists()));
        if !found {
            return Err(format!(
                "{tool} is not installed (cargo xtask test installs it as root)"
            ));
        }
    }
    Ok(())
}

/// Fetches `url` until `stop`; returns the bytes curl received.
fn clients(url: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut got = 0;
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "-w", "%{size_download}", &url])
                .output()
                .expect("curl runs");
            got += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
        got
    })
}

/// `zcprof attach` to `pid` for `WINDOW` while clients fetch `url`, with bpftrace counting
/// packets from before zcprof starts to after it ends. Err: why bpftrace cannot count here.
fn attach_while_fetching(pid: u32, url: &str, report: &Path) -> Result<(Value, Packets), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let load = clients(url.to_owned(), Arc::clone(&stop));
    let measured = Xmit::start().map(|xmit| {
        let out = Command::new(zcprof_bin())
            .args(["attach", "--pid", &pid.to_string(), "--duration", WINDOW])
            .args(["--format", "json", "-o"])
            .arg(report)
            .output()
            .expect("zcprof attach runs");
        (out, xmit.stop())
    });
    stop.store(true, Ordering::Relaxed);
    let delivered = load.join().expect("the clients");
    let (out, packets) = measured?;
    assert!(
        out.status.success(),
        "attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(delivered >= FILE_SIZE, "the clients got {delivered} B");
    let r = serde_json::from_slice(&std::fs::read(report).expect("report")).expect("JSON");
    Ok((r, packets))
}

/// Bytes of the packets a report charges, on `device` or on all.
fn net_bytes(r: &Value, device: Option<&str>) -> u64 {
    r["devices"]["net"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| device.is_none_or(|name| d["device"] == name))
        .filter_map(|d| d["bytes"].as_u64())
        .sum()
}

/// Segmentation's copies: payload the kernel copied into linear packet data.
fn segmentation_copies(r: &Value) -> u64 {
    paths(r)
        .into_iter()
        .filter(|(p, _)| p.contains("packet") || p.starts_with("page cache -> socket"))
        .map(|(_, b)| b)
        .sum()
}

/// issue 21, items 1 and 3, on a real proxy: haproxy in front of a backend whose veth has
/// scatter-gather off was charged the backend's linearised packets (292.76 MiB of "socket
/// buffer -> packet") and the backend's veth; on loopback, packet bytes about twice its own;
/// splicing, its payload twice (652 MiB for 330). The previous binary charged haproxy 325 MB of
/// the backend's segmentation here.
#[test]
fn a_proxy_is_charged_its_own_packets_and_its_payload_once() {
    const TEST: &str = "a_proxy_is_charged";
    if !privileged(TEST) {
        return;
    }
    let needed = [
        "haproxy", "python3", "ethtool", "curl", "ip", "bpftrace", "unshare",
    ];
    if let Err(why) = tools(&needed) {
        skip(TEST, &why);
        return;
    }
    let dir = scratch_dir("attribution-proxy", env!("CARGO_TARGET_TMPDIR"));
    let _ = zcprof_tests::data_file(&dir, FILE_SIZE);
    let behind_veth = Namespace::create(0).and_then(|ns| Backend::start(&dir, Some(ns), 18081));
    let on_loopback = Backend::start(&dir, None, 18082);
    let (behind_veth, on_loopback) = match (behind_veth, on_loopback) {
        (Ok(v), Ok(l)) => (v, l),
        (Err(why), _) | (_, Err(why)) => {
            skip(TEST, &format!("no backend here: {why}"));
            return;
        }
    };
    let cases = [
        (&behind_veth, false, 18090),
        (&behind_veth, true, 18091),
        (&on_loopback, false, 18092),
        (&on_loopback, true, 18093),
    ];
    for (backend, splice, port) in cases {
        if let Err(why) = check_proxy(&dir, backend, splice, port) {
            skip(TEST, &why);
            return;
        }
    }
}

/// One proxy case; Err: why it cannot be checked here.
fn check_proxy(dir: &Path, backend: &Backend, splice: bool, port: u16) -> Result<(), String> {
    let case = format!(
        "haproxy before a backend on {}, splice {splice}",
        backend.site()
    );
    let proxy = haproxy(dir, port, backend, splice);
    let veth_before = backend.ns.as_ref().map(Namespace::veth_bytes);
    let report = dir.join(format!("haproxy-{port}.json"));
    let url = format!("http://127.0.0.1:{port}/data.bin");
    let (r, seen) = attach_while_fetching(proxy.0.id(), &url, &report)?;
    drop(proxy);
    // haproxy's own packets: to its clients (its listening port) and to the backend (requests,
    // ACKs). The backend's went from the backend's port.
    let own = seen.from(port).plus(seen.to(backend.port));
    let backends = seen.from(backend.port);
    assert!(backends.total() >= FILE_SIZE, "{case}: {seen:?}");
    let charged = net_bytes(&r, None);
    assert!(
        charged <= own.total() + SLACK,
        "{case}: {charged} B of packets charged in {WINDOW}; bpftrace saw haproxy's sockets send {} \
         B and the backend's {} B in {:.1} s around it: {}",
        own.total(),
        backends.total(),
        seen.seconds,
        r["devices"]
    );
    assert!(
        charged > 0,
        "{case}: none of haproxy's packets: {}",
        r["devices"]
    );
    let segmented = segmentation_copies(&r);
    eprintln!(
        "{case}: charged {charged} B of packets, {segmented} B of segmentation copies, {} B moved \
         in the kernel; bpftrace, {:.1} s: haproxy's packets {} B ({} B linear payload), the \
         backend's {} B ({} B)",
        fig(&r, "in_kernel_bytes"),
        seen.seconds,
        own.total(),
        own.linear_payload(),
        backends.total(),
        backends.linear_payload()
    );
    assert!(
        segmented <= own.linear_payload() + SLACK,
        "{case}: {segmented} B of segmentation copies charged; haproxy's packets carried {} B of \
         linear payload, the backend's {} B: {}",
        own.linear_payload(),
        backends.linear_payload(),
        r["copies"]
    );
    if let (Some(ns), Some((_, tx_before))) = (&backend.ns, veth_before) {
        // The veth's own counter: haproxy's requests to the backend, all it sent there.
        let to_backend = ns.veth_bytes().1 - tx_before;
        let on_veth = net_bytes(&r, Some(&ns.host_if));
        assert!(
            on_veth <= to_backend + SLACK,
            "{case}: {on_veth} B charged on the backend's veth, which carried {to_backend} B"
        );
    }
    if splice {
        if calls(&r, "splice") == 0 {
            return Err(format!("{case}: haproxy did not splice here"));
        }
        // Payload once: what left for the clients, not also what came in from the backend.
        let moved = fig(&r, "in_kernel_bytes");
        assert!(
            moved <= seen.from(port).total() + SLACK,
            "{case}: in_kernel_bytes {moved} against {} B that left for the clients: {}",
            seen.from(port).total(),
            r["descriptors"]
        );
    }
    Ok(())
}

/// nginx sending `dir/data.bin` from `ns` with sendfile and `tcp_nopush` (`TCP_CORK`: each
/// response's headers wait for the file's first pages and leave in one packet with them).
fn nginx(dir: &Path, ns: &Namespace, port: u16) -> Result<Server, String> {
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen {}:{port}; root {d}; }}
}}
",
        ns.addr()
    );
    std::fs::write(dir.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let child = ns
        .command("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let server = Server(child);
    answering(&format!("http://{}:{port}/data.bin", ns.addr()))?;
    Ok(server)
}

/// issue 21, item 2: caddy over a veth without scatter-gather wrote 13,960 B of headers and was
/// charged 1,314,440 B of "socket buffer -> packet": each response's first packet holds the
/// written headers and the first file pages together, and all of it was counted as a second
/// copy of written data. nginx with sendfile and `tcp_nopush` does the same. Its written
/// headers can be copied into packets once more at most; the rest of the linear payload, which
/// bpftrace sees leave, came from the page cache.
#[test]
fn headers_and_file_pages_in_one_packet_are_split_by_origin() {
    const TEST: &str = "headers_and_file_pages";
    if !privileged(TEST) {
        return;
    }
    if let Err(why) = tools(&["nginx", "ethtool", "curl", "ip", "bpftrace", "unshare"]) {
        skip(TEST, &why);
        return;
    }
    let dir = scratch_dir("attribution-nginx", env!("CARGO_TARGET_TMPDIR"));
    let _ = zcprof_tests::data_file(&dir, FILE_SIZE);
    let ns = match Namespace::create(1) {
        Ok(ns) => ns,
        Err(why) => {
            skip(TEST, &format!("no namespace behind a veth here: {why}"));
            return;
        }
    };
    let server = nginx(&dir, &ns, NGINX_PORT).expect("nginx serves");
    let url = format!("http://{}:{NGINX_PORT}/data.bin", ns.addr());
    let (r, seen) = match attach_while_fetching(server.0.id(), &url, &dir.join("nginx-report.json"))
    {
        Ok(measured) => measured,
        Err(why) => {
            skip(TEST, &why);
            return;
        }
    };
    drop(server);
    assert!(calls(&r, "sendfile") > 0, "{}", r["syscalls_by_name"]);
    let written = path_bytes(&r, "user buffer -> socket buffer");
    let again = path_bytes(&r, "socket buffer -> packet (segmentation)");
    let from_cache = path_bytes(&r, "page cache -> socket buffer");
    assert!(written > 0, "no headers written: {}", r["copies"]);
    assert!(
        again <= written,
        "{again} B of written data copied into packets again, {written} B written: {}",
        r["copies"]
    );
    let linear = seen.from(NGINX_PORT).linear_payload();
    eprintln!(
        "nginx: {written} B written, {again} B of it into packets again, {from_cache} B from the \
         page cache into packets; bpftrace, {:.1} s: {linear} B of linear payload",
        seen.seconds
    );
    assert!(
        from_cache + again <= linear + SLACK,
        "{} B copied into packets in {WINDOW}; bpftrace saw nginx's packets carry {linear} B of \
         linear payload in {:.1} s around it: {}",
        from_cache + again,
        seen.seconds,
        r["copies"]
    );
    assert!(
        from_cache >= FILE_SIZE,
        "{from_cache} B from the page cache into packets: {}",
        r["copies"]
    );
}
