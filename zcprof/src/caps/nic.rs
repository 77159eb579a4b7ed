//! Network interfaces as the textbook's "sendfile + SG-DMA" row needs them: is the device
//! physical (its transmits are DMA), and are scatter-gather and checksum offload on (without
//! scatter-gather the kernel must copy spliced pages into a linear buffer).
use std::{fs, os::fd::AsRawFd as _, path::Path};

/// One interface's state, read from sysfs and the ethtool ioctl.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Nic {
    pub name: String,
    /// Backed by a device (has /sys/class/net/<name>/device); virtual ones do no DMA.
    pub physical: bool,
    /// `None` when the driver does not answer the ethtool query.
    pub scatter_gather: Option<bool>,
    pub tx_checksum: Option<bool>,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_SSG: u32 = 0x19;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    pad: [u8; 16],
}

/// One legacy ethtool command (`cmd` with its value) on interface `name`; returns the value
/// the driver left in the request.
fn ethtool(sock: &std::net::UdpSocket, name: &str, cmd: u32, data: u32) -> std::io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &raw mut value,
        pad: [0; 16],
    };
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &raw mut req) };
    if ret == 0 {
        Ok(value.data)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks the driver of `name` one legacy ethtool "get" question.
fn ethtool_get(sock: &std::net::UdpSocket, name: &str, cmd: u32) -> Option<bool> {
    ethtool(sock, name, cmd, 0).ok().map(|v| v != 0)
}

/// A socket for the ioctl: any will do, and a loopback UDP one needs no privileges. The ioctl
/// acts on the interface of that name in the socket's network namespace.
fn ioctl_socket() -> std::io::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind(("127.0.0.1", 0))
}

/// Scatter-gather on interface `name`, as its driver reports it now.
#[must_use]
pub fn scatter_gather(name: &str) -> Option<bool> {
    ioctl_socket()
        .ok()
        .and_then(|s| ethtool_get(&s, name, ETHTOOL_GSG))
}

/// Turns scatter-gather on interface `name` on or off (`ethtool -K name sg on|off`), with the
/// legacy ioctl so that no ethtool binary is needed. Needs `CAP_NET_ADMIN`. The kernel may
/// quietly keep another state (a feature the driver cannot change, or one that depends on
/// another): read it back with `scatter_gather`.
///
/// # Errors
/// The kernel's refusal (`EPERM`, `EOPNOTSUPP`, `ENODEV`).
pub fn set_scatter_gather(name: &str, on: bool) -> std::io::Result<()> {
    ethtool(&ioctl_socket()?, name, ETHTOOL_SSG, u32::from(on)).map(|_| ())
}

/// The state of interface `name`.
#[must_use]
pub fn nic(name: &str) -> Nic {
    let physical = Path::new("/sys/class/net")
        .join(name)
        .join("device")
        .exists();
    let sock = ioctl_socket().ok();
    let ask = |cmd| sock.as_ref().and_then(|s| ethtool_get(s, name, cmd));
    Nic {
        name: name.to_owned(),
        physical,
        scatter_gather: ask(ETHTOOL_GSG),
        tx_checksum: ask(ETHTOOL_GTXCSUM),
    }
}

/// Every interface of this network namespace, by name.
#[must_use]
pub fn interfaces() -> Vec<Nic> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.iter().map(|n| nic(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_virtual_and_answers_ethtool() {
        // Every Linux network namespace has lo; its driver answers the legacy queries.
        let lo = nic("lo");
        assert!(!lo.physical);
        assert!(lo.scatter_gather.is_some(), "{lo:?}");
        assert!(nic("zcprof-no-such-if0").scatter_gather.is_none());
        assert_eq!(scatter_gather("lo"), lo.scatter_gather);
    }

    #[test]
    fn setting_a_missing_interface_is_refused() {
        // ENODEV as root, EPERM without CAP_NET_ADMIN: refused either way, nothing changed.
        assert!(set_scatter_gather("zcprof-no-such-if0", false).is_err());
        assert!(set_scatter_gather("zcprof-name-longer-than-ifnamsiz", false).is_err());
    }
}
