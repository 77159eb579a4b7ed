//! Where a report goes: stdout, stderr, or the file of `-o/--output`. The file is created before
//! anything is measured (an unwritable path fails at once, not after a long run) and removed
//! again when no report was written into it, so a failed run leaves nothing behind.
use std::{
    fs::File,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// Errors of the report's destination.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create the output file {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write the report to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The file of `-o`, open and still empty of this run's report.
#[derive(Debug)]
pub struct ReportFile {
    path: PathBuf,
    file: Option<File>,
    /// Made by us: removed again if no report goes into it. A file that existed keeps its
    /// old contents until the report replaces them.
    created: bool,
}

impl ReportFile {
    /// Creates `path` (or opens it, if it exists, without truncating it yet).
    ///
    /// # Errors
    /// When the file cannot be created or opened for writing.
    pub fn create(path: &Path) -> Result<ReportFile, OutputError> {
        let err = |source| OutputError::Create {
            path: path.to_owned(),
            source,
        };
        let (file, created) = crate::files::open_to_write(path).map_err(err)?;
        Ok(ReportFile {
            path: path.to_owned(),
            file: Some(file),
            created,
        })
    }

    /// Replaces the file's contents with `text` and closes it.
    ///
    /// # Errors
    /// When writing or closing fails.
    pub fn write(mut self, text: &str) -> Result<(), OutputError> {
        let err = |source| OutputError::Write {
            path: self.path.clone(),
            source,
        };
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        crate::files::replace(&self.path, file, |out| out.write_all(text.as_bytes()))
            .map_err(err)?;
        self.created = false;
        Ok(())
    }
}

impl Drop for ReportFile {
    fn drop(&mut self) {
        // Never written: a failed or refused run leaves no empty file behind.
        if self.created {
            self.file = None;
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where one report is written.
#[derive(Debug)]
pub enum Destination {
    Stdout,
    /// Tables of `exec` and `attach`, so the measured command's own stdout stays clean.
    Stderr,
    File(ReportFile),
}

impl Destination {
    /// The file of `-o` if there is one, else `default`.
    #[must_use]
    pub fn or(file: Option<ReportFile>, default: Destination) -> Destination {
        file.map_or(default, Destination::File)
    }

    /// Writes `text` there.
    ///
    /// # Errors
    /// When the file (or stdout) cannot be written; a reader of stdout that went away (`| head`)
    /// is not an error.
    pub fn write(self, text: &str) -> Result<(), OutputError> {
        let stream = |result: io::Result<()>| match result {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(OutputError::Write {
                path: PathBuf::from("stdout"),
                source: e,
            }),
            _ => Ok(()),
        };
        match self {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                stream(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
            }
            Destination::Stderr => {
                // Nowhere left to complain to.
                let _ = io::stderr().lock().write_all(text.as_bytes());
                Ok(())
            }
            Destination::File(f) => f.write(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zcprof-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_unwritten_new_file_is_removed() {
        let dir = scratch("unwritten");
        let path = dir.join("report.json");
        drop(ReportFile::create(&path).unwrap());
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_existing_file_is_kept_until_replaced() {
        let dir = scratch("existing");
        let path = dir.join("report.json");
        std::fs::write(&path, "old report, longer than the new one").unwrap();
        drop(ReportFile::create(&path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old report, longer than the new one"
        );
        ReportFile::create(&path).unwrap().write("new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_is_one_line() {
        let err = ReportFile::create(Path::new("/nonexistent/zcprof/report.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/zcprof/report.json") && !text.contains('\n'),
            "{text}"
        );
    }
}
