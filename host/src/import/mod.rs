//! Bring pipelines from other tools across: `orch import gitlab` ([`gitlab`]). An import is
//! built in memory ([`model`]), then written all at once ([`emit`]), refusing to overwrite
//! unless asked.

mod emit;
mod gitlab;
mod model;

use std::path::{Path, PathBuf};

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the files go; paths in the workflows are relative to it.
    pub out: PathBuf,
    /// One workflow per CI file (the root and each local include) instead of one in all.
    pub split: bool,
    /// The workflow's name (one workflow); default: the pipeline's directory name.
    pub name: Option<String>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{} exists already (pass --force to overwrite, or --out DIR to write elsewhere)", paths.join(", "))]
    Exists { paths: Vec<String> },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One job and what it became, for the report.
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub job: String,
    pub file: String,
    pub became: String,
}

impl JobRow {
    pub(crate) fn new(job: &str, file: &str, became: &str) -> Self {
        JobRow {
            job: job.into(),
            file: file.into(),
            became: became.into(),
        }
    }
}

/// Something not translated, or translated with a difference: where, and what was done.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    pub file: String,
    pub at: String,
    pub text: String,
}

impl Note {
    pub(crate) fn at(file: &str, at: impl Into<String>, text: impl Into<String>) -> Self {
        Note {
            file: file.into(),
            at: at.into(),
            text: text.into(),
        }
    }
}

/// An import, ready to write.
#[derive(Debug)]
pub struct Imported {
    source: String,
    files_read: Vec<String>,
    workflows: Vec<model::Workflow>,
    env: Vec<model::EnvEntry>,
    rows: Vec<JobRow>,
    notes: Vec<Note>,
}

/// Import the GitLab pipeline at `file`.
pub fn gitlab(file: &Path, options: &Options) -> Result<Imported, ImportError> {
    gitlab::import(file, options)
}

impl Imported {
    /// Every file to write: (name in the output directory, content).
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = self
            .workflows
            .iter()
            .map(|w| (emit::file_name(w), emit::workflow(w)))
            .collect();
        let mut extra = vec![emit::ENV_EXAMPLE.to_string(), emit::REPORT.to_string()];
        if self.env.is_empty() {
            extra.remove(0);
        } else {
            files.push((emit::ENV_EXAMPLE.into(), emit::env_example(self)));
        }
        files.push((emit::REPORT.into(), emit::report(self, &extra)));
        files
    }

    /// How many notes the report has.
    pub fn untranslated(&self) -> usize {
        self.notes.len()
    }

    /// Write every file into `out`: none if any exists already (unless `force`), each through
    /// a temporary file renamed into place. The paths written.
    pub fn write(&self, out: &Path, force: bool) -> Result<Vec<PathBuf>, ImportError> {
        let files = self.files();
        if !force {
            let exist: Vec<String> = files
                .iter()
                .map(|(name, _)| out.join(name))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            if !exist.is_empty() {
                return Err(ImportError::Exists { paths: exist });
            }
        }
        std::fs::create_dir_all(out).map_err(|e| ImportError::Write {
            path: out.display().to_string(),
            source: e,
        })?;
        let mut written = Vec::new();
        for (name, text) in files {
            let path = out.join(&name);
            let failed = |e: std::io::Error| ImportError::Write {
                path: path.display().to_string(),
                source: e,
            };
            // Nothing in these files is secret: readable like any source file.
            let mut tmp = tempfile::Builder::new()
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .tempfile_in(out)
                .map_err(failed)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(failed)?;
            tmp.persist(&path).map_err(|e| failed(e.error))?;
            written.push(path);
        }
        Ok(written)
    }
}
