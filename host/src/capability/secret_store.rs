//! The host secret store: one file per secret (mode 0600) in the user data dir, so a value a
//! step generated (a password) can be read by later workflows as `secrets.NAME` and by the user
//! with `orch secret get NAME`. Values never go to the run store.

use std::io::Write;
use std::path::PathBuf;

/// Secrets kept by the host between runs.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

/// A secret store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error(
        "secret name `{0}` is not valid: use letters, digits and `_`, starting with a letter or `_`"
    )]
    BadName(String),
    #[error("secret store `{dir}`: {error}")]
    Io { dir: String, error: std::io::Error },
}

fn valid(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SecretStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn io(&self, error: std::io::Error) -> SecretStoreError {
        SecretStoreError::Io {
            dir: self.dir.display().to_string(),
            error,
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, SecretStoreError> {
        if !valid(name) {
            return Err(SecretStoreError::BadName(name.into()));
        }
        Ok(self.dir.join(name))
    }

    /// The value of `name`, if stored.
    pub fn get(&self, name: &str) -> Result<Option<String>, SecretStoreError> {
        match std::fs::read_to_string(self.path(name)?) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Store `value` under `name`, replacing it atomically; readable by the owner only.
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretStoreError> {
        let path = self.path(name)?;
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.dir)
            .map_err(|e| self.io(e))?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| self.io(e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| self.io(e))?;
        }
        file.write_all(value.as_bytes()).map_err(|e| self.io(e))?;
        file.persist(&path).map_err(|e| self.io(e.error))?;
        Ok(())
    }

    /// Delete `name`; true when it existed.
    pub fn remove(&self, name: &str) -> Result<bool, SecretStoreError> {
        match std::fs::remove_file(self.path(name)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Names of stored secrets, sorted.
    pub fn list(&self) -> Result<Vec<String>, SecretStoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.io(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid(n))
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_reads_lists_and_removes_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::new(dir.path().join("secrets"));
        assert_eq!(store.get("APP_PW").unwrap(), None);
        store.set("APP_PW", "s3cret").unwrap();
        store.set("APP_PW", "rotated").unwrap();
        assert_eq!(store.get("APP_PW").unwrap().as_deref(), Some("rotated"));
        assert_eq!(store.list().unwrap(), ["APP_PW"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets/APP_PW"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(store.remove("APP_PW").unwrap());
        assert!(matches!(
            store.set("../etc", "x"),
            Err(SecretStoreError::BadName(_))
        ));
    }
}
