//! The network path between a workload's sender and its receiver: loopback, or a veth pair
//! whose far end sits in a private network namespace, so that the sender's device is one whose
//! scatter-gather can be switched (loopback's is fixed on).
//!
//! Nothing may outlive zcprof, whatever ends it. The namespace is anonymous: a short-lived
//! thread unshares it and zcprof keeps only a descriptor of it (no `ip netns` bind mount), and
//! the pair is created atomically with its peer already inside it. When zcprof dies, even by
//! SIGKILL, the descriptor closes, the kernel frees the namespace, deletes the peer and with it
//! the host end. On a normal end the host end is deleted explicitly as well, and checked.
//!
//! Traffic goes only to the pair's own /30, derived from zcprof's pid inside 10.128.0.0/9, so
//! concurrent runs do not collide; the host's routing table is checked first so that no route
//! that is already there is shadowed.
use std::{
    ffi::CString,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::process::CommandExt as _,
    },
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::{
    caps::nic,
    sink::{self, SinkError},
};

/// Errors of setting up, switching or removing the network path.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("--net veth needs the ip command (iproute2), and there is none in PATH")]
    NoIp,
    /// `unshare(CLONE_NEWNET)` refused, usually for want of `CAP_SYS_ADMIN`.
    #[error(
        "--net veth: cannot create a network namespace for the receiver: {0} (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    )]
    Namespace(io::Error),
    /// The pair's /30 overlaps a route this host already has.
    #[error("--net veth: {net} overlaps the host's route {route}; zcprof will not shadow it")]
    AddressInUse { net: String, route: String },
    /// An `ip` command failed; its own message is kept (no `CAP_NET_ADMIN`, no veth module).
    #[error("--net veth: `ip {command}` failed: {message}")]
    Ip { command: String, message: String },
    #[error("cannot set scatter-gather {state} on {device}: {source}")]
    SetScatterGather {
        device: String,
        state: &'static str,
        source: io::Error,
    },
    /// The ioctl succeeded but the driver kept another state.
    #[error("scatter-gather on {device} reads back {got} after it was set {want}")]
    ScatterGatherNotTaken {
        device: String,
        want: &'static str,
        got: String,
    },
    #[error("--sg needs --net veth: loopback's scatter-gather cannot be switched")]
    FixedScatterGather,
    #[error("cannot listen for the receiver on {addr}: {source}")]
    Listen { addr: IpAddr, source: io::Error },
    /// `ip link del` reported success but the link is still there.
    #[error("the veth pair {0} is still there after `ip link del`")]
    Leftover(String),
    /// The sink of `--to` cannot be reached, or is not a sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the sink at {0} receives; zcprof does not listen for it")]
    NoListener(String),
}

/// Where a workload sends.
#[derive(Debug)]
pub enum Network {
    /// 127.0.0.1 over `lo`.
    Loopback,
    Veth(Veth),
    /// A `zcprof sink` elsewhere (`--to`), over the host's own route.
    Remote(RemoteSink),
}

/// The sink of `--to`, found answering before anything else is prepared.
#[derive(Debug)]
pub struct RemoteSink {
    /// `HOST:PORT` as given.
    pub addr: String,
    /// The sink's address, resolved.
    pub peer: SocketAddr,
    /// The local interface that carries the route to it (its address is the connection's own).
    pub device: String,
    /// `--token-file`'s token, for a sink that takes runs only with it.
    pub token: Option<sink::Token>,
}

impl Network {
    /// Creates the path of `--net veth`.
    ///
    /// # Errors
    /// When `ip` is missing, or the namespace, the pair or its addresses cannot be set up; then
    /// nothing is left behind.
    pub fn veth() -> Result<Network, NetError> {
        Veth::create().map(Network::Veth)
    }

    /// The path of `--to`: checks that a sink answers at `addr` (`HOST:PORT`) and finds the
    /// interface the route to it leaves by; each run then offers `token` (`--token-file`).
    ///
    /// # Errors
    /// When nothing answers there, or something that is not a sink.
    pub fn remote(addr: &str, token: Option<sink::Token>) -> Result<Network, NetError> {
        let probed = sink::probe(addr)?;
        Ok(Network::Remote(RemoteSink {
            addr: addr.to_owned(),
            peer: probed.peer,
            device: interface_of(probed.local.ip()).unwrap_or_else(|| "unknown".to_owned()),
            token,
        }))
    }

