//! Draining the trace ring buffer while the programs run, so it never fills up with events a
//! reader could have taken.
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use zcprof_common::TraceEvent;

/// How often the ring buffer is drained. The programs send no wakeups (one per event would cost
/// more than the event), so the consumer polls; 16 MiB hold 262144 events, about 60 ms of the
/// busiest loop, far more than this period.
const POLL: Duration = Duration::from_millis(2);

/// What a recorder took from the ring buffer.
#[derive(Debug, Default)]
pub struct Recorded {
    pub events: Vec<TraceEvent>,
    /// Thread names by tid, read from /proc when each thread was first seen (threads that ended
    /// before that are named by their events, or not at all).
    pub thread_names: BTreeMap<u32, String>,
    /// Events taken from the ring after `--trace-limit` was reached: drained (so the ring never
    /// fills because of the limit) and counted, not kept.
    pub over_limit: u64,
}

/// A thread draining one ring buffer until `finish` (or until dropped, on an error path).
pub struct Recorder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Recorded>>,
}

impl Recorder {
    /// Starts draining `ring`, keeping at most `limit` events: zcprof's memory for a trace is
    /// bounded by it (64 bytes per event, twice that while the file is written).
    #[must_use]
    pub fn start(ring: RingBuf<MapData>, limit: u64) -> Recorder {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || drain_until(ring, &flag, limit));
        Recorder {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops after one last drain; call it once the programs are detached, so nothing is
    /// written any more.
    #[must_use]
    pub fn finish(mut self) -> Recorded {
        self.stop.store(true, Ordering::Release);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn drain_until(mut ring: RingBuf<MapData>, stop: &AtomicBool, limit: u64) -> Recorded {
    let mut recorded = Recorded::default();
    loop {
        // Read the flag before draining: whatever was written before it was set is taken by
        // this pass.
        let last = stop.load(Ordering::Acquire);
        while let Some(item) = ring.next() {
            if item.len() < size_of::<TraceEvent>() {
                continue;
            }
            if recorded.events.len() as u64 >= limit {
                recorded.over_limit += 1;
                continue;
            }
            // SAFETY: the programs write whole TraceEvents; read_unaligned copes with any
            // alignment of the ring's data.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<TraceEvent>()) };
            if let std::collections::btree_map::Entry::Vacant(v) =
                recorded.thread_names.entry(event.tid)
            {
                // Looked up once per thread; empty when it is gone already.
                let comm = std::fs::read_to_string(format!(
                    "/proc/{}/task/{}/comm",
                    event.tgid, event.tid
                ))
                .unwrap_or_default();
                v.insert(comm.trim_end().to_owned());
            }
            recorded.events.push(event);
        }
        if last {
            return recorded;
        }
        std::thread::sleep(POLL);
    }
}
