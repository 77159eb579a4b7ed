//! Device transfers: block requests completed (disk DMA) and packets handed to network devices
//! (NIC DMA, unless the device is virtual). Field offsets come from this kernel's tracepoint
//! format files, set by the loader, because these records changed shape across versions.
use aya_ebpf::{Global, macros::tracepoint, programs::TracePointContext};
use zcprof_common::IFNAMSIZ;

use crate::{
    account,
    filter::{traced, traced_tid},
};

#[unsafe(no_mangle)]
static BLK_OFF_DEV: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static BLK_OFF_BYTES: Global<u32> = Global::new(28);
#[unsafe(no_mangle)]
static BLK_OFF_RWBS: Global<u32> = Global::new(34);
#[unsafe(no_mangle)]
static BIO_OFF_DEV: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static BIO_OFF_NR_SECTOR: Global<u32> = Global::new(24);
#[unsafe(no_mangle)]
static BIO_OFF_RWBS: Global<u32> = Global::new(28);
#[unsafe(no_mangle)]
static NET_OFF_LEN: Global<u32> = Global::new(16);
#[unsafe(no_mangle)]
static NET_OFF_NAME: Global<u32> = Global::new(24);
/// `dma:dma_map_page` (`dma_map_phys` from 6.18): the device's name, the size and the direction.
#[unsafe(no_mangle)]
static DMA_OFF_DEVICE: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static DMA_OFF_SIZE: Global<u32> = Global::new(32);
#[unsafe(no_mangle)]
static DMA_OFF_DIR: Global<u32> = Global::new(40);
/// `dma:dma_map_sg`: the device's name and the direction (its sizes are an array: not summed).
#[unsafe(no_mangle)]
static DMA_SG_OFF_DEVICE: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static DMA_SG_OFF_DIR: Global<u32> = Global::new(36);
/// Non-zero: packets are counted by the socket they belong to, wherever they leave
/// (`net_dev_start_xmit`), and this current-task program stands aside.
#[unsafe(no_mangle)]
static XMIT_BY_SOCKET: Global<u32> = Global::new(0);

/// Classic tracepoint `block:block_rq_issue`: a request handed to the device driver, with the
/// bytes the device is to transfer. Issue rather than completion: some kernels (6.1 with
/// virtio-blk's batched completions) report completions without their byte count. Not filtered
/// by task: requests are often issued from kworkers; the loader attaches it only while a run is
/// measured.
#[tracepoint(category = "block", name = "block_rq_issue")]
pub fn block_rq_issue_tracepoint(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let (dev, bytes, op) = unsafe {
        (
            ctx.read_at::<u32>(BLK_OFF_DEV.load() as usize),
            ctx.read_at::<u32>(BLK_OFF_BYTES.load() as usize),
            ctx.read_at::<u8>(BLK_OFF_RWBS.load() as usize),
        )
    };
    if let (Ok(dev), Ok(bytes), Ok(op)) = (dev, bytes, op) {
        account::disk_io(dev, u64::from(bytes), op);
    }
    0
}

/// Classic tracepoint `block:block_bio_queue`: a task queued block I/O, in its own context
/// (reads it waits for, readahead, `O_DIRECT`, writes it flushes itself; not the kernel's
/// writeback of dirty pages, which kworkers queue). Traced once per bio, before any split, so
/// the bytes are what the process asked of the device.
#[tracepoint(category = "block", name = "block_bio_queue")]
pub fn block_bio_queue_tracepoint(ctx: TracePointContext) -> u32 {
    if traced().is_none() {
        return 0;
    }
    // SAFETY: offsets from the tracepoint's format file.
    let (dev, sectors, op) = unsafe {
        (
            ctx.read_at::<u32>(BIO_OFF_DEV.load() as usize),
            ctx.read_at::<u32>(BIO_OFF_NR_SECTOR.load() as usize),
            ctx.read_at::<u8>(BIO_OFF_RWBS.load() as usize),
        )
    };
    if let (Ok(dev), Ok(sectors), Ok(op)) = (dev, sectors, op) {
        account::bio_queued(dev, u64::from(sectors) * 512, op);
    }
    0
}

