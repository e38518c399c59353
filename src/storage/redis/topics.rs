//! Topics of the Redis backend: records in the topic's meta hash, names in
//! the registry (which follows the topics; see [`super::keys`]).
//!
//! Storage layer (Redis backend).

use crate::event::now_us;
use crate::model::results::{TopicInfo, TopicStats};
use crate::model::settings::{TopicRecord, TopicSettings};
use crate::model::{Error, echo};
use crate::storage::backend::Update;
use crate::storage::not_found_topic;

use super::{RedisBackend, lock};

/// Script arguments of a topic's settings: dedup window µs, max bytes and
/// max age µs (-1: none).
fn settings_args(s: &TopicSettings) -> [String; 3] {
    [
        s.dedup_window.as_micros().to_string(),
        s.retention_max_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
            .to_string(),
        s.retention_max_age
            .map_or(-1, |a| i64::try_from(a.as_micros()).unwrap_or(i64::MAX))
            .to_string(),
    ]
}

pub(super) fn encode<T: serde::Serialize>(record: &T) -> Result<String, Error> {
    serde_json::to_string(record).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(json).map_err(|e| {
        tracing::error!(error = %e, what, "unreadable record in Redis");
        Error::Internal(format!("the stored record of {what} is unreadable"))
    })
}

impl RedisBackend {
    /// Creates a topic; `Ok(false)` when it exists.
    async fn create_topic_raw(&self, record: &TopicRecord) -> Result<bool, Error> {
        let json = encode(record)?;
        let [dedup, max_bytes, max_age] = settings_args(&record.settings);
        let mut r = self
            .run(
                |s| &s.topic_create,
                &record.name,
                &[
                    json.as_bytes(),
                    dedup.as_bytes(),
                    max_bytes.as_bytes(),
                    max_age.as_bytes(),
                ],
            )
            .await?;
        if r.text()? != "OK" {
            return Ok(false);
        }
        self.register_topic(&record.name).await?;
        tracing::info!(topic = %record.name, "topic created");
        self.recount().await;
        Ok(true)
    }

    /// Adds a topic's name to the registry.
    pub(super) async fn register_topic(&self, name: &str) -> Result<(), Error> {
        let key = self.inner.keys.registry("topics");
        let _: i64 = self
            .cmd(redis::cmd("ZADD").arg(&key).arg("NX").arg(0).arg(name))
            .await?;
        Ok(())
    }

    pub(super) async fn create_topic_impl(&self, record: TopicRecord) -> Result<TopicInfo, Error> {
        if !self.create_topic_raw(&record).await? {
            return Err(Error::AlreadyExists(format!(
                "topic {} already exists",
                echo(&record.name)
            )));
        }
        self.get_topic_impl(&record.name).await
    }

    pub(super) async fn ensure_topic_impl(
        &self,
        name: &str,
        defaults: &TopicSettings,
    ) -> Result<(), Error> {
        // Every publish asks: a topic seen here answers from memory.
        if lock(&self.inner.known).contains(name) {
            return Ok(());
        }
        self.create_topic_raw(&TopicRecord {
            name: name.to_string(),
            created_us: now_us(),
            settings: defaults.clone(),
        })
        .await?;
        lock(&self.inner.known).insert(name.to_string());
        Ok(())
    }

