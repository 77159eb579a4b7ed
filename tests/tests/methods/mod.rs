/// read/write, mmap, sendfile, splice, tee, O_DIRECT: the note's methods.
pub mod classic;
/// copy-file-range, vmsplice, msg-zerocopy and io_uring: the methods beyond the note.
mod modern;
