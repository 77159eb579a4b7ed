//! copy-file-range's destination: a file beside the source (on the same file system, where a
//! reflink-capable one could share extents), created before the run, checked byte for byte
//! after it, and removed on drop, also after Ctrl-C.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

/// The destination file of one run.
#[derive(Debug)]
pub struct Destination {
    path: PathBuf,
}

impl Destination {
    /// Creates an empty file beside `source`.
    ///
    /// # Errors
    /// When the source's directory is not writable.
    pub fn create(source: &Path) -> io::Result<Destination> {
        let dir = source.parent().unwrap_or(Path::new("."));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("zcprof-{}-{nanos:x}.copy", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot create the destination file in {}: {e}",
                        dir.display()
                    ),
                )
            })?;
        Ok(Destination { path })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many of the first `size` bytes of `source` the destination holds, equal and in
    /// place: `size` when the copy is whole and right, else the length of the equal prefix.
    ///
    /// # Errors
    /// When either file cannot be read.
    pub fn verify(&self, source: &Path, size: u64) -> io::Result<u64> {
        let mut src = File::open(source)?.take(size);
        let mut dst = File::open(&self.path)?;
        let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        let mut equal = 0u64;
        loop {
            let n = read_full(&mut src, &mut a)?;
            let m = read_full(&mut dst, &mut b[..n.max(1)])?;
            let same = a[..n.min(m)]
                .iter()
                .zip(&b[..n.min(m)])
                .take_while(|(x, y)| x == y)
                .count();
            equal += same as u64;
            if n == 0 || same < n {
                // A destination longer than the payload is wrong too.
                let longer = n == 0 && m > 0;
                return Ok(if longer { equal.min(size - 1) } else { equal });
            }
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match file.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

impl Drop for Destination {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
