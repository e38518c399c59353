//! `[pubsub]`: the Google Pub/Sub front door (`google.pubsub.v1` on the
//! gRPC port).

use serde::{Deserialize, Serialize};

use crate::pubsub::{DEFAULT_PROJECT, Options, names};

/// `[pubsub]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubConfig {
    /// Serve the Pub/Sub Publisher and Subscriber APIs beside `herald.v1`.
    pub enabled: bool,
    /// The project under which Herald's topics appear with their own
    /// names; other projects' resources get prefixed Herald names (see
    /// the README's Pub/Sub section).
    pub default_project: String,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            enabled: true,
            default_project: DEFAULT_PROJECT.to_string(),
        }
    }
}

impl PubSubConfig {
    /// The front door's options, when it is on.
    pub fn options(&self) -> Option<Options> {
        self.enabled.then(|| Options {
            default_project: self.default_project.clone(),
        })
    }

    /// # Errors
    /// A default project that is not a Pub/Sub project id.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !names::valid_project(&self.default_project) {
            anyhow::bail!(
                "pubsub.default_project {:?} is not a project id (1 to 30 of a-z, 0-9 and '-', starting with a letter)",
                self.default_project
            );
        }
        Ok(())
    }
}
