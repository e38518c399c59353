//! Noticing that a file changed: its modification time, size and inode.
//!
//! Edge layer, shared by the auth file and the TLS certificate reloader
//! (`grpc::tls`). Polling a stamp every few seconds is portable and cheap,
//! and catches both in-place writes and the rename that editors, `herald
//! auth` and certificate tools (certbot, cert-manager) use.

use std::path::Path;
use std::time::SystemTime;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of `path` now; `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }

    /// The stamps of several files, for a set that changes together.
    pub fn of_all<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<Option<FileStamp>> {
        paths.into_iter().map(FileStamp::of).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_or_a_rename_changes_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(FileStamp::of(&path), None);
        std::fs::write(&path, "one").unwrap();
        let first = FileStamp::of(&path).unwrap();
        assert_eq!(FileStamp::of(&path), Some(first));
        std::fs::write(&path, "three").unwrap();
        let second = FileStamp::of(&path).unwrap();
        assert_ne!(first, second, "size changed");
        let other = dir.path().join("g");
        std::fs::write(&other, "three").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(FileStamp::of(&path).unwrap(), second, "new inode");
    }
}
