//! Device names: what the device numbers and interface names in the counts mean, resolved
//! from sysfs while measuring and saved with traces (which may be read on another machine).
use std::{collections::BTreeMap, path::Path};

use crate::{
    collect::Counts,
    model::{Devices, DiskRow, DmaMappedRow, NetRow},
};

/// What the device numbers and names in the counts mean, read from sysfs while measuring (and
/// saved in traces, which may be read on another machine).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DeviceNames {
    /// Block device names by kernel `dev_t`.
    pub disk: BTreeMap<u32, String>,
    /// Network devices by name: (has a physical device, scatter-gather on).
    pub net: BTreeMap<String, (bool, Option<bool>)>,
    /// The bus id (as the DMA API names the device: a PCI address) of each physical network
    /// device the counts name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub net_bus_id: BTreeMap<String, String>,
}

impl DeviceNames {
    /// Looks up the devices that appear in `counts`.
    #[must_use]
    pub fn resolve(counts: &Counts) -> DeviceNames {
        let disk = counts
            .disk_io
            .keys()
            .map(|&dev| {
                // Kernel dev_t: major << 20 | minor.
                let (major, minor) = (dev >> 20, dev & 0xf_ffff);
                let name =
                    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
                        .ok()
                        .and_then(|u| {
                            u.lines()
                                .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_owned))
                        })
                        .unwrap_or_else(|| format!("{major}:{minor}"));
                (dev, name)
            })
            .collect();
        let net = counts
            .net_xmit
            .keys()
            .map(|name| {
                let physical = Path::new("/sys/class/net")
                    .join(name)
                    .join("device")
                    .exists();
                (
                    name.clone(),
                    (physical, crate::caps::nic::nic(name).scatter_gather),
                )
            })
            .collect();
        let net_bus_id = counts
            .net_xmit
            .keys()
            .filter_map(|name| {
                let link =
                    std::fs::read_link(Path::new("/sys/class/net").join(name).join("device"));
                let id = link.ok()?.file_name()?.to_string_lossy().into_owned();
                Some((name.clone(), id))
            })
            .collect();
        DeviceNames {
            disk,
            net,
            net_bus_id,
        }
    }

    /// The device rows of `counts`.
    #[must_use]
    pub fn devices(&self, counts: &Counts) -> Devices {
        let disk = counts
            .disk_io
            .iter()
            .map(|(&dev, io)| DiskRow {
                device: self
                    .disk
                    .get(&dev)
                    .cloned()
                    .unwrap_or_else(|| format!("{}:{}", dev >> 20, dev & 0xf_ffff)),
                read_bytes: io.read_bytes,
                write_bytes: io.write_bytes,
                requests: io.requests,
            })
            .collect();
        let net = counts
            .net_xmit
            .iter()
            .map(|(name, x)| {
                let (physical, scatter_gather) = self.net.get(name).copied().unwrap_or_default();
                let dma_mapped = self.net_bus_id.get(name).and_then(|id| {
                    let m = counts.dma_to_device.get(id)?;
                    Some(DmaMappedRow {
                        bus_id: id.clone(),
                        bytes: m.bytes,
                        maps: m.maps,
                    })
                });
                NetRow {
                    device: name.clone(),
                    bytes: x.bytes,
                    packets: x.packets,
                    physical,
                    scatter_gather,
                    dma_mapped,
                }
            })
            .collect();
        Devices { disk, net }
    }
}
