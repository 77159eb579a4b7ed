//! The Prometheus exposition of `zcprof serve`: the series of one scrape rendered as
//! `OpenMetrics` text (prometheus-client's encoder), or as the classic Prometheus text format
//! (0.0.4) for clients that do not ask for `OpenMetrics`.
use std::collections::BTreeMap;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use zcprof_common::serve::ServeStat;

/// The content types of the two formats.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// Everything one scrape shows.
#[derive(Clone, Debug, Default)]
pub struct Scrape<'a> {
    /// Totals by process name (or "other").
    pub totals: Option<&'a BTreeMap<String, ServeStat>>,
    /// The cgroup label every series carries (`--cgroup`), if any.
    pub cgroup: Option<&'a str>,
    /// Lost events by reason, each a list of per-CPU counts.
    pub lost: Vec<(&'static str, Vec<u64>)>,
    /// Each hook's target and whether it is attached.
    pub hooks: Vec<(&'static str, bool)>,
    /// The kernel release, for the build info.
    pub kernel: &'a str,
    /// Receives are counted (`--receives`): the socket -> user copy path is shown.
    pub receives: bool,
}

/// Errors while rendering.
#[derive(Debug, thiserror::Error)]
pub enum ExpositionError {
    /// The encoder failed (it writes to a String, so only on a bug).
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

/// Renders `scrape` as `OpenMetrics` text (`openmetrics`) or as Prometheus text 0.0.4.
///
/// # Errors
/// Only when the encoder fails.
pub fn render(scrape: &Scrape, openmetrics: bool) -> Result<String, ExpositionError> {
    let mut registry = Registry::default();
    let up = Gauge::<i64>::default();
    registry.register(
        "zcprof_up",
        "1 while zcprof serve has its programs attached",
        up.clone(),
    );
    up.set(1);
    let build = Family::<Labels, Gauge>::default();
    registry.register(
        "zcprof_build_info",
        "zcprof's version and the kernel it runs on (always 1)",
        build.clone(),
    );
    build
        .get_or_create(&vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("kernel", scrape.kernel.to_owned()),
        ])
        .set(1);
    let hooks = Family::<Labels, Gauge>::default();
    registry.register(
        "zcprof_hook_attached",
        "1 when the raw tracepoint is attached, 0 when this kernel refused it",
        hooks.clone(),
    );
    for (target, ok) in &scrape.hooks {
        hooks
            .get_or_create(&vec![("tracepoint", (*target).to_owned())])
            .set(i64::from(*ok));
    }
    let lost = counter_family(
        &mut registry,
        "zcprof_lost_events",
        "Events the kernel side could not count (a full table), per CPU",
    );
    for (reason, per_cpu) in &scrape.lost {
        for (cpu, n) in per_cpu.iter().enumerate() {
            lost.get_or_create(&vec![
                ("cpu", cpu.to_string()),
                ("reason", (*reason).to_owned()),
            ])
            .inc_by(*n);
        }
    }
    per_comm(&mut registry, scrape);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(if openmetrics {
        text
    } else {
        prometheus_text(&text)
    })
}

/// The per-name counters.
fn per_comm(registry: &mut Registry, scrape: &Scrape) {
    let send = counter_family(
        registry,
        "zcprof_socket_send_bytes",
        "Bytes TCP sockets took from senders: copied from user memory, by_reference (page \
         references: sendfile, splice), or zerocopy (flagged MSG_ZEROCOPY or SEND_ZC: pinned \
         pages, unless the kernel copied after all, which it tells only the sender)",
    );
    let copies = counter_family(
        registry,
        "zcprof_copy_bytes",
        "Bytes the CPU copied, by copy path (user_to_socket: a send's copy into socket buffers; \
         socket_to_user, with --receives: a receive's copy out of them)",
    );
    let disk = counter_family(
        registry,
        "zcprof_disk_bytes",
        "Bytes of block requests the process name issued, by direction (writeback is the \
         kernel's flusher threads)",
    );
    let nic_packets = counter_family(
        registry,
        "zcprof_nic_packets",
        "Packets of the name's TCP sockets handed to physical network devices",
    );
    let nic_bytes = counter_family(
        registry,
        "zcprof_nic_bytes",
        "Bytes (headers included) of the name's TCP packets handed to physical network devices",
    );
    let switches = counter_family(
        registry,
        "zcprof_sched_switches",
        "Times tasks of the name were switched off a CPU",
    );
    let Some(totals) = scrape.totals else {
        return;
    };
    for (comm, s) in totals {
        let labels = |extra: Option<(&'static str, &str)>| -> Labels {
            let mut l: Labels = vec![("comm", comm.clone())];
            if let Some(cgroup) = scrape.cgroup {
                l.push(("cgroup", cgroup.to_owned()));
            }
            if let Some((k, v)) = extra {
                l.push((k, v.to_owned()));
            }
            l
        };
        let ServeStat {
            send_copied,
            send_by_reference,
            recv_copied,
            disk_read,
            disk_written,
            nic_packets: packets,
            nic_bytes: bytes,
            switches: switch_count,
            send_zerocopy,
            // top's; serve does not export it.
            packet_linear: _,
        } = *s;
        send.get_or_create(&labels(Some(("how", "copied"))))
            .inc_by(send_copied);
        send.get_or_create(&labels(Some(("how", "by_reference"))))
            .inc_by(send_by_reference);
        send.get_or_create(&labels(Some(("how", "zerocopy"))))
            .inc_by(send_zerocopy);
        copies
            .get_or_create(&labels(Some(("path", "user_to_socket"))))
            .inc_by(send_copied);
        if scrape.receives {
            copies
                .get_or_create(&labels(Some(("path", "socket_to_user"))))
                .inc_by(recv_copied);
        }
        disk.get_or_create(&labels(Some(("direction", "read"))))
            .inc_by(disk_read);
        disk.get_or_create(&labels(Some(("direction", "write"))))
            .inc_by(disk_written);
        nic_packets.get_or_create(&labels(None)).inc_by(packets);
        nic_bytes.get_or_create(&labels(None)).inc_by(bytes);
        switches.get_or_create(&labels(None)).inc_by(switch_count);
    }
}

/// `OpenMetrics` text as the classic Prometheus text format: a counter family is named with its
/// `_total` suffix there, and there is no `# EOF` or `# UNIT`.
#[must_use]
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(totals: &BTreeMap<String, ServeStat>) -> Scrape<'_> {
        Scrape {
            totals: Some(totals),
            cgroup: None,
            lost: vec![("socket_table_full", vec![0, 2])],
            hooks: vec![("sock_send_length", true)],
            kernel: "6.18",
            receives: false,
        }
    }

    #[test]
    fn send_bytes_have_the_documented_name_and_labels() {
        let totals = BTreeMap::from([(
            "nginx".to_owned(),
            ServeStat {
                send_by_reference: 37_748_736,
                send_copied: 12,
                ..ServeStat::default()
            },
        )]);
        let text = render(&scrape(&totals), false).unwrap();
        assert!(
            text.contains(
                "zcprof_socket_send_bytes_total{comm=\"nginx\",how=\"by_reference\"} 37748736"
            ),
            "{text}"
        );
        assert!(text.contains("zcprof_socket_send_bytes_total{comm=\"nginx\",how=\"copied\"} 12"));
        assert!(text.contains("# TYPE zcprof_socket_send_bytes_total counter"));
        assert!(text.contains("zcprof_up 1"));
        assert!(
            text.contains("zcprof_lost_events_total{cpu=\"1\",reason=\"socket_table_full\"} 2")
        );
        assert!(!text.contains("# EOF"));
        let om = render(&scrape(&totals), true).unwrap();
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE zcprof_socket_send_bytes counter"));
    }

    #[test]
    fn a_cgroup_is_a_label_of_every_series() {
        let totals = BTreeMap::from([("nginx".to_owned(), ServeStat::default())]);
        let mut s = scrape(&totals);
        s.cgroup = Some("system.slice/nginx.service");
        let text = render(&s, false).unwrap();
        assert!(text.contains(
            "zcprof_sched_switches_total{comm=\"nginx\",cgroup=\"system.slice/nginx.service\"} 0"
        ));
    }
}
