//! One interval of `zcprof top`: the kernel's totals by process and name turned into what each
//! moved in the interval, grouped into rows (by process, command name or cgroup) and sorted.
//! Pure: the kernel's maps and /proc are read by the caller.
use std::{
    collections::{BTreeMap, HashMap},
    hash::BuildHasher,
};

use zcprof_common::serve::{ServeOwner, ServeStat};

use crate::model::fleet::{label, since};

/// What a row stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    /// One row per process (thread group).
    #[default]
    Process,
    /// One row per command name (a task's name, as /proc/PID/comm shows it).
    Command,
    /// One row per cgroup v2 (a container, a systemd service).
    Cgroup,
}

/// What the rows are ranked by: one of the columns, or all the bytes a row moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SortKey {
    /// Every byte the row moved: sent (each way), received, copied into packets, disk.
    #[default]
    Total,
    /// Bytes sockets took by copying them from the sender's memory.
    Copied,
    /// Bytes sockets took as page references (sendfile, splice).
    ByReference,
    /// Bytes of sends flagged `MSG_ZEROCOPY` or `io_uring`'s `SEND_ZC`.
    Zerocopy,
    /// Bytes copied from socket buffers to the receiver's memory.
    Received,
    /// Payload copied into packets beyond what was written by copying (a device without
    /// scatter-gather).
    PacketCopies,
    /// Bytes of block read requests.
    DiskRead,
}

impl SortKey {
    /// The keys in the order the `s` key steps through them.
    pub const ALL: [SortKey; 7] = [
        SortKey::Total,
        SortKey::Copied,
        SortKey::ByReference,
        SortKey::Zerocopy,
        SortKey::Received,
        SortKey::PacketCopies,
        SortKey::DiskRead,
    ];

    /// The next key (`forward`) or the one before, wrapping.
    #[must_use]
    pub fn step(self, forward: bool) -> SortKey {
        let at = SortKey::ALL.iter().position(|&k| k == self).unwrap_or(0);
        let n = SortKey::ALL.len();
        SortKey::ALL[if forward {
            (at + 1) % n
        } else {
            (at + n - 1) % n
        }]
    }
}

/// Bytes moved in one interval, by path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    /// Sockets took them by copying from the sender's memory (write, send, ...).
    pub sent_copied_bytes: u64,
    /// Sockets took them as page references (sendfile, splice, vmsplice + splice).
    pub sent_by_reference_bytes: u64,
    /// Sends flagged `MSG_ZEROCOPY` or `SEND_ZC`: pinned pages unless the kernel copied after
    /// all, which it tells only the sender.
    pub sent_zerocopy_bytes: u64,
    /// Copied from socket buffers to the receiver's memory.
    pub received_bytes: u64,
    /// Payload the row's packets carried in linear data beyond what it wrote by copying:
    /// copied there from the page cache by software segmentation for a device without
    /// scatter-gather.
    pub packet_copied_bytes: u64,
    /// Block read requests the row issued.
    pub disk_read_bytes: u64,
    /// Block write requests the row issued.
    pub disk_written_bytes: u64,
}

impl Moved {
    /// Every byte the row moved.
    #[must_use]
    pub fn total(&self) -> u64 {
        let Moved {
            sent_copied_bytes,
            sent_by_reference_bytes,
            sent_zerocopy_bytes,
            received_bytes,
            packet_copied_bytes,
            disk_read_bytes,
            disk_written_bytes,
        } = *self;
        sent_copied_bytes
            + sent_by_reference_bytes
            + sent_zerocopy_bytes
            + received_bytes
            + packet_copied_bytes
            + disk_read_bytes
            + disk_written_bytes
    }

    /// The figure `key` ranks by.
    #[must_use]
    pub fn get(&self, key: SortKey) -> u64 {
        match key {
            SortKey::Total => self.total(),
            SortKey::Copied => self.sent_copied_bytes,
            SortKey::ByReference => self.sent_by_reference_bytes,
            SortKey::Zerocopy => self.sent_zerocopy_bytes,
            SortKey::Received => self.received_bytes,
            SortKey::PacketCopies => self.packet_copied_bytes,
            SortKey::DiskRead => self.disk_read_bytes,
        }
    }

