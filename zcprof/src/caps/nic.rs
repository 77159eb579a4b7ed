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

/// Asks the driver of `name` one legacy ethtool "get" question.
fn ethtool_get(sock: &std::net::UdpSocket, name: &str, cmd: u32) -> Option<bool> {
    let mut value = EthtoolValue { cmd, data: 0 };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &raw mut value,
        pad: [0; 16],
    };
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &raw mut req) };
    (ret == 0).then_some(value.data != 0)
}

/// The state of interface `name`.
#[must_use]
pub fn nic(name: &str) -> Nic {
    let physical = Path::new("/sys/class/net")
        .join(name)
        .join("device")
        .exists();
    // Any socket will do for the ioctl; a loopback UDP one needs no privileges.
    let sock = std::net::UdpSocket::bind(("127.0.0.1", 0)).ok();
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
    }
}
