//! Device transfers (block requests and I/O, packets, DMA mappings) and the other one-event
//! counters: page faults and forks.
use zcprof_common::{Counter, DiskIo, DmaMapped, EventKind, IFNAMSIZ, NetXmit};

use super::{
    add, current_tgid, now,
    process::per_process,
    trace::{Name, emit},
};
use crate::{
    filter::tracing,
    maps::{DISK_IO, DMA_TO_DEVICE, NET_XMIT},
};

/// A traced task took a page fault, in user mode (`user`) or in kernel mode on its behalf.
#[inline(always)]
pub fn page_fault(user: bool) {
    if user {
        add(Counter::PageFaultsUser, 1);
        per_process(current_tgid(), |p| p.page_faults_user += 1);
    } else {
        add(Counter::PageFaultsKernel, 1);
        per_process(current_tgid(), |p| p.page_faults_kernel += 1);
    }
    if tracing() {
        emit(
            EventKind::Fault,
            now(),
            0,
            0,
            u32::from(user),
            0,
            Name::None,
        );
    }
}

/// A block request completed on `dev`; `op` is the first rwbs letter (R, W, D, F, ...).
#[inline(always)]
pub fn disk_io(dev: u32, bytes: u64, op: u8) {
    if DISK_IO.get_ptr_mut(&dev).is_none() && DISK_IO.insert(&dev, &DiskIo::default(), 0).is_err() {
        add(Counter::DevicesLost, 1);
    }
    if let Some(io) = DISK_IO.get_ptr_mut(&dev) {
        // SAFETY: per-CPU entry.
        unsafe {
            match op {
                b'R' => (*io).read_bytes += bytes,
                b'W' => (*io).write_bytes += bytes,
                _ => (*io).other_bytes += bytes,
            }
            (*io).requests += 1;
        }
    }
    if tracing() {
        #[expect(
            clippy::cast_possible_wrap,
            reason = "request sizes are far below 2^63"
        )]
        emit(
            EventKind::Disk,
            now(),
            0,
            bytes as i64,
            dev,
            u32::from(op),
            Name::None,
        );
    }
}

/// A traced task queued `bytes` of block I/O on device `dev` itself (`op`: the rwbs letter):
/// the process's own disk transfers.
#[inline(always)]
pub fn bio_queued(dev: u32, bytes: u64, op: u8) {
    match op {
        b'R' => add(Counter::ProcessDiskReadBytes, bytes),
        b'W' => add(Counter::ProcessDiskWriteBytes, bytes),
        _ => return,
    }
    if tracing() {
        #[expect(clippy::cast_possible_wrap, reason = "bio sizes are far below 2^63")]
        emit(
            EventKind::Bio,
            now(),
            0,
            bytes as i64,
            dev,
            u32::from(op),
            Name::None,
        );
    }
}

/// A traced task handed a packet of `len` bytes to the device called `name`.
#[inline(always)]
pub fn net_xmit(name: &[u8; IFNAMSIZ], len: u64) {
    if NET_XMIT.get_ptr_mut(name).is_none()
        && NET_XMIT.insert(name, &NetXmit::default(), 0).is_err()
    {
        add(Counter::DevicesLost, 1);
    }
    if let Some(x) = NET_XMIT.get_ptr_mut(name) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*x).bytes += len;
            (*x).packets += 1;
        }
    }
    if tracing() {
        #[expect(clippy::cast_possible_wrap, reason = "packet lengths are small")]
        emit(
            EventKind::Net,
            now(),
            0,
            len as i64,
            0,
            0,
            Name::Given(name),
        );
    }
}

/// The DMA API mapped `bytes` in `maps` maps towards the device called `name`.
#[inline(always)]
pub fn dma_to_device(name: &[u8; IFNAMSIZ], bytes: u64, maps: u64) {
    if DMA_TO_DEVICE.get_ptr_mut(name).is_none()
        && DMA_TO_DEVICE
            .insert(name, &DmaMapped::default(), 0)
            .is_err()
    {
        add(Counter::DevicesLost, 1);
    }
    if let Some(d) = DMA_TO_DEVICE.get_ptr_mut(name) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*d).bytes += bytes;
            (*d).maps += maps;
        }
    }
}

/// A buffer was mapped for device DMA.
#[inline(always)]
pub fn dma_map() {
    add(Counter::DmaMaps, 1);
    if tracing() {
        emit(EventKind::Dma, now(), 0, 0, 0, 0, Name::None);
    }
}

/// A traced process forked `child` (a process or a thread).
#[inline(always)]
pub fn forked(child: i32) {
    add(Counter::Forks, 1);
    if tracing() {
        emit(
            EventKind::Fork,
            now(),
            0,
            i64::from(child),
            0,
            0,
            Name::Comm,
        );
    }
}
