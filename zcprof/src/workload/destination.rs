//! copy-file-range's destination: a file without a name in the source's directory (on the same
//! file system, where a reflink-capable one could share extents), made before the run, checked
//! byte for byte after it, and gone with its last descriptor however zcprof ends.
use std::{
    fs::File,
    io::{self, Read as _},
    path::{Path, PathBuf},
};

/// The destination file of one run.
#[derive(Debug)]
pub struct Destination {
    /// The only handle of the file, held (never read) so that the file lives as long as this.
    _file: File,
    /// Its magic link, which the transfer process opens like a path.
    path: PathBuf,
}

impl Destination {
    /// Creates an empty unnamed file in `dir`.
    ///
    /// # Errors
    /// When `dir` is not writable.
    pub fn create(dir: &Path) -> io::Result<Destination> {
        let file = super::source::unnamed_file(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create the destination file in {}: {e}",
                    dir.display()
                ),
            )
        })?;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(&file)
        ));
        Ok(Destination { _file: file, path })
    }

    /// The path to open the file by.
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
