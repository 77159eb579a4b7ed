//! The kernel's own evidence of whose packets left, independent of zcprof's programs: bpftrace
//! at `net:net_dev_start_xmit` (where a packet is handed to a device, after software
//! segmentation), summing each packet's linear and paged bytes by the local and the remote port
//! of its socket. A packet's linear data past its headers was copied there; paged data went by
//! reference.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStdout, Command, Stdio},
    time::Instant,
};

/// The fewest bytes of Ethernet, IP and TCP headers a packet's linear data holds.
const HEADERS: u64 = 54;

/// The script: one map per figure and direction, keyed by port. The remote port is stored in
/// network order, swapped here; `skc_num` is the local port in host order.
const SCRIPT: &str = r"
tracepoint:net:net_dev_start_xmit {
  $skb = (struct sk_buff *)args->skbaddr;
  $sk = $skb->sk;
  if ($sk != 0) {
    $local = $sk->__sk_common.skc_num;
    $d = $sk->__sk_common.skc_dport;
    $remote = (($d & 0xff) << 8) | ($d >> 8);
    $linear = $skb->len - $skb->data_len;
    @linear_from[$local] = sum($linear);
    @paged_from[$local] = sum($skb->data_len);
    @packets_from[$local] = count();
    @linear_to[$remote] = sum($linear);
    @paged_to[$remote] = sum($skb->data_len);
    @packets_to[$remote] = count();
  }
}
";

/// What some packets carried.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes {
    pub linear: u64,
    pub paged: u64,
    pub packets: u64,
}

impl Bytes {
    pub fn total(self) -> u64 {
        self.linear + self.paged
    }

    /// Payload in linear data: what the kernel copied into the packets (at most; the headers
    /// are taken at their smallest).
    pub fn linear_payload(self) -> u64 {
        self.linear.saturating_sub(self.packets * HEADERS)
    }

    pub fn plus(self, other: Bytes) -> Bytes {
        Bytes {
            linear: self.linear + other.linear,
            paged: self.paged + other.paged,
            packets: self.packets + other.packets,
        }
    }
}

/// Packets that left while bpftrace ran, by their socket's ports.
#[derive(Debug, Default)]
pub struct Packets {
    from: BTreeMap<u16, Bytes>,
    to: BTreeMap<u16, Bytes>,
    /// How long bpftrace counted.
    pub seconds: f64,
}

impl Packets {
    /// Packets of sockets bound locally to `port` (a server's accepted connections).
    pub fn from(&self, port: u16) -> Bytes {
        self.from.get(&port).copied().unwrap_or_default()
    }

    /// Packets of sockets connected to `port` elsewhere (a client's, a proxy's to its backend).
    pub fn to(&self, port: u16) -> Bytes {
        self.to.get(&port).copied().unwrap_or_default()
    }

    fn add(&mut self, line: &str) {
        let Some((name, rest)) = line.strip_prefix('@').and_then(|l| l.split_once('[')) else {
            return;
        };
        let Some((port, value)) = rest.split_once("]: ") else {
            return;
        };
        let (Ok(port), Ok(value)) = (port.trim().parse::<u16>(), value.trim().parse::<u64>())
        else {
            return;
        };
        let (figure, direction) = name.split_once('_').unwrap_or((name, ""));
        let table = if direction == "from" {
            &mut self.from
        } else {
            &mut self.to
        };
        let entry = table.entry(port).or_default();
        match figure {
            "linear" => entry.linear = value,
            "paged" => entry.paged = value,
            _ => entry.packets = value,
        }
    }
}

/// bpftrace counting packets, in a mount namespace of its own where tracefs is mounted (so
/// nothing stays mounted); killed on drop.
pub struct Xmit {
    child: Child,
    stdout: BufReader<ChildStdout>,
    since: Instant,
}

impl Xmit {
    /// Starts bpftrace and returns once its probe is attached.
    pub fn start() -> Result<Xmit, String> {
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tracefs nodev /sys/kernel/tracing && exec bpftrace -e \"$0\"")
            .arg(SCRIPT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("bpftrace: {e}"))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        if !first.starts_with("Attaching") {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!(
                "bpftrace did not attach: {}",
                err.lines().last().unwrap_or("").trim()
            ));
        }
        // It prints the line before attaching its one probe.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(Xmit {
            child,
            stdout,
            since: Instant::now(),
        })
    }

    /// Stops bpftrace (SIGINT, as Ctrl-C: it prints its maps) and reads what it counted.
    pub fn stop(mut self) -> Packets {
        let seconds = self.since.elapsed().as_secs_f64();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT to bpftrace");
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
        let _ = self.child.wait();
        let mut packets = Packets {
            seconds,
            ..Packets::default()
        };
        for line in out.lines() {
            packets.add(line);
        }
        packets
    }
}

impl Drop for Xmit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bpftraces_maps_are_read_by_port_and_direction() {
    let mut p = Packets::default();
    for line in [
        "@linear_from[18090]: 1000",
        "@paged_from[18090]: 5000",
        "@packets_from[18090]: 10",
        "@linear_to[18081]: 300",
        "Attaching 1 probe...",
        "",
    ] {
        p.add(line);
    }
    let from = p.from(18090);
    assert_eq!((from.linear, from.paged, from.packets), (1000, 5000, 10));
    assert_eq!(from.total(), 6000);
    assert_eq!(from.linear_payload(), 1000 - 540);
    assert_eq!(p.to(18081).linear, 300);
    assert_eq!(p.to(18090).total(), 0);
}