    /// "loopback", "veth" or "remote", as reports name it.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Network::Loopback => "loopback",
            Network::Veth(_) => "veth",
            Network::Remote(_) => "remote",
        }
    }

    /// The sender's device.
    #[must_use]
    pub fn device(&self) -> &str {
        match self {
            Network::Loopback => "lo",
            Network::Veth(v) => &v.host,
            Network::Remote(r) => &r.device,
        }
    }

    /// The address the sender connects to.
    #[must_use]
    pub fn receiver_ip(&self) -> IpAddr {
        match self {
            Network::Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Network::Veth(v) => IpAddr::V4(v.peer_addr),
            Network::Remote(r) => r.peer.ip(),
        }
    }

    /// The remote sink of `--to`, if this is that path.
    #[must_use]
    pub fn remote_sink(&self) -> Option<&RemoteSink> {
        match self {
            Network::Remote(r) => Some(r),
            Network::Loopback | Network::Veth(_) => None,
        }
    }

    /// Scatter-gather on the sender's device, as its driver reports it now.
    #[must_use]
    pub fn scatter_gather(&self) -> Option<bool> {
        nic::scatter_gather(self.device())
    }

    /// Switches scatter-gather on the sender's device and checks that the driver took it.
    ///
    /// # Errors
    /// On loopback (fixed on), when the kernel refuses, or when the state reads back otherwise.
    pub fn set_scatter_gather(&self, on: bool) -> Result<(), NetError> {
        let Network::Veth(v) = self else {
            return Err(NetError::FixedScatterGather);
        };
        let state = |on| if on { "on" } else { "off" };
        nic::set_scatter_gather(&v.host, on).map_err(|source| NetError::SetScatterGather {
            device: v.host.clone(),
            state: state(on),
            source,
        })?;
        match self.scatter_gather() {
            Some(got) if got == on => Ok(()),
            got => Err(NetError::ScatterGatherNotTaken {
                device: v.host.clone(),
                want: state(on),
                got: got.map_or_else(|| "nothing".to_owned(), |g| state(g).to_owned()),
            }),
        }
    }

    /// A listening socket for the receiver, on an ephemeral port of the receiver's address.
    /// For veth it is created inside the private namespace (a socket belongs to the namespace
    /// it was created in; its accepted streams can be read from any thread).
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub fn listen(&self) -> Result<TcpListener, NetError> {
        let addr = self.receiver_ip();
        let bind = || TcpListener::bind((addr, 0));
        let listener = match self {
            Network::Loopback => bind(),
            Network::Veth(v) => in_namespace(&v.netns, bind).and_then(|r| r),
            Network::Remote(r) => return Err(NetError::NoListener(r.addr.clone())),
        };
        listener.map_err(|source| NetError::Listen { addr, source })
    }

    /// Tears the path down now and checks that it is gone (dropping does the same, but can only
    /// warn).
    ///
    /// # Errors
    /// When the host end of a veth pair cannot be deleted.
    pub fn close(self) -> Result<(), NetError> {
        match self {
            Network::Loopback | Network::Remote(_) => Ok(()),
            Network::Veth(mut v) => v.remove(),
        }
    }
}

/// A veth pair: `host` in zcprof's namespace (the sender's device), its peer in `netns`.
#[derive(Debug)]
pub struct Veth {
    ip: PathBuf,
    host: String,
    peer: String,
    peer_addr: Ipv4Addr,
    /// The receiver's namespace; the only reference to it that outlives a run.
    netns: OwnedFd,
    /// The pair exists (from `ip link add` until it was deleted).
    created: bool,
}

/// The pair's /30 for process `pid`: 10.b.c.d with b in 128..=255, so that concurrent runs
/// (different pids) get different networks. Returns (network, host end, peer end).
fn addresses(pid: u32) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr) {
    // Each part is masked to fit its byte, so the casts cannot truncate.
    #[expect(clippy::cast_possible_truncation, reason = "masked to fit")]
    let (b, c, d) = (
        128 + ((pid >> 14) & 127) as u8,
        ((pid >> 6) & 255) as u8,
        ((pid & 63) * 4) as u8,
    );
    (
        Ipv4Addr::new(10, b, c, d),
        Ipv4Addr::new(10, b, c, d + 1),
        Ipv4Addr::new(10, b, c, d + 2),
    )
}

