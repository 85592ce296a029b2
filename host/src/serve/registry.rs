//! The workflows a server serves: every valid `*.toml` of its directory, rescanned so that a
//! changed file is reloaded, an invalid one reported and not served, a removed one dropped.

use crate::resolve::Sources;
use crate::resolve::{self, ResolvedWorkflow};
use crate::runtime::Runtime;
use crate::workflow::{self, LoadError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// A workflow being served.
pub(crate) struct Served {
    pub workflow: Arc<ResolvedWorkflow>,
    pub path: PathBuf,
}

/// A file that is not served, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rejected {
    pub path: String,
    pub errors: String,
}

/// The served workflows by name, and the rejected files.
#[derive(Default)]
pub(crate) struct Registry {
    served: RwLock<HashMap<String, Arc<Served>>>,
    rejected: RwLock<Vec<Rejected>>,
    /// What each file looked like when last loaded: reload only what changed.
    seen: std::sync::Mutex<HashMap<PathBuf, (SystemTime, u64)>>,
    /// What `orch.lock` looked like at the last scan: a new lock reloads every workflow.
    lock_seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

/// What one scan changed.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub loaded: Vec<String>,
    pub rejected: Vec<Rejected>,
    pub removed: Vec<String>,
}

impl Scan {
    /// Did anything change?
    pub(crate) fn changed(&self) -> bool {
        !(self.loaded.is_empty() && self.rejected.is_empty() && self.removed.is_empty())
    }
}

impl Registry {
    /// A served workflow by name.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Served>> {
        self.served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every served workflow, by name.
    pub(crate) fn all(&self) -> Vec<Arc<Served>> {
        let mut all: Vec<_> = self
            .served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.workflow.name.cmp(&b.workflow.name));
        all
    }

    /// Files not served, with their errors.
    pub(crate) fn rejected(&self) -> Vec<Rejected> {
        self.rejected
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Load new and changed files of `dir`, drop removed ones.
    pub(crate) async fn scan(
        &self,
        dir: &Path,
        runtime: &Runtime,
        sources: &Sources,
    ) -> std::io::Result<Scan> {
        // The lock as it is now: `orch lock` may have rewritten it since the last scan, and
        // then every workflow is checked against it again.
        let sources = match sources.reload(sources.strict) {
            Ok(sources) => sources,
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let lock_stamp = std::fs::metadata(dir.join(crate::resolve::lock::LOCK_FILE))
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        {
            let mut last = self.lock_seen.lock().unwrap_or_else(|e| e.into_inner());
            if *last != lock_stamp {
                *last = lock_stamp;
                self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
        }
        let mut files: Vec<(PathBuf, (SystemTime, u64))> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "toml")
                && let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
            {
                let stamp = (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                );
                files.push((path, stamp));
            }
        }
        files.sort();
        let (changed, gone): (Vec<PathBuf>, Vec<PathBuf>) = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let changed = files
                .iter()
                .filter(|(p, stamp)| seen.get(p) != Some(stamp))
                .map(|(p, _)| p.clone())
                .collect();
            let gone = seen
                .keys()
                .filter(|p| !files.iter().any(|(f, _)| f == *p))
                .cloned()
                .collect();
            (changed, gone)
        };
        let mut scan = Scan::default();
        for path in gone.iter().chain(&changed) {
            scan.removed.extend(self.forget(path));
        }
        for path in &changed {
            match load(path, runtime, &sources).await {
                Ok(served) => {
                    let name = served.workflow.name.clone();
                    let mut map = self.served.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(other) = map.get(&name) {
                        scan.rejected.push(Rejected {
                            path: path.display().to_string(),
                            errors: format!(
                                "workflow name `{name}` is already served from {}: rename one of them",
                                other.path.display()
                            ),
                        });
                    } else {
                        scan.removed.retain(|n| n != &name);
                        map.insert(name.clone(), Arc::new(served));
                        scan.loaded.push(name);
                    }
                }
                Err(errors) => scan.rejected.push(Rejected {
                    path: path.display().to_string(),
                    errors,
                }),
            }
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for path in &gone {
                seen.remove(path);
            }
            for (path, stamp) in files.iter().filter(|(p, _)| changed.contains(p)) {
                seen.insert(path.clone(), *stamp);
            }
        }
        let mut rejected = self.rejected.write().unwrap_or_else(|e| e.into_inner());
        rejected.retain(|r| {
            let p = Path::new(&r.path);
            !gone.iter().any(|g| g == p) && !changed.iter().any(|c| c == p)
        });
        rejected.extend(scan.rejected.iter().cloned());
        Ok(scan)
    }

    /// Stop serving whatever was loaded from `path`; the names dropped.
    fn forget(&self, path: &Path) -> Vec<String> {
        let mut map = self.served.write().unwrap_or_else(|e| e.into_inner());
        let names: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.path == path)
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            map.remove(name);
        }
        names
    }
}

/// Load and check one file; the errors as the CLI would print them.
async fn load(path: &Path, runtime: &Runtime, sources: &Sources) -> Result<Served, String> {
    let workflow = match workflow::load(path) {
        Ok(wf) => wf,
        Err(LoadError::Invalid(d)) => return Err(d.render(false)),
        Err(e) => return Err(e.to_string()),
    };
    let workflow = resolve::resolve(runtime, sources, workflow)
        .await
        .map_err(|d| d.render(false))?;
    Ok(Served {
        workflow: Arc::new(workflow),
        path: path.to_path_buf(),
    })
}