    fn add(&mut self, other: &Moved) {
        self.sent_copied_bytes += other.sent_copied_bytes;
        self.sent_by_reference_bytes += other.sent_by_reference_bytes;
        self.sent_zerocopy_bytes += other.sent_zerocopy_bytes;
        self.received_bytes += other.received_bytes;
        self.packet_copied_bytes += other.packet_copied_bytes;
        self.disk_read_bytes += other.disk_read_bytes;
        self.disk_written_bytes += other.disk_written_bytes;
    }
}

/// Payload copied into packets so far: linear payload beyond the bytes written by copying
/// (which a socket may place in linear data itself). Kept as a running total, so packets that
/// leave an interval after their send was counted add nothing.
fn packet_copies(s: &ServeStat) -> u64 {
    s.packet_linear
        .saturating_sub(s.send_copied + s.send_zerocopy)
}

/// What `now` adds to `before` (an entry made anew in the kernel counts whole).
#[must_use]
pub fn moved(now: &ServeStat, before: &ServeStat) -> Moved {
    let d = since(now, before);
    let (extra_now, extra_before) = (packet_copies(now), packet_copies(before));
    let remade = now.packet_linear < before.packet_linear;
    Moved {
        sent_copied_bytes: d.send_copied,
        sent_by_reference_bytes: d.send_by_reference,
        sent_zerocopy_bytes: d.send_zerocopy,
        received_bytes: d.recv_copied,
        packet_copied_bytes: if remade {
            extra_now
        } else {
            extra_now.saturating_sub(extra_before)
        },
        disk_read_bytes: d.disk_read,
        disk_written_bytes: d.disk_written,
    }
}

/// A row: a process, a command name or a cgroup, and what it moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// The process (a row by process), else none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The command name: the process's (by process), the row's (by command), the busiest
    /// process's (by cgroup).
    pub command: String,
    /// The cgroup v2 path (a row by cgroup, or a process whose cgroup could be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Processes in the row.
    pub processes: usize,
    #[serde(flatten)]
    pub moved: Moved,
}

/// What /proc says of a process, looked up by the caller (and kept after it exits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// /proc/PID/comm of the process (its main thread).
    pub command: Option<String>,
    /// The cgroup v2 path from /proc/PID/cgroup.
    pub cgroup: Option<String>,
}

/// The rows of one interval, by `by`, sorted by `sort` (largest first, then by name), without
/// rows that moved nothing. `moved` holds what each kernel key moved in the interval.
#[must_use]
pub fn rows<S: BuildHasher, T: BuildHasher>(
    moved: &HashMap<ServeOwner, Moved, S>,
    info: &HashMap<u32, ProcessInfo, T>,
    by: By,
    sort: SortKey,
) -> Vec<Row> {
    // The owners of each group, keyed as the row's identity.
    let mut groups: BTreeMap<String, Vec<(&ServeOwner, &Moved)>> = BTreeMap::new();
    for (owner, m) in moved {
        if m.total() == 0 {
            continue;
        }
        let known = info.get(&owner.tgid);
        let key = match by {
            By::Process => format!("{:010}", owner.tgid),
            By::Command => label(&owner.comm),
            By::Cgroup => known
                .and_then(|i| i.cgroup.clone())
                .unwrap_or_else(|| "?".to_owned()),
        };
        groups.entry(key).or_default().push((owner, m));
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, members)| row(by, &key, &members, info))
        .collect();
    self::sort(&mut rows, sort);
    rows
}

/// Ranks `rows` by `key`, largest first; ties by all they moved, then by name.
pub fn sort(rows: &mut [Row], key: SortKey) {
    rows.sort_by(|a, b| {
        b.moved
            .get(key)
            .cmp(&a.moved.get(key))
            .then_with(|| b.moved.total().cmp(&a.moved.total()))
            .then_with(|| a.command.cmp(&b.command))
            .then_with(|| a.pid.cmp(&b.pid))
            .then_with(|| a.cgroup.cmp(&b.cgroup))
    });
}