/// A route of this host's main table that overlaps `net`/30, other than the default route
/// (which every destination matches, and which a more specific route rightly overrides).
/// `routes` is /proc/net/route, which prints each address as the hex of its bytes in memory
/// (network order) read as one native u32.
fn overlapping_route(routes: &str, net: Ipv4Addr) -> Option<String> {
    let ours = u32::from(net);
    let addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|n| u32::from(Ipv4Addr::from(n.to_ne_bytes())))
    };
    routes.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, mask) = (addr(f.get(1)?)?, addr(f.get(7)?)?);
        // Two prefixes overlap when they agree on the shorter one's bits.
        let common = mask & 0xffff_fffc;
        (mask != 0 && (dest ^ ours) & common == 0).then(|| {
            format!(
                "{}/{} dev {}",
                Ipv4Addr::from(dest),
                mask.count_ones(),
                f.first().unwrap_or(&"?")
            )
        })
    })
}

/// The interface of the calling thread's network namespace that has address `ip` (else whose
/// network holds it, as 127.0.0.0/8 on `lo`): for the local address of a connected socket, the
/// interface its route leaves by.
#[must_use]
pub fn interface_of(ip: IpAddr) -> Option<String> {
    let to_ip = |a: &nix::sys::socket::SockaddrStorage| {
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    };
    let mut within = None;
    for a in nix::ifaddrs::getifaddrs().ok()? {
        let Some(own) = a.address.as_ref().and_then(to_ip) else {
            continue;
        };
        if own == ip {
            return Some(a.interface_name);
        }
        let mask = a.netmask.as_ref().and_then(to_ip);
        let same_net = match (own, ip, mask) {
            (IpAddr::V4(o), IpAddr::V4(i), Some(IpAddr::V4(m))) => {
                u32::from(o) & u32::from(m) == u32::from(i) & u32::from(m)
            }
            (IpAddr::V6(o), IpAddr::V6(i), Some(IpAddr::V6(m))) => {
                u128::from(o) & u128::from(m) == u128::from(i) & u128::from(m)
            }
            _ => false,
        };
        if same_net && within.is_none() {
            within = Some(a.interface_name);
        }
    }
    within
}

/// Finds `ip` as a shell would, in PATH.
fn find_ip() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
}

