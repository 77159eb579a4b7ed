//! The `args` of each kind of trace record, as one serde type per kind: `chrome` writes them
//! and `read` reads them back through the same type, so the two sides cannot drift apart. A new
//! field is added here once (optional, so that older traces still read). A leaf: it imports
//! neither side.
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The largest event argument (bytes, ids) a trace may hold: 1 TiB. One event's bytes or id,
/// summed over at most millions of events: a value this large was not written by zcprof, and
/// would overflow the sums.
pub const MAX_ARG: u64 = 1 << 40;

/// A syscall that returned (`X`): its number, its return value and, where the kernel side
/// classified it, its descriptor's kind.
#[derive(Serialize, Deserialize)]
pub struct Syscall {
    pub nr: u64,
    pub ret: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_kind: Option<u64>,
}

/// A syscall with no end (`B`): still in progress when the programs were detached, or
/// `exit`/`exit_group`, which end the thread (`thread_ended`).
#[derive(Serialize, Deserialize)]
pub struct Unfinished {
    pub nr: u64,
    /// Always true: says so to a reader of the JSON.
    #[serde(default, rename = "unfinished")]
    pub open: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thread_ended: bool,
}

/// The scheduler switched the thread out: blocked (`voluntary`) or preempted.
#[derive(Serialize, Deserialize)]
pub struct Switch {
    pub voluntary: bool,
}

/// A page fault, in user mode or in kernel mode on the thread's behalf.
#[derive(Serialize, Deserialize)]
pub struct Fault {
    pub user: bool,
}

/// A hooked copy routine returned: its `Counter` slot, the bytes, and the syscall the thread
/// was in (null when none).
#[derive(Serialize, Deserialize)]
pub struct Copy {
    pub slot: u64,
    pub bytes: u64,
    #[serde(default)]
    pub syscall: Option<u64>,
}

/// A block request issued on `dev` (device-wide), by the task `issuer`.
#[derive(Serialize, Deserialize)]
pub struct Disk {
    pub dev: u64,
    /// The first rwbs letter: R, W, D, F, ...
    #[serde(default)]
    pub op: Option<String>,
    pub bytes: u64,
    #[serde(default)]
    pub issuer: u32,
}

/// Block I/O a traced task queued itself.
#[derive(Serialize, Deserialize)]
pub struct Bio {
    pub dev: u64,
    #[serde(default)]
    pub op: Option<String>,
    pub bytes: u64,
}

/// A packet handed to a network device.
#[derive(Serialize, Deserialize)]
pub struct Net {
    pub device: String,
    pub bytes: u64,
}

/// A buffer mapped for device DMA (device-wide), by the task `issuer`.
#[derive(Serialize, Deserialize)]
pub struct Dma {
    pub issuer: u32,
}

/// The process forked `child`.
#[derive(Serialize, Deserialize)]
pub struct Fork {
    pub child: i64,
}

/// A kind's `args`, with the unsigned fields the reader sums (bytes, ids), which must stay
/// within `MAX_ARG`.
pub trait Args: DeserializeOwned {
    const SUMMED: &'static [&'static str];
}

macro_rules! summed {
    ($($kind:ty => [$($field:literal),*];)*) => {
        $(impl Args for $kind {
            const SUMMED: &'static [&'static str] = &[$($field),*];
        })*
    };
}

summed! {
    Syscall => ["nr"];
    Unfinished => ["nr"];
    Switch => [];
    Fault => [];
    Copy => ["slot", "bytes"];
    Disk => ["dev", "bytes"];
    Bio => ["dev", "bytes"];
    Net => ["bytes"];
    Dma => [];
    Fork => [];
}

/// `args` as written: a JSON object.
pub fn encode(args: &impl Serialize) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "{}".to_owned())
}

/// `args` read back as `T`, with the numbers it sums at most `MAX_ARG`.
///
/// # Errors
/// A field missing or of the wrong type, or a number beyond any real one, named with the
/// record's category.
pub fn decode<T: Args>(cat: &str, args: &serde_json::Value) -> Result<T, String> {
    if let Some((key, n)) = T::SUMMED
        .iter()
        .filter_map(|&k| Some((k, args.get(k)?.as_u64()?)))
        .find(|&(_, n)| n > MAX_ARG)
    {
        return Err(format!(
            "a {cat} event with args.{key} = {n}, beyond any real one"
        ));
    }
    T::deserialize(args).map_err(|e| format!("a {cat} event's args: {e}"))
}
