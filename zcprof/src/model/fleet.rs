//! The always-on exporter's series (`zcprof serve`): monotonic totals per process name, built
//! from the kernel's per-name counters scrape by scrape, with a cap on distinct names (the rest
//! summed as "other") and names whose tasks are gone dropped one scrape after they were last
//! shown.
use std::collections::{BTreeMap, HashMap, HashSet};

use zcprof_common::serve::ServeStat;

use crate::collect::serve::Comm;

/// Distinct process names exported as their own series; beyond it they are summed in `OTHER`.
pub const COMM_CAP: usize = 256;

/// The label of the names beyond `COMM_CAP`.
pub const OTHER: &str = "other";

/// What was last read of one kernel name.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    raw: ServeStat,
    /// Its tasks were gone at the last scrape (its final totals were shown then).
    gone: bool,
}

/// The exported totals and what the kernel showed at the last scrape.
#[derive(Debug, Default)]
pub struct Fleet {
    seen: HashMap<Comm, Seen>,
    /// Totals by label (a name, or `OTHER`).
    totals: BTreeMap<String, ServeStat>,
}

/// `now - before`, field by field; a field that went down was made anew in the kernel (its entry
/// evicted and made again), so all of `now` is new.
#[must_use]
pub fn since(now: &ServeStat, before: &ServeStat) -> ServeStat {
    let d = |n: u64, b: u64| if n >= b { n - b } else { n };
    ServeStat {
        send_copied: d(now.send_copied, before.send_copied),
        send_by_reference: d(now.send_by_reference, before.send_by_reference),
        recv_copied: d(now.recv_copied, before.recv_copied),
        disk_read: d(now.disk_read, before.disk_read),
        disk_written: d(now.disk_written, before.disk_written),
        nic_packets: d(now.nic_packets, before.nic_packets),
        nic_bytes: d(now.nic_bytes, before.nic_bytes),
        switches: d(now.switches, before.switches),
        packet_linear: d(now.packet_linear, before.packet_linear),
        send_zerocopy: d(now.send_zerocopy, before.send_zerocopy),
    }
}

/// A kernel name as a label value: bytes up to the NUL, anything but printable ASCII (and the
/// quote and backslash, which the exposition would have to escape) as `?`.
#[must_use]
pub fn label(comm: &Comm) -> String {
    comm.iter()
        .take_while(|&&b| b != 0)
        .map(|&b| {
            if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

impl Fleet {
    /// Folds one scrape in: `raw` is what the kernel holds now, `alive` the names of the tasks
    /// alive now. Returns the names to delete from the kernel: gone at the previous scrape,
    /// still gone, and nothing new since.
    pub fn scrape(&mut self, raw: &HashMap<Comm, ServeStat>, alive: &HashSet<Comm>) -> Vec<Comm> {
        let mut forget = Vec::new();
        for (comm, now) in raw {
            let before = self.seen.get(comm).copied().unwrap_or_default();
            let delta = since(now, &before.raw);
            let own = label(comm);
            let is_alive = alive.contains(comm);
            if before.gone && !is_alive && delta == ServeStat::default() {
                // Shown with its final totals last time: dropped now.
                self.seen.remove(comm);
                // Two names can share a label (bytes shown as `?`): the series stays while
                // another holds it.
                if !self.seen.keys().any(|c| label(c) == own) {
                    self.totals.remove(&own);
                }
                forget.push(*comm);
                continue;
            }
            let named = self.totals.keys().filter(|l| *l != OTHER).count();
            let key = if own != OTHER && (self.totals.contains_key(&own) || named < COMM_CAP) {
                own
            } else {
                OTHER.to_owned()
            };
            self.totals.entry(key).or_default().add(&delta);
            self.seen.insert(
                *comm,
                Seen {
                    raw: *now,
                    gone: !is_alive,
                },
            );
        }
        // A name the kernel no longer holds (evicted from its LRU) keeps its series while its
        // tasks live, and goes with them, so dead names do not take the cap's places for ever.
        self.seen.retain(|comm, _| raw.contains_key(comm));
        let held: HashSet<String> = self.seen.keys().map(label).collect();
        let living: HashSet<String> = alive.iter().map(label).collect();
        self.totals
            .retain(|l, _| l == OTHER || held.contains(l) || living.contains(l));
        forget
    }

    /// The totals by label.
    #[must_use]
    pub fn totals(&self) -> &BTreeMap<String, ServeStat> {
        &self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::serve::comm_key;

    fn sent(copied: u64) -> ServeStat {
        ServeStat {
            send_copied: copied,
            ..ServeStat::default()
        }
    }

    #[test]
    fn a_name_that_exits_keeps_its_totals_for_one_scrape_then_is_dropped() {
        let nginx = comm_key(b"nginx");
        let mut fleet = Fleet::default();
        let raw = HashMap::from([(nginx, sent(100))]);
        let alive = HashSet::from([nginx]);
        assert!(fleet.scrape(&raw, &alive).is_empty());
        assert_eq!(fleet.totals()["nginx"].send_copied, 100);
        // Exited: shown once more with its final totals.
        let raw = HashMap::from([(nginx, sent(150))]);
        assert!(fleet.scrape(&raw, &HashSet::new()).is_empty());
        assert_eq!(fleet.totals()["nginx"].send_copied, 150);
        // Then dropped, and the kernel's entry deleted.
        assert_eq!(fleet.scrape(&raw, &HashSet::new()), vec![nginx]);
        assert!(!fleet.totals().contains_key("nginx"));
    }

    #[test]
    fn totals_never_go_down_when_the_kernel_entry_is_made_again() {
        let curl = comm_key(b"curl");
        let alive = HashSet::from([curl]);
        let mut fleet = Fleet::default();
        fleet.scrape(&HashMap::from([(curl, sent(1000))]), &alive);
        // Evicted from the LRU and made again with less.
        fleet.scrape(&HashMap::from([(curl, sent(10))]), &alive);
        assert_eq!(fleet.totals()["curl"].send_copied, 1010);
    }

    #[test]
    fn a_name_evicted_by_the_kernel_goes_when_its_tasks_do() {
        let (a, b) = (comm_key(b"a"), comm_key(b"b"));
        let mut fleet = Fleet::default();
        fleet.scrape(
            &HashMap::from([(a, sent(1)), (b, sent(2))]),
            &HashSet::from([a, b]),
        );
        // Both evicted; a still runs, b is gone.
        fleet.scrape(&HashMap::new(), &HashSet::from([a]));
        assert_eq!(fleet.totals()["a"].send_copied, 1);
        assert!(!fleet.totals().contains_key("b"));
    }

    #[test]
    fn names_beyond_the_cap_are_summed_as_other() {
        let mut fleet = Fleet::default();
        let raw: HashMap<Comm, ServeStat> = (0..COMM_CAP + 10)
            .map(|i| (comm_key(format!("p{i}").as_bytes()), sent(1)))
            .collect();
        let alive = raw.keys().copied().collect();
        fleet.scrape(&raw, &alive);
        assert_eq!(fleet.totals().len(), COMM_CAP + 1);
        assert_eq!(fleet.totals()[OTHER].send_copied, 10);
    }

    #[test]
    fn labels_keep_printable_ascii_only() {
        assert_eq!(label(&comm_key(b"kworker/0:1")), "kworker/0:1");
        assert_eq!(label(&comm_key(b"a\"b\\c\n")), "a?b?c?");
    }
}
