//! The file a workload sends: a generated temporary file, which has no name and so goes with
//! zcprof however it ends (SIGKILL included), or the user's own, with the facts about its file
//! system that decide what "direct" means.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

/// Errors while preparing the source file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--file` names something that cannot be read.
    #[error("cannot read --file {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    /// `--file` is shorter than `--size`.
    #[error("--file {path} holds {len} bytes, fewer than --size {size}")]
    TooShort { path: PathBuf, len: u64, size: u64 },
    /// The temporary file could not be created or written.
    #[error("cannot write a temporary file in {dir}: {source} (choose another --dir)")]
    Unwritable { dir: PathBuf, source: io::Error },
    /// Ctrl-C arrived while the file was being written.
    #[error("interrupted")]
    Interrupted,
}

/// What a workload reads from.
#[derive(Debug)]
pub struct SourceFile {
    /// Where it is opened: the user's path, or for a generated file the magic link of zcprof's
    /// descriptor (`/proc/PID/fd/N`), which the transfer process opens like any path.
    path: PathBuf,
    len: u64,
    /// A generated file: its only handle. The file system frees it when the last descriptor
    /// closes, which the kernel does for any exit of zcprof and its children.
    unnamed: Option<File>,
    /// The directory a generated file lives in, for the report.
    dir: PathBuf,
    /// File system type name, as in /proc/self/mountinfo.
    pub fs_type: String,
    /// False for file systems with no block device (tmpfs, ...): no disk DMA can happen there.
    pub block_backed: bool,
}

impl SourceFile {
    /// Uses an existing file, which must hold at least `size` bytes.
    ///
    /// # Errors
    /// When the file cannot be read or is too short.
    pub fn existing(path: &Path, size: u64) -> Result<SourceFile, SourceError> {
        let unreadable = |source| SourceError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let meta = fs::metadata(path).map_err(unreadable)?;
        if !meta.is_file() {
            return Err(unreadable(io::Error::other("not a regular file")));
        }
        crate::files::open_regular(path).map_err(unreadable)?;
        if meta.len() < size {
            return Err(SourceError::TooShort {
                path: path.to_owned(),
                len: meta.len(),
                size,
            });
        }
        let (fs_type, block_backed) = filesystem_of(meta.dev());
        Ok(SourceFile {
            path: path.to_owned(),
            len: meta.len(),
            unnamed: None,
            dir: path.parent().map(Path::to_owned).unwrap_or_default(),
            fs_type,
            block_backed,
        })
    }

    /// Writes `size` bytes of pseudo-random data to a new file in `dir` and syncs it, so that its
    /// pages are clean and in the page cache (a warm cache).
    ///
    /// # Errors
    /// When `dir` is not writable, or on Ctrl-C (`cancel` set).
    pub fn generate(dir: &Path, size: u64, cancel: &AtomicBool) -> Result<SourceFile, SourceError> {
        let unwritable = |source| SourceError::Unwritable {
            dir: dir.to_owned(),
            source,
        };
        let mut file = unnamed_file(dir).map_err(unwritable)?;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(&file)
        ));
        let mut chunk = vec![0u8; 1 << 20];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ nanos();
        let mut left = size;
        while left > 0 {
            if cancel.load(Ordering::Relaxed) {
                return Err(SourceError::Interrupted);
            }
            for word in chunk.chunks_exact_mut(8) {
                // xorshift64: incompressible enough that nothing downstream can shortcut it.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            file.write_all(&chunk[..n]).map_err(unwritable)?;
            left -= n as u64;
        }
        file.sync_all().map_err(unwritable)?;
        let dev = file.metadata().map_err(unwritable)?.dev();
        let (fs_type, block_backed) = filesystem_of(dev);
        Ok(SourceFile {
            path,
            len: size,
            unnamed: Some(file),
            dir: dir.to_owned(),
            fs_type,
            block_backed,
        })
    }

    /// Reads the first `size` bytes once, so that a user-given file is in the page cache too.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn warm(&self, size: u64) -> io::Result<()> {
        let mut file = File::open(&self.path)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n as u64);
        }
        Ok(())
    }

    /// Writes back and drops the file's pages from the page cache, so the next read must come
    /// from the device. Has no effect on file systems without one (tmpfs keeps its pages).
    ///
    /// # Errors
    /// When the file cannot be opened or synced.
    pub fn evict(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let file = File::open(&self.path)?;
        file.sync_all()?;
        // SAFETY: fadvise on a descriptor we own; offset 0 and length 0 mean the whole file.
        let ret = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(())
    }

    /// The path to open the file by (for a generated file, a `/proc/PID/fd/N` link).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the file is in (where a generated one was made).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the report calls the file: its path, or where a generated one lives.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.unnamed.is_some() {
            format!(
                "an unnamed temporary file in {} (gone when zcprof ends)",
                self.dir.display()
            )
        } else {
            self.path.display().to_string()
        }
    }

    /// The file's length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no bytes (an existing empty file; a run refuses it).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A new file in `dir` without a name: `O_TMPFILE` where the file system has it, else a
/// named file unlinked the moment it exists (a kill in between is a window of one syscall).
pub(crate) fn unnamed_file(dir: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(f) => Ok(f),
        // O_TMPFILE unknown to the file system (EOPNOTSUPP), or to an old kernel (EISDIR).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            let path = dir.join(format!("zcprof-{}-{:x}.dat", std::process::id(), nanos()));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            fs::remove_file(&path)?;
            Ok(f)
        }
        Err(e) => Err(e),
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Finds the mount holding `dev` in /proc/self/mountinfo: its file system type, and whether its
/// source is a block device (`/dev/...`). The device number alone cannot tell: btrfs uses
/// anonymous device numbers, as tmpfs does.
fn filesystem_of(dev: u64) -> (String, bool) {
    let wanted = format!("{}:{}", libc::major(dev), libc::minor(dev));
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                if line.split(' ').nth(2)? != wanted {
                    return None;
                }
                let mut rest = line.split(" - ").nth(1)?.split(' ');
                let fs_type = rest.next()?.to_owned();
                let source = rest.next().unwrap_or_default();
                Some((fs_type, source.starts_with("/dev/")))
            })
        })
        .unwrap_or_else(|| ("unknown".to_owned(), false))
}