    /// The topic's record and stats, `None` when it does not exist.
    async fn topic_info(&self, name: &str) -> Result<Option<TopicInfo>, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.inner.keys.meta(name))
            .arg(&["rec", "start", "end", "bytes", "published"])
            .cmd("HLEN")
            .arg(self.inner.keys.group_records(name))
            .cmd("ZCARD")
            .arg(self.inner.keys.batches(name));
        let (fields, groups, batches): (Vec<Option<Vec<u8>>>, u64, u64) =
            self.cmd_pipe(&pipe).await?;
        let Some(rec) = fields.first().cloned().flatten() else {
            return Ok(None);
        };
        let num = |i: usize| -> u64 {
            fields
                .get(i)
                .cloned()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        Ok(Some(TopicInfo {
            record: decode(&format!("topic {name}"), &rec)?,
            stats: TopicStats {
                start_offset: num(1),
                end_offset: num(2),
                bytes: num(3),
                published: num(4),
                segments: u32::try_from(batches).unwrap_or(u32::MAX),
                groups: u32::try_from(groups).unwrap_or(u32::MAX),
            },
        }))
    }

    pub(super) async fn get_topic_impl(&self, name: &str) -> Result<TopicInfo, Error> {
        match self.topic_info(name).await? {
            Some(info) => Ok(info),
            None => Err(not_found_topic(name)),
        }
    }

    /// Whether the topic exists, answered from memory for a topic this
    /// node saw (forgotten when a deletion is announced).
    pub(super) async fn topic_known(&self, name: &str) -> Result<bool, Error> {
        if lock(&self.inner.known).contains(name) {
            return Ok(true);
        }
        let exists = self.topic_exists(name).await?;
        if exists {
            lock(&self.inner.known).insert(name.to_string());
        }
        Ok(exists)
    }

    /// Whether the topic exists.
    pub(super) async fn topic_exists(&self, name: &str) -> Result<bool, Error> {
        let n: i64 = self
            .cmd(redis::cmd("EXISTS").arg(self.inner.keys.meta(name)))
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn list_topics_impl(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, Error> {
        let key = self.inner.keys.registry("topics");
        let mut from = after.map_or("-".to_string(), |a| format!("({a}"));
        let mut out = Vec::new();
        while out.len() < limit {
            let want = (limit - out.len()).clamp(16, 512);
            let names: Vec<String> = self
                .cmd(
                    redis::cmd("ZRANGEBYLEX")
                        .arg(&key)
                        .arg(&from)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(want),
                )
                .await?;
            let last = names.len() < want;
            for name in &names {
                match self.topic_info(name).await? {
                    Some(info) if out.len() < limit => out.push(info),
                    Some(_) => {}
                    // A name left by a node that died while deleting.
                    None => {
                        let _: i64 = self.cmd(redis::cmd("ZREM").arg(&key).arg(name)).await?;
                    }
                }
            }
            match names.last() {
                Some(n) if !last => from = format!("({n}"),
                _ => break,
            }
        }
        Ok(out)
    }

    pub(super) async fn update_topic_impl(
        &self,
        name: &str,
        update: Update<'_, TopicSettings>,
    ) -> Result<TopicInfo, Error> {
        loop {
            let rec: Option<Vec<u8>> = self
                .cmd(
                    redis::cmd("HGET")
                        .arg(self.inner.keys.meta(name))
                        .arg("rec"),
                )
                .await?;
            let Some(before) = rec else {
                return Err(not_found_topic(name));
            };
            let mut record: TopicRecord = decode(&format!("topic {name}"), &before)?;
            update(&mut record.settings)?;
            let after = encode(&record)?;
            let [dedup, max_bytes, max_age] = settings_args(&record.settings);
            let mut r = self
                .run(
                    |s| &s.topic_update,
                    name,
                    &[
                        &before,
                        after.as_bytes(),
                        dedup.as_bytes(),
                        max_bytes.as_bytes(),
                        max_age.as_bytes(),
                    ],
                )
                .await?;
            match r.text()?.as_str() {
                "OK" => return self.get_topic_impl(name).await,
                "GONE" => return Err(not_found_topic(name)),
                _ => continue, // changed by another call: apply to the new value
            }
        }
    }

    pub(super) async fn delete_topic_impl(&self, name: &str) -> Result<(), Error> {
        let gids: Vec<String> = self
            .cmd(redis::cmd("HVALS").arg(self.inner.keys.group_ids(name)))
            .await?;
        let names: Vec<String> = self
            .cmd(redis::cmd("HKEYS").arg(self.inner.keys.group_ids(name)))
            .await?;
        let mut r = self.run(|s| &s.topic_delete, name, &[]).await?;
        if r.text()? != "OK" {
            return Err(not_found_topic(name));
        }
        // The registry follows: names, then the groups' ids.
        let _: i64 = self
            .cmd(
                redis::cmd("ZREM")
                    .arg(self.inner.keys.registry("topics"))
                    .arg(name),
            )
            .await?;
        for (g, v) in names.iter().zip(&gids) {
            let gid = v.split('|').next().unwrap_or_default();
            self.unregister_group(name, g, gid).await?;
        }
        self.topic_gone(name);
        self.recount().await;
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// A topic was deleted (here or on another node): its readers and
    /// consumers here end.
    pub(super) fn topic_gone(&self, name: &str) {
        lock(&self.inner.known).remove(name);
        if let Some(t) = lock(&self.inner.topics).remove(name) {
            t.deleted.cancel();
        }
        lock(&self.inner.groups).retain(|gid, g| {
            let keep = g.topic != name;
            if !keep {
                self.inner.chunks.forget_group(*gid);
            }
            keep
        });
        self.inner.chunks.forget_topic(name);
        self.topic_wake(name).notify_waiters();
    }

    /// Runs a pipeline (all keys of one slot).
    pub(super) async fn cmd_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        self.check_open()?;
        let r = self.inner.link.pipe(self.cfg(), pipe).await;
        self.note_health(&r);
        r
    }
}
