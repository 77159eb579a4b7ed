//! Opening the files zcprof is given, without waiting on them: a FIFO, a socket or a device
//! where a file is expected is refused or found unread at once, since `open(2)` of a FIFO
//! blocks until its other end comes and Ctrl-C cannot interrupt it. And replacing an output
//! file whole, so that what was there survives any failure or signal. A leaf: used by `cli`,
//! `output`, `export` and `workload`.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
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

/// Gives `path` (opened before as `opened`) the contents `write` produces. A regular file is
/// replaced whole: the contents go to an unnamed file in the same directory (`O_TMPFILE`), which
/// is synced, given a name and renamed over `path`, so that until that rename `path` keeps what
/// it held, whatever happens, and nothing is left behind if zcprof dies while writing (the
/// unnamed file goes with its descriptor; the name exists only between link and rename). A
/// FIFO or a device is written through `opened`.
///
/// # Errors
/// When writing, syncing, linking or renaming fails; `path` is then as it was.
pub fn replace<T>(
    path: &Path,
    opened: File,
    write: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<T> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let meta = opened.metadata()?;
    if !meta.is_file() {
        let mut opened = opened;
        let out = write(&mut opened)?;
        opened.flush()?;
        return Ok(out);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o666)
        .open(dir)?;
    // The permissions of the file it replaces (a new one has 0666 less the umask, as it had).
    file.set_permissions(std::fs::Permissions::from_mode(
        meta.permissions().mode() & 0o7777,
    ))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    // A report said to be written is on disk when zcprof exits (close(2) does not report
    // write-back errors on most file systems).
    file.sync_all()?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.zcprof-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    link_unnamed(&file, &temporary)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })?;
    drop(opened);
    Ok(result)
}

/// Gives the unnamed file `file` the name `to` (linkat of its /proc/self/fd link, which needs
/// no capability, where `AT_EMPTY_PATH` needs `CAP_DAC_READ_SEARCH`).
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = std::ffi::CString::new(to.as_os_str().as_encoded_bytes())?;
    // SAFETY: two NUL-terminated paths.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
    fn a_file_is_replaced_whole_or_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("zcprof-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        std::fs::write(&path, "old contents").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A failure while writing: the file keeps what it held.
        let (opened, created) = open_to_write(&path).unwrap();
        assert!(!created);
        let err = replace(&path, opened, |out| {
            out.write_all(b"half a rep")?;
            Err::<(), _>(io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "interrupted");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old contents");
        // A success: the new contents, the old permissions, nothing else in the directory.
        let (opened, _) = open_to_write(&path).unwrap();
        replace(&path, opened, |out| out.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
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
