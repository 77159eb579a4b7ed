//! Opening the files zcprof is given, without waiting on them: a FIFO, a socket or a device
//! where a file is expected is refused or found unread at once, since `open(2)` of a FIFO
//! blocks until its other end comes and Ctrl-C cannot interrupt it. A leaf: used by `cli`,
//! `output`, `export` and `workload`.
use std::{
    fs::{File, OpenOptions},
    io,
    path::Path,
};

/// Opens `path` for writing without truncating it: created (`true`) when it did not exist.
/// Never waits for a reader: `open(2)` of a FIFO blocks until one comes, and Ctrl-C cannot
/// interrupt it, so the file is opened non-blocking, which fails at once where no one reads a
/// FIFO; the descriptor is then made blocking for the writes.
///
/// # Errors
/// When the file cannot be created or opened, or is a FIFO nobody reads.
pub fn open_to_write(path: &Path) -> io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let open = |create_new| {
        OpenOptions::new()
            .write(true)
            .create_new(create_new)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    };
    let (file, created) = match open(true) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match open(false) {
            Ok(f) => (f, false),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(io::Error::other("a FIFO that nobody reads"));
            }
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    blocking(&file)?;
    Ok((file, created))
}

/// Opens `path` for reading, refusing at once anything but a regular file: a FIFO, a socket or a
/// device where a file is expected would block or never end.
///
/// # Errors
/// When it cannot be opened or is not a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "a device"
        };
        return Err(io::Error::other(format!("{what}, not a regular file")));
    }
    blocking(&file)?;
    Ok(file)
}

/// Clears `O_NONBLOCK` on `file`.
fn blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt as _;

    fn fifo(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("zcprof-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn a_fifo_nobody_reads_is_refused_at_once() {
        let path = fifo("unread");
        let err = open_to_write(&path).unwrap_err();
        assert!(err.to_string().contains("nobody reads"), "{err}");
        let err = open_regular(&path).unwrap_err();
        assert!(
            err.to_string().contains("a FIFO, not a regular file"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_fifo_with_a_reader_is_written() {
        use std::io::{Read as _, Write as _};
        let path = fifo("read");
        // The reader opens non-blocking too, so neither end waits for the other.
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let (mut file, created) = open_to_write(&path).unwrap();
        assert!(!created);
        file.write_all(b"report").unwrap();
        drop(file);
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "report");
        std::fs::remove_file(&path).unwrap();
    }
}
