//! `zcprof top` without a screen: a plain table per interval (`-b`, as `top -b` prints), or one
//! JSON object per line per interval (`--format json`), for scripts. Shared with the screen:
//! the columns, the rate cells and the legend.
use std::io::Write as _;

use super::{Device, Display, Interval, Moved, Options, Row, SortKey};

/// A column after the row's name.
pub struct Column {
    pub heading: &'static str,
    /// The sort key that ranks by it.
    pub key: SortKey,
    /// Its figure.
    pub get: fn(&Moved) -> u64,
}

/// The columns after the row's name.
pub const COLUMNS: [Column; 6] = [
    Column {
        heading: "COPIED",
        key: SortKey::Copied,
        get: |m| m.sent_copied_bytes,
    },
    Column {
        heading: "BY REF",
        key: SortKey::ByReference,
        get: |m| m.sent_by_reference_bytes,
    },
    Column {
        heading: "ZEROCOPY",
        key: SortKey::Zerocopy,
        get: |m| m.sent_zerocopy_bytes,
    },
    Column {
        heading: "RECEIVED",
        key: SortKey::Received,
        get: |m| m.received_bytes,
    },
    Column {
        heading: "PKT COPY",
        key: SortKey::PacketCopies,
        get: |m| m.packet_copied_bytes,
    },
    Column {
        heading: "DISK RD",
        key: SortKey::DiskRead,
        get: |m| m.disk_read_bytes,
    },
];

/// How each column is measured, one line each: the hooks behind it, and what is not measured.
pub const LEGEND: [&str; 5] = [
    "COPIED, BY REF, ZEROCOPY: bytes TCP sockets took from the process per second, by how the \
     send gave them (raw_tp tcp_sendmsg_locked reads the message flags, raw_tp sock_send_length \
     the bytes taken): copied from its memory, page references (sendfile, splice), or flagged \
     MSG_ZEROCOPY/SEND_ZC",
    "ZEROCOPY's verdict (pinned, or copied after all) goes only to the sender's error queue and \
     has no tracepoint: unavailable here (zcprof run --method msg-zerocopy reads it there)",
    "RECEIVED: socket buffer -> the process's memory (raw_tp skb_copy_datagram_iovec), with \
     --receives (- without)",
    "PKT COPY: payload of the process's packets in linear data beyond what it wrote by copying \
     (raw_tp net_dev_start_xmit): page cache -> packet copies of software segmentation where a \
     device lacks scatter-gather; derived",
    "DISK RD: block read requests the process issued (raw_tp block_rq_issue)",
];

/// The sort key's name as `--sort` takes it.
#[must_use]
pub fn sort_name(key: SortKey) -> &'static str {
    match key {
        SortKey::Total => "total",
        SortKey::Copied => "copied",
        SortKey::ByReference => "by-reference",
        SortKey::Zerocopy => "zerocopy",
        SortKey::Received => "received",
        SortKey::PacketCopies => "packet-copies",
        SortKey::DiskRead => "disk-read",
    }
}

/// Column `c`'s cell of `moved` in interval `i`: its rate, or `-` where it was not counted.
#[must_use]
pub fn cell(i: &Interval, c: &Column, moved: &Moved) -> String {
    if c.key == SortKey::Received && !i.receives_counted {
        return "-".to_owned();
    }
    rate_cell(i.rate((c.get)(moved)))
}

/// A rate in bytes per second, in at most 6 characters: `0`, `512`, `1.5K`, `12.3M`, `1.2G`.
#[must_use]
pub fn rate_cell(per_second: f64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if per_second < 0.5 {
        return "0".to_owned();
    }
    if per_second < 1024.0 {
        return format!("{per_second:.0}");
    }
    let mut v = per_second / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 100.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// The devices, as the header shows them: `lo (virtual, SG on)`.
#[must_use]
pub fn devices_line(devices: &[Device]) -> String {
    let shown: Vec<String> = devices
        .iter()
        .map(|d| {
            let sg = match d.scatter_gather {
                Some(true) => "SG on",
                Some(false) => "SG off",
                None => "SG unknown",
            };
            let kind = if d.physical { "physical" } else { "virtual" };
            format!("{} ({kind}, {sg})", d.name)
        })
        .collect();
    format!("devices: {}", shown.join(", "))
}

/// The host's totals per second, as the header shows them.
#[must_use]
pub fn totals_line(i: &Interval) -> String {
    let cells: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.heading.to_lowercase(), cell(i, c, &i.totals)))
        .collect();
    format!("host, bytes/s: {}", cells.join(", "))
}

/// `--by`'s value as the command line takes it.
#[must_use]
pub fn by_name(by: super::By) -> &'static str {
    match by {
        super::By::Process => "process",
        super::By::Command => "command",
        super::By::Cgroup => "cgroup",
    }
}

/// A row's first cell: its process id (by process), else how many processes it holds.
#[must_use]
pub fn id_cell(r: &Row) -> String {
    r.pid
        .map_or_else(|| r.processes.to_string(), |p| p.to_string())
}