/// Classic tracepoint `net:net_dev_xmit`, in the sending task's context for loopback and for
/// most drivers' transmit path.
#[tracepoint(category = "net", name = "net_dev_xmit")]
pub fn net_dev_xmit_tracepoint(ctx: TracePointContext) -> u32 {
    if XMIT_BY_SOCKET.load() != 0 || traced_tid().is_none() {
        return 0;
    }
    // SAFETY: offsets from the tracepoint's format file.
    let (len, loc) = unsafe {
        (
            ctx.read_at::<u32>(NET_OFF_LEN.load() as usize),
            ctx.read_at::<u32>(NET_OFF_NAME.load() as usize),
        )
    };
    let (Ok(len), Ok(loc)) = (len, loc) else {
        return 0;
    };
    // __data_loc: low 16 bits are the string's offset in the record.
    let offset = (loc & 0xffff) as usize;
    // SAFETY: the string lies inside the record; at most IFNAMSIZ bytes are read.
    let mut name = unsafe { ctx.read_at::<[u8; IFNAMSIZ]>(offset) }.unwrap_or([0; IFNAMSIZ]);
    clear_after_nul(&mut name);
    account::net_xmit(&name, u64::from(len));
    0
}

/// `DMA_TO_DEVICE` in the events' `dir` field (enum dma_data_direction).
const DMA_TO_DEVICE: u32 = 1;

/// Reads a `dma:*` record's device name (a `__data_loc` string at `device`) and direction.
#[inline(always)]
fn dma_device(ctx: &TracePointContext, device: u32, dir: u32) -> Option<([u8; IFNAMSIZ], u32)> {
    // SAFETY: offsets from the tracepoint's format file.
    let (loc, dir) = unsafe {
        (
            ctx.read_at::<u32>(device as usize).ok()?,
            ctx.read_at::<u32>(dir as usize).ok()?,
        )
    };
    // SAFETY: the string lies inside the record; at most IFNAMSIZ bytes are read.
    let mut name = unsafe { ctx.read_at::<[u8; IFNAMSIZ]>((loc & 0xffff) as usize) }.ok()?;
    clear_after_nul(&mut name);
    Some((name, dir))
}

/// The DMA API mapped a buffer for a device (dma:* events, where the kernel has them). Counted
/// device-wide, like block I/O: drivers map in interrupt and worker context. Maps towards the
/// device add their bytes to the device's row.
macro_rules! dma_map {
    ($name:ident, $event:literal) => {
        #[doc = concat!("Classic tracepoint `dma:", $event, "`.")]
        #[tracepoint(category = "dma", name = $event)]
        pub fn $name(ctx: TracePointContext) -> u32 {
            account::dma_map();
            if let Some((name, DMA_TO_DEVICE)) =
                dma_device(&ctx, DMA_OFF_DEVICE.load(), DMA_OFF_DIR.load())
            {
                // SAFETY: offset from the tracepoint's format file.
                let size = unsafe { ctx.read_at::<u64>(DMA_OFF_SIZE.load() as usize) };
                account::dma_to_device(&name, size.unwrap_or(0), 1);
            }
            0
        }
    };
}

dma_map!(dma_map_phys_tracepoint, "dma_map_phys");
dma_map!(dma_map_page_tracepoint, "dma_map_page");

/// Classic tracepoint `dma:dma_map_sg`: a scatterlist mapped; its sizes are an array, so only
/// the map is counted towards the device.
#[tracepoint(category = "dma", name = "dma_map_sg")]
pub fn dma_map_sg_tracepoint(ctx: TracePointContext) -> u32 {
    account::dma_map();
    if let Some((name, DMA_TO_DEVICE)) =
        dma_device(&ctx, DMA_SG_OFF_DEVICE.load(), DMA_SG_OFF_DIR.load())
    {
        account::dma_to_device(&name, 0, 1);
    }
    0
}

/// What follows a device name's NUL is whatever the buffer holds: cleared, or one device would
/// show up under many keys.
#[inline(always)]
pub fn clear_after_nul(name: &mut [u8; IFNAMSIZ]) {
    let mut ended = false;
    for byte in name {
        if ended {
            *byte = 0;
        } else if *byte == 0 {
            ended = true;
        }
    }
}
