//! Syscall semantics: names of this architecture's syscall numbers, and which syscalls move
//! payload through user buffers (and in which direction) or only inside the kernel.

/// What a syscall's non-negative return value means for data movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    /// Returns bytes the kernel copied into a user buffer (read family).
    ToUser,
    /// Returns bytes the kernel copied out of a user buffer (write family).
    FromUser,
    /// Returns bytes moved between kernel objects without a user buffer (sendfile family).
    InKernel,
    /// Returns something else (a descriptor, an address, zero).
    NoData,
}

/// The name of syscall `nr` on the architecture zcprof was built for.
pub fn name_of(nr: u32) -> String {
    usize::try_from(nr)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or_else(|| format!("syscall_{nr}"), |s| s.name().to_owned())
}

/// How the return value of the syscall called `name` moves data.
#[must_use]
pub fn data_path(name: &str) -> DataPath {
    match name {
        "read" | "pread64" | "readv" | "preadv" | "preadv2" | "recvfrom" | "recvmsg" => {
            DataPath::ToUser
        }
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "sendto" | "sendmsg" => {
            DataPath::FromUser
        }
        "sendfile" | "splice" | "tee" | "copy_file_range" | "vmsplice" => DataPath::InKernel,
        _ => DataPath::NoData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(n: libc::c_long) -> u32 {
        u32::try_from(n).expect("a syscall number")
    }

    #[test]
    fn names_follow_this_architecture() {
        assert_eq!(name_of(nr(libc::SYS_read)), "read");
        assert_eq!(name_of(nr(libc::SYS_sendfile)), "sendfile");
        assert_eq!(name_of(nr(libc::SYS_splice)), "splice");
        assert_eq!(name_of(100_000), "syscall_100000");
    }

    #[test]
    fn data_paths() {
        assert_eq!(data_path("read"), DataPath::ToUser);
        assert_eq!(data_path("write"), DataPath::FromUser);
        assert_eq!(data_path("sendfile"), DataPath::InKernel);
        assert_eq!(data_path("mmap"), DataPath::NoData);
    }
}