/// The table heading: the first column says what a row is.
#[must_use]
pub fn first_heading(i: &Interval) -> (&'static str, &'static str) {
    match i.by {
        super::By::Process => ("PID", "COMMAND"),
        super::By::Command => ("PROCS", "COMMAND"),
        super::By::Cgroup => ("PROCS", "CGROUP"),
    }
}

/// The row's second cell: the command, or the cgroup of a row by cgroup.
#[must_use]
pub fn second_cell(i: &Interval, r: &Row) -> String {
    match i.by {
        super::By::Cgroup => r.cgroup.clone().unwrap_or_default(),
        _ => r.command.clone(),
    }
}

/// One interval as plain text: a heading line, the totals, the devices, the table.
#[must_use]
pub fn table(i: &Interval, opts: &Options) -> String {
    let clock = chrono_free_clock(i.time);
    let mut out = format!(
        "zcprof top {clock}  interval {:.2} s  by {}  sorted by {}  counting {}\n",
        i.interval_s,
        by_name(i.by),
        sort_name(i.sort),
        opts.what
    );
    out.push_str(&totals_line(i));
    out.push('\n');
    out.push_str(&devices_line(&i.devices));
    out.push('\n');
    let (first, second) = first_heading(i);
    out.push_str(&format!("{first:>7} {second:<16}"));
    for c in COLUMNS {
        out.push_str(&format!(" {:>8}", c.heading));
    }
    out.push('\n');
    let shown = opts.rows.unwrap_or(usize::MAX);
    for r in i.rows.iter().take(shown) {
        let id = id_cell(r);
        let name: String = second_cell(i, r).chars().take(16).collect();
        out.push_str(&format!("{id:>7} {name:<16}"));
        for c in &COLUMNS {
            out.push_str(&format!(" {:>8}", cell(i, c, &r.moved)));
        }
        out.push('\n');
    }
    if i.rows.len() > shown {
        out.push_str(&format!(
            "+{} more rows (-n to show more)\n",
            i.rows.len() - shown
        ));
    }
    out
}

/// `time` (seconds since the epoch) as UTC `HH:MM:SS`.
fn chrono_free_clock(time: f64) -> String {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a clock time"
    )]
    let s = time as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Prints one interval to stdout, as the display asks, and flushes it (a pipe sees each
/// interval as it ends).
///
/// # Errors
/// Stdout cannot be written (a closed pipe).
pub fn print(i: &Interval, opts: &Options) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match opts.display {
        Display::Json => {
            let mut shown = i.clone();
            if let Some(n) = opts.rows {
                shown.rows.truncate(n);
            }
            let line = serde_json::to_string(&shown).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        }
        _ => writeln!(out, "{}", table(i, opts))?,
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::{By, Row};

    #[test]
    fn rates_fit_six_characters() {
        assert_eq!(rate_cell(0.0), "0");
        assert_eq!(rate_cell(512.0), "512");
        assert_eq!(rate_cell(1536.0), "1.5K");
        assert_eq!(rate_cell(12.3 * 1024.0 * 1024.0), "12.3M");
        assert_eq!(rate_cell(300.0 * 1024.0 * 1024.0), "300M");
        assert_eq!(rate_cell(1.25 * 1024.0 * 1024.0 * 1024.0), "1.2G");
    }

    #[test]
    fn a_plain_table_has_one_line_per_row_and_says_what_was_cut() {
        let row = |pid, copied| Row {
            pid: Some(pid),
            command: format!("p{pid}"),
            cgroup: None,
            processes: 1,
            moved: Moved {
                sent_copied_bytes: copied,
                ..Moved::default()
            },
        };
        let i = Interval {
            time: 3661.0,
            interval_s: 2.0,
            by: By::Process,
            sort: SortKey::Copied,
            receives_counted: false,
            totals: Moved {
                sent_copied_bytes: 6144,
                ..Moved::default()
            },
            devices: vec![Device {
                name: "lo".into(),
                physical: false,
                scatter_gather: Some(true),
            }],
            rows: vec![row(7, 4096), row(8, 2048)],
        };
        let opts = Options {
            interval: std::time::Duration::from_secs(2),
            by: By::Process,
            sort: SortKey::Copied,
            rows: Some(1),
            count: None,
            display: Display::Plain,
            what: "every process".into(),
        };
        let text = table(&i, &opts);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("zcprof top 01:01:01"), "{text}");
        assert!(lines[1].contains("copied 3.0K"), "{text}");
        assert!(lines[1].contains("received -"), "{text}");
        assert_eq!(lines[2], "devices: lo (virtual, SG on)");
        assert!(lines[3].trim_start().starts_with("PID COMMAND"), "{text}");
        assert!(
            lines[4].contains("p7") && lines[4].contains("2.0K"),
            "{text}"
        );
        assert_eq!(lines[5], "+1 more rows (-n to show more)");
    }
}
