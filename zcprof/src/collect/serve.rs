//! Reading the always-on kernel counters at a scrape (`zcprof serve`) or at the end of an
//! interval (`zcprof top`): totals by process name, or by process and name, summed over CPUs;
//! the per-CPU lost events; and the names of the tasks alive now.
use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use aya::{
    Pod,
    maps::{Map, MapError, PerCpuArray, PerCpuHashMap},
};
use zcprof_common::serve::{COMM_LEN, SERVE_LOST_SLOTS, ServeOwner, ServeStat};

/// A process name as the kernel keeps it (NUL-padded).
pub type Comm = [u8; COMM_LEN];

/// Errors while reading the serve maps.
#[derive(Debug, thiserror::Error)]
pub enum ServeCollectError {
    /// The map is missing or of the wrong type.
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
}

/// The totals by name, each summed over CPUs.
///
/// # Errors
/// A map of the wrong type.
pub fn stats(map: &Map) -> Result<HashMap<Comm, ServeStat>, ServeCollectError> {
    summed(map, "SERVE_STATS")
}

/// The totals by process and name (`zcprof top`), each summed over CPUs.
///
/// # Errors
/// A map of the wrong type.
pub fn by_process(map: &Map) -> Result<HashMap<ServeOwner, ServeStat>, ServeCollectError> {
    summed(map, "SERVE_PROCS")
}

/// Every entry of the per-CPU totals map `map` (`name` in errors), summed over CPUs.
fn summed<K: Pod + Eq + Hash>(
    map: &Map,
    name: &'static str,
) -> Result<HashMap<K, ServeStat>, ServeCollectError> {
    let map: PerCpuHashMap<_, K, ServeStat> =
        PerCpuHashMap::try_from(map).map_err(|source| ServeCollectError::Map { name, source })?;
    let mut out = HashMap::new();
    // An entry deleted or evicted while iterating is skipped, not an error.
    for (key, per_cpu) in map.iter().flatten() {
        let mut sum = ServeStat::default();
        for s in per_cpu.iter() {
            sum.add(s);
        }
        out.insert(key, sum);
    }
    Ok(out)
}

/// Deletes the kernel's totals of `comms` (names whose series were dropped).
pub fn forget(map: &mut Map, comms: &[Comm]) {
    remove(map, comms);
}

/// Deletes the kernel's totals of `owners` (processes gone, their last figures shown).
pub fn forget_processes(map: &mut Map, owners: &[ServeOwner]) {
    remove(map, owners);
}

/// Deletes `keys` from the per-CPU totals map `map`.
fn remove<K: Pod>(map: &mut Map, keys: &[K]) {
    if let Ok(mut map) = PerCpuHashMap::<_, K, ServeStat>::try_from(map) {
        for key in keys {
            let _ = map.remove(key);
        }
    }
}

/// Lost events by slot (`ServeLost`), each a list of per-CPU counts.
///
/// # Errors
/// A map of the wrong type.
pub fn lost(map: &Map) -> Result<Vec<Vec<u64>>, ServeCollectError> {
    let err = |source| ServeCollectError::Map {
        name: "SERVE_LOST",
        source,
    };
    let map: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(err)?;
    (0..SERVE_LOST_SLOTS)
        .map(|slot| map.get(&slot, 0).map(|v| v.iter().copied().collect()))
        .collect::<Result<_, _>>()
        .map_err(err)
}

/// The names of every thread alive now (of process `pid` only, when not 0), as the kernel
/// would key them: at most 15 bytes, NUL-padded.
#[must_use]
pub fn alive(pid: u32) -> HashSet<Comm> {
    let processes: Vec<String> = if pid == 0 {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .collect()
    } else {
        vec![pid.to_string()]
    };
    let mut names = HashSet::new();
    for p in processes {
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            if let Ok(name) = std::fs::read(task.path().join("comm")) {
                names.insert(comm_key(name.strip_suffix(b"\n").unwrap_or(&name)));
            }
        }
    }
    names
}

/// `name` as a kernel comm key.
#[must_use]
pub fn comm_key(name: &[u8]) -> Comm {
    let mut key = [0u8; COMM_LEN];
    let len = name.len().min(COMM_LEN - 1);
    key[..len].copy_from_slice(&name[..len]);
    key
}
