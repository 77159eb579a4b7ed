//! What the kernel's completions said of a run, handed from the measured child to the parent
//! through a shared file (`zerocopy::SharedReport`): plain data, a leaf the senders and the
//! model import.

/// What the kernel said about the `MSG_ZEROCOPY` sends of one run: the JSON `zerocopy` object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// `send()` calls that took bytes with `MSG_ZEROCOPY`: one completion id each.
    pub sends: u64,
    /// Ids the kernel completed (it coalesces consecutive ids into one notification).
    pub completed: u64,
    /// Of those, ids whose notification carried `SO_EE_CODE_ZEROCOPY_COPIED`.
    pub copied: u64,
    /// Bytes of the sends the kernel said it copied, and of those it sent by reference.
    pub copied_bytes: u64,
    pub zerocopy_bytes: u64,
    /// Notifications read (`recvmsg(MSG_ERRQUEUE)` calls that returned one).
    pub notifications: u64,
    /// Sends refused with `ENOBUFS` (too many completions outstanding), retried after reading
    /// completions.
    pub enobufs: u64,
}

/// What the completions of one `io_uring` run said: the JSON `io_uring` object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// `io_uring_enter` calls of the measured loop: each submits and waits for a batch.
    pub enters: u64,
    /// Requests queued, and completions reaped (notifications included).
    pub submitted: u64,
    pub completions: u64,
    /// `READ_FIXED` completions and the bytes they put in the registered (user) buffer.
    pub reads: u64,
    pub read_bytes: u64,
    /// Bytes sockets took from `SEND`, `SEND_ZC` or a splice from the pipe.
    pub sent_bytes: u64,
    /// Bytes spliced from the file into the pipe.
    pub spliced_bytes: u64,
    /// Linked requests the kernel cancelled (`-ECANCELED`) because the one before fell short.
    pub cancelled: u64,
}