/// Runs `f` on a thread that joined the network namespace `netns`, so that what it creates
/// (sockets, child processes) belongs there; the calling thread stays where it is.
fn in_namespace<T: Send>(netns: &OwnedFd, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace descriptor we own; it affects this thread only, which
            // ends when `f` returns.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// A new, anonymous network namespace, held only by the returned descriptor.
fn new_namespace() -> io::Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects this thread only (a network namespace may be unshared by
            // one thread of a process); the thread ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// Turns IPv6 off on interface `name` of the calling thread's namespace, so the pair carries no
/// neighbour discovery or multicast listener reports, only the workload's IPv4. Best effort: a
/// kernel without IPv6 has nothing to turn off.
fn quiet_ipv6(name: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
}

impl Veth {
    fn create() -> Result<Veth, NetError> {
        let ip = find_ip().ok_or(NetError::NoIp)?;
        let pid = std::process::id();
        let (net, host_addr, peer_addr) = addresses(pid);
        if let Some(route) = std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|r| overlapping_route(&r, net))
        {
            return Err(NetError::AddressInUse {
                net: format!("{net}/30"),
                route,
            });
        }
        let netns = new_namespace().map_err(NetError::Namespace)?;
        let mut veth = Veth {
            ip,
            host: format!("zcp{pid}s"),
            peer: format!("zcp{pid}p"),
            peer_addr,
            netns,
            created: false,
        };
        // iproute2 opens a netns argument that contains a '/' as a path: this one is our own
        // descriptor of the namespace, seen through /proc.
        let netns_path = format!("/proc/{pid}/fd/{}", veth.netns.as_raw_fd());
        let (host, peer) = (veth.host.clone(), veth.peer.clone());
        veth.ip(&[
            "link",
            "add",
            &host,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &netns_path,
        ])?;
        veth.created = true;
        // From here on, dropping `veth` (an error below) deletes the pair.
        quiet_ipv6(&host);
        veth.ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host])?;
        veth.ip(&["link", "set", &host, "up"])?;
        let inside = |veth: &Veth| -> Result<(), NetError> {
            quiet_ipv6(&peer);
            veth.ip(&["addr", "add", &format!("{peer_addr}/30"), "dev", &peer])?;
            veth.ip(&["link", "set", &peer, "up"])
        };
        in_namespace(&veth.netns, || inside(&veth)).map_err(NetError::Namespace)??;
        Ok(veth)
    }

    /// Runs `ip ARGS` in the calling thread's namespace and keeps its error message.
    fn ip(&self, args: &[&str]) -> Result<(), NetError> {
        let command = args.join(" ");
        let out = Command::new(&self.ip)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C at the terminal goes to zcprof, which cleans up in
            // order, and not to an `ip` halfway through setting the pair up or down.
            .process_group(0)
            .output()
            .map_err(|e| NetError::Ip {
                command: command.clone(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let message = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Err(NetError::Ip {
            command,
            message: if message.is_empty() {
                format!("exit status {}", out.status)
            } else {
                message
            },
        })
    }

    /// Deletes the pair (deleting either end deletes both) and checks that the host end is
    /// gone. The namespace goes when the descriptor closes.
    fn remove(&mut self) -> Result<(), NetError> {
        if !self.created {
            return Ok(());
        }
        let host = self.host.clone();
        let deleted = self.ip(&["link", "del", &host]);
        if link_exists(&host) {
            return Err(deleted.err().unwrap_or(NetError::Leftover(host)));
        }
        self.created = false;
        Ok(())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // An error or Ctrl-C path: delete now rather than when the namespace is freed. If even
        // that fails, closing the descriptor below still lets the kernel remove the pair.
        if let Err(e) = self.remove() {
            log::warn!("{e}");
        }
    }
}

/// An interface of that name exists in the calling thread's namespace.
fn link_exists(name: &str) -> bool {
    CString::new(name).is_ok_and(|c| {
        // SAFETY: valid C string.
        unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_pid_inside_10_128_0_0_slash_9() {
        for pid in [1, 63, 64, 4242, 16383, 16384, 2_097_151, 4_194_304] {
            let (net, host, peer) = addresses(pid);
            let [a, b, _, d] = net.octets();
            assert_eq!(a, 10);
            assert!(b >= 128, "{net}");
            assert_eq!(d % 4, 0, "{net} is the start of a /30");
            assert_eq!(u32::from(host), u32::from(net) + 1);
            assert_eq!(u32::from(peer), u32::from(net) + 2);
        }
        // Neighbouring pids get different networks.
        assert_ne!(addresses(4242).0, addresses(4243).0);
        assert_ne!(addresses(4242).0, addresses(4242 + 64).0);
    }

    #[test]
    fn only_overlapping_routes_other_than_default_count() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     wg0\t0000800A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        // 10.128.0.0/16 on wg0 covers 10.128.1.4/30.
        assert_eq!(
            overlapping_route(table, Ipv4Addr::new(10, 128, 1, 4)).as_deref(),
            Some("10.128.0.0/16 dev wg0")
        );
        // Neither the default route nor 192.0.2.0/24 covers 10.200.1.4.
        assert_eq!(overlapping_route(table, Ipv4Addr::new(10, 200, 1, 4)), None);
    }

    #[test]
    fn loopback_is_fixed() {
        let lo = Network::Loopback;
        assert_eq!(lo.device(), "lo");
        assert_eq!(lo.receiver_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(matches!(
            lo.set_scatter_gather(false),
            Err(NetError::FixedScatterGather)
        ));
        let listener = lo.listen().unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn a_local_address_names_its_interface() {
        assert_eq!(
            interface_of(IpAddr::V4(Ipv4Addr::LOCALHOST)).as_deref(),
            Some("lo")
        );
        assert_eq!(
            interface_of(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))).as_deref(),
            Some("lo")
        );
        // 240.0.0.0/4 is reserved: nobody's address or network.
        assert_eq!(interface_of(IpAddr::V4(Ipv4Addr::new(240, 0, 0, 77))), None);
    }

    #[test]
    fn a_missing_link_does_not_exist() {
        assert!(link_exists("lo"));
        assert!(!link_exists("zcprof-no-such-if0"));
    }
}
