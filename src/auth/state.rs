//! The policy in force, and its reload when the auth file changes.
//!
//! Edge layer. Readers take the current [`Policy`] (an `Arc`, one short
//! read lock); a reload parses the whole file first and swaps it in only
//! when it is valid, so a bad edit is logged and the previous policy stays.
//! Calls in progress finish with the policy they started with; streams that
//! are already open keep running (authorization happens when a call starts,
//! and for each request of a PublishStream).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::watch::FileStamp;
use super::{AuthError, Policy};

/// The auth file and the policy loaded from it.
#[derive(Debug)]
pub struct AuthState {
    path: PathBuf,
    cache_size: usize,
    current: RwLock<Arc<Policy>>,
    /// The stamp of the version last read, valid or not (a bad version is
    /// reported once, not at every poll).
    stamp: Mutex<Option<FileStamp>>,
}

/// Reads and parses the auth file at `path`.
///
/// # Errors
/// [`AuthError::File`] naming the path.
pub fn read(path: &Path, cache_size: usize) -> Result<Policy, AuthError> {
    let named = |reason: String| AuthError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| named(e.to_string()))?;
    super::file::parse(&text, cache_size).map_err(|e| match e {
        AuthError::Invalid(reason) => named(reason),
        other => other,
    })
}

impl AuthState {
    /// Loads the file at `path`.
    ///
    /// # Errors
    /// The file cannot be read or is not valid.
    pub fn load(path: &Path, cache_size: usize) -> Result<AuthState, AuthError> {
        let stamp = FileStamp::of(path);
        let policy = read(path, cache_size)?;
        Ok(AuthState {
            path: path.to_path_buf(),
            cache_size,
            current: RwLock::new(Arc::new(policy)),
            stamp: Mutex::new(stamp),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again if it changed since it was last read (always,
    /// with `force`), and puts it in force if it is valid. Returns whether
    /// a new policy is in force; logs either way.
    ///
    /// # Errors
    /// The new version cannot be read or is not valid: the previous policy
    /// stays in force.
    pub fn reload(&self, force: bool) -> Result<bool, AuthError> {
        let now = FileStamp::of(&self.path);
        {
            let mut stamp = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *stamp == now {
                return Ok(false);
            }
            *stamp = now;
        }
        match read(&self.path, self.cache_size) {
            Ok(policy) => {
                let principals = policy.principals().count();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
                tracing::info!(path = %self.path.display(), principals,
                    "auth file reloaded; cached tokens dropped");
                Ok(true)
            }
            Err(e) => {
                tracing::error!(error = %e, "the auth file is not valid; the previous version stays in force");
                Err(e)
            }
        }
    }

    /// Checks the file every `interval` until `stop`, reloading it when it
    /// changed.
    pub async fn watch(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        if interval.is_zero() {
            return;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {
                    // Errors were logged by `reload`.
                    let _ = self.reload(false);
                }
            }
        }
    }
}