/// One group's row.
fn row<T: BuildHasher>(
    by: By,
    key: &str,
    members: &[(&ServeOwner, &Moved)],
    info: &HashMap<u32, ProcessInfo, T>,
) -> Row {
    let mut moved = Moved::default();
    for (_, m) in members {
        moved.add(m);
    }
    let busiest = members
        .iter()
        .max_by_key(|(o, m)| (m.total(), std::cmp::Reverse(o.tgid)))
        .map(|(o, _)| **o)
        .unwrap_or_default();
    let known = info.get(&busiest.tgid);
    let command = match by {
        By::Command => key.to_owned(),
        _ => known
            .and_then(|i| i.command.clone())
            .unwrap_or_else(|| label(&busiest.comm)),
    };
    let mut pids: Vec<u32> = members.iter().map(|(o, _)| o.tgid).collect();
    pids.sort_unstable();
    pids.dedup();
    Row {
        pid: (by == By::Process).then_some(busiest.tgid),
        command,
        cgroup: match by {
            By::Cgroup => Some(key.to_owned()),
            _ => known.and_then(|i| i.cgroup.clone()),
        },
        processes: pids.len(),
        moved,
    }
}

/// The sum of every row.
#[must_use]
pub fn totals(rows: &[Row]) -> Moved {
    let mut sum = Moved::default();
    for r in rows {
        sum.add(&r.moved);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::serve::comm_key;

    fn owner(tgid: u32, comm: &str) -> ServeOwner {
        ServeOwner {
            tgid,
            comm: comm_key(comm.as_bytes()),
        }
    }

    fn sent(copied: u64, by_reference: u64) -> Moved {
        Moved {
            sent_copied_bytes: copied,
            sent_by_reference_bytes: by_reference,
            ..Moved::default()
        }
    }

    #[test]
    fn packets_copy_only_what_was_not_written_by_copying() {
        // nginx with sendfile on a device without scatter-gather: 300 B of headers written,
        // 1 MB sent by reference, all of it in the packets' linear data.
        let before = ServeStat::default();
        let now = ServeStat {
            send_copied: 300,
            send_by_reference: 1_000_000,
            packet_linear: 1_000_300,
            ..ServeStat::default()
        };
        let m = moved(&now, &before);
        assert_eq!(m.packet_copied_bytes, 1_000_000);
        // A copying sender whose packets leave in the next interval: nothing extra then.
        let later = ServeStat {
            send_copied: 2_000_300,
            packet_linear: 1_000_300 + 2_000_000,
            ..now
        };
        assert_eq!(moved(&later, &now).packet_copied_bytes, 0);
        // An entry made anew counts whole.
        assert_eq!(moved(&before, &now), Moved::default());
    }

    #[test]
    fn rows_group_and_rank_as_asked() {
        let moved: HashMap<ServeOwner, Moved> = [
            (owner(10, "nginx"), sent(5, 900)),
            (owner(11, "nginx"), sent(7, 100)),
            (owner(20, "cp"), sent(800, 0)),
            (owner(30, "idle"), Moved::default()),
        ]
        .into_iter()
        .collect();
        let info: HashMap<u32, ProcessInfo> = [
            (
                10,
                ProcessInfo {
                    command: Some("nginx".into()),
                    cgroup: Some("/system.slice/nginx.service".into()),
                },
            ),
            (
                11,
                ProcessInfo {
                    command: Some("nginx".into()),
                    cgroup: Some("/system.slice/nginx.service".into()),
                },
            ),
        ]
        .into_iter()
        .collect();
        let by_process = rows(&moved, &info, By::Process, SortKey::Copied);
        let order: Vec<Option<u32>> = by_process.iter().map(|r| r.pid).collect();
        assert_eq!(
            order,
            [Some(20), Some(11), Some(10)],
            "idle rows are left out"
        );
        let by_ref = rows(&moved, &info, By::Process, SortKey::ByReference);
        assert_eq!(by_ref[0].pid, Some(10));
        let by_command = rows(&moved, &info, By::Command, SortKey::Total);
        assert_eq!(by_command[0].command, "nginx");
        assert_eq!(by_command[0].processes, 2);
        assert_eq!(by_command[0].moved.total(), 1012);
        let by_cgroup = rows(&moved, &info, By::Cgroup, SortKey::Total);
        assert_eq!(
            by_cgroup[0].cgroup.as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(by_cgroup[1].cgroup.as_deref(), Some("?"));
        assert_eq!(totals(&by_cgroup).total(), 1812);
    }

    #[test]
    fn the_sort_key_steps_around() {
        assert_eq!(SortKey::Total.step(true), SortKey::Copied);
        assert_eq!(SortKey::Total.step(false), SortKey::DiskRead);
        assert_eq!(SortKey::DiskRead.step(true), SortKey::Total);
    }
}
