//! Consumer groups of the Redis backend: records and state on the topic's
//! slot, names and ids in the registry, stats from one script.
//!
//! Storage layer (Redis backend).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::model::results::{BlockedKey, GroupGauges, GroupInfo, GroupStats};
use crate::model::settings::{Filter, GroupRecord, GroupSettings, Position, TopicSettings};
use crate::model::{Error, echo};
use crate::storage::backend::Update;
use crate::storage::{not_found_group, not_found_topic};

use super::conn::Reply;
use super::events::{out_of_range, position_args};
use super::topics::{decode, encode};
use super::{GroupRef, RedisBackend, lock};

/// Script arguments of a group's settings (group_create's ARGV[8..16]).
fn settings_args(s: &GroupSettings) -> Vec<String> {
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX).to_string();
    let (types, patterns) = filter_args(&s.filter);
    vec![
        us(s.ack_deadline),
        us(s.retry.min_backoff),
        us(s.retry.max_backoff),
        format!("{}", s.retry.multiplier),
        s.max_delivery_attempts.to_string(),
        if s.ordered { "1" } else { "0" }.into(),
        types,
        patterns,
        s.max_message_age.map_or_else(|| "-1".to_string(), us),
    ]
}

/// A filter as the Lua matcher takes it: types and patterns one per line,
/// a trailing `>` spelled `*.#`, runs of `#` merged.
fn filter_args(f: &Filter) -> (String, String) {
    let patterns: Vec<String> = f
        .patterns
        .iter()
        .map(|p| {
            let mut out: Vec<&str> = Vec::new();
            for seg in p.split('.') {
                match seg {
                    ">" => out.extend(["*", "#"]),
                    "#" if out.last() == Some(&"#") => {}
                    s => out.push(s),
                }
            }
            out.join(".")
        })
        .collect();
    (f.types.join("\n"), patterns.join("\n"))
}

impl RedisBackend {
    /// The group as scripts address it.
    pub(super) async fn group_ref(&self, topic: &str, name: &str) -> Result<GroupRef, Error> {
        let v: Option<String> = self
            .cmd(
                redis::cmd("HGET")
                    .arg(self.inner.keys.group_ids(topic))
                    .arg(name),
            )
            .await?;
        let v = v.ok_or_else(|| not_found_group(topic, name))?;
        let (gid, generation) = v.split_once('|').unwrap_or((&v, ""));
        let g = GroupRef {
            topic: topic.to_string(),
            name: name.to_string(),
            gid: gid.parse().unwrap_or(0),
            generation: generation.to_string(),
        };
        lock(&self.inner.groups).insert(g.gid, g.clone());
        Ok(g)
    }

    /// The group of an id (from an ack id), `None` when it is gone.
    pub(super) async fn group_by_id(&self, gid: u64) -> Result<Option<GroupRef>, Error> {
        if let Some(g) = lock(&self.inner.groups).get(&gid) {
            return Ok(Some(g.clone()));
        }
        let v: Option<String> = self
            .cmd(
                redis::cmd("HGET")
                    .arg(self.inner.keys.registry("gids"))
                    .arg(gid),
            )
            .await?;
        let Some((topic, name)) = v.as_deref().and_then(|v| v.split_once('\n')) else {
            return Ok(None);
        };
        match self.group_ref(topic, name).await {
            Ok(g) if g.gid == gid => Ok(Some(g)),
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets a group that scripts found gone.
    pub(super) fn group_gone(&self, gid: u64) {
        lock(&self.inner.groups).remove(&gid);
        lock(&self.inner.gauges).remove(&gid);
        self.inner.chunks.forget_group(gid);
        self.group_wake(gid).notify_waiters();
    }

    pub(super) async fn create_group_impl(
        &self,
        record: GroupRecord,
        topic_defaults: Option<&TopicSettings>,
    ) -> Result<GroupInfo, Error> {
        if let Some(defaults) = topic_defaults {
            if let Position::Offset(o) = record.start
                && o > 0
                && !self.topic_exists(&record.topic).await?
            {
                return Err(Error::OutOfRange(format!(
                    "group.start_position: offset {o} is past the end of the topic (0)"
                )));
            }
            self.ensure_topic_impl(&record.topic, defaults).await?;
        }
        let gid: u64 = self
            .cmd(redis::cmd("INCR").arg(self.inner.keys.registry("gid")))
            .await?;
        let (kind, value) = position_args(record.start);
        let json = encode(&record)?;
        let gid_s = gid.to_string();
        let settings = settings_args(&record.settings);
        let mut args: Vec<&[u8]> = vec![
            gid_s.as_bytes(),
            record.name.as_bytes(),
            json.as_bytes(),
            kind.as_bytes(),
            value.as_bytes(),
        ];
        args.extend(settings.iter().map(|s| s.as_bytes()));
        let mut r = self.run(|s| &s.group_create, &record.topic, &args).await?;
        match r.text()?.as_str() {
            "OK" => {}
            "EXISTS" => {
                return Err(Error::AlreadyExists(format!(
                    "group {} of topic {} already exists",
                    echo(&record.name),
                    echo(&record.topic)
                )));
            }
            "NOTOPIC" => return Err(not_found_topic(&record.topic)),
            _ => {
                return Err(out_of_range(
                    "group.start_position",
                    record.start,
                    r.uint()?,
                    r.uint()?,
                ));
            }
        }
        let mut pipe = redis::pipe();
        let member = format!("{}\n{}", record.topic, record.name);
        pipe.cmd("HSET")
            .arg(self.inner.keys.registry("gids"))
            .arg(gid)
            .arg(&member)
            .ignore()
            .cmd("ZADD")
            .arg(self.inner.keys.registry("groups"))
            .arg(0)
            .arg(&member)
            .ignore();
        let () = self.cmd_pipe(&pipe).await?;
        tracing::info!(topic = %record.topic, group = %record.name, "group created");
        self.recount().await;
        self.get_group_impl(&record.topic, &record.name).await
    }

    pub(super) async fn ensure_group_impl(
        &self,
        topic: &str,
        group: &str,
        defaults: Option<(&GroupSettings, &TopicSettings)>,
    ) -> Result<(), Error> {
        match self.group_ref(topic, group).await {
            Ok(_) => return Ok(()),
            Err(Error::NotFound(m)) if defaults.is_none() => {
                return Err(if self.topic_exists(topic).await? {
                    Error::NotFound(m)
                } else {
                    not_found_topic(topic)
                });
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let (settings, topic_settings) = defaults.expect("checked above");
        let record = GroupRecord {
            topic: topic.to_string(),
            name: group.to_string(),
            created_us: crate::event::now_us(),
            start: Position::Latest,
            settings: settings.clone(),
        };
        match self.create_group_impl(record, Some(topic_settings)).await {
            Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn get_group_impl(&self, topic: &str, name: &str) -> Result<GroupInfo, Error> {
        let rec: Option<Vec<u8>> = self
            .cmd(
                redis::cmd("HGET")
                    .arg(self.inner.keys.group_records(topic))
                    .arg(name),
            )
            .await?;
        let rec = rec.ok_or_else(|| not_found_group(topic, name))?;
        let record: GroupRecord = decode(&format!("group {name}"), &rec)?;
        let g = self.group_ref(topic, name).await?;
        let stats = self
            .group_stats(&g)
            .await?
            .ok_or_else(|| not_found_group(topic, name))?;
        Ok(GroupInfo { record, stats })
    }

    /// A group's stats; `None` when it is gone.
    pub(super) async fn group_stats(&self, g: &GroupRef) -> Result<Option<GroupStats>, Error> {
        let gid = g.gid.to_string();
        let mut r = self
            .run(
                |s| &s.group_stats,
                &g.topic,
                &[gid.as_bytes(), g.generation.as_bytes()],
            )
            .await?;
        if r.text()? != "OK" {
            self.group_gone(g.gid);
            return Ok(None);
        }
        let stats = parse_stats(&mut r)?;
        if let Some((_, _, gauges)) = lock(&self.inner.gauges).get(&g.gid) {
            gauges.backlog.store(stats.backlog, Ordering::Relaxed);
            gauges.in_flight.store(stats.in_flight, Ordering::Relaxed);
            gauges
                .dead_letters
                .store(stats.dead_letter_count, Ordering::Relaxed);
        }
        Ok(Some(stats))
    }

    pub(super) async fn list_groups_impl(
        &self,
        topic: Option<&str>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>, Error> {
        let mut names: Vec<(String, String)> = match topic {
            Some(t) => {
                if !self.topic_exists(t).await? {
                    return Err(not_found_topic(t));
                }
                let mut n: Vec<String> = self
                    .cmd(redis::cmd("HKEYS").arg(self.inner.keys.group_records(t)))
                    .await?;
                n.sort();
                n.into_iter().map(|g| (t.to_string(), g)).collect()
            }
            None => {
                let all: Vec<String> = self
                    .cmd(
                        redis::cmd("ZRANGE")
                            .arg(self.inner.keys.registry("groups"))
                            .arg(0)
                            .arg(-1),
                    )
                    .await?;
                all.iter()
                    .filter_map(|m| m.split_once('\n'))
                    .map(|(t, g)| (t.to_string(), g.to_string()))
                    .collect()
            }
        };
        if let Some(after) = after {
            names.retain(|n| *n > after);
        }
        let mut out = Vec::new();
        for (t, g) in names {
            if out.len() >= limit {
                break;
            }
            match self.get_group_impl(&t, &g).await {
                Ok(info) => out.push(info),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(super) async fn update_group_impl(
        &self,
        topic: &str,
        name: &str,
        update: Update<'_, GroupSettings>,
    ) -> Result<GroupInfo, Error> {
        loop {
            let rec: Option<Vec<u8>> = self
                .cmd(
                    redis::cmd("HGET")
                        .arg(self.inner.keys.group_records(topic))
                        .arg(name),
                )
                .await?;
            let before = rec.ok_or_else(|| not_found_group(topic, name))?;
            let mut record: GroupRecord = decode(&format!("group {name}"), &before)?;
            update(&mut record.settings)?;
            let after = encode(&record)?;
            let settings = settings_args(&record.settings);
            let mut args: Vec<&[u8]> = vec![name.as_bytes(), &before, after.as_bytes()];
            args.extend(settings.iter().map(|s| s.as_bytes()));
            let mut r = self.run(|s| &s.group_update, topic, &args).await?;
            match r.text()?.as_str() {
                "OK" => return self.get_group_impl(topic, name).await,
                "GONE" => return Err(not_found_group(topic, name)),
                _ => continue,
            }
        }
    }

    pub(super) async fn delete_group_impl(&self, topic: &str, name: &str) -> Result<(), Error> {
        let mut r = self
            .run(|s| &s.group_delete, topic, &[name.as_bytes()])
            .await?;
        if r.text()? != "OK" {
            return Err(if self.topic_exists(topic).await? {
                not_found_group(topic, name)
            } else {
                not_found_topic(topic)
            });
        }
        let gid = r.text()?;
        self.unregister_group(topic, name, &gid).await?;
        self.group_gone(gid.parse().unwrap_or(0));
        self.recount().await;
        tracing::info!(topic, group = name, "group deleted");
        Ok(())
    }

    /// Removes a deleted group from the registry.
    pub(super) async fn unregister_group(
        &self,
        topic: &str,
        name: &str,
        gid: &str,
    ) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(self.inner.keys.registry("gids"))
            .arg(gid)
            .ignore()
            .cmd("ZREM")
            .arg(self.inner.keys.registry("groups"))
            .arg(format!("{topic}\n{name}"))
            .ignore();
        self.cmd_pipe(&pipe).await
    }

    pub(super) async fn seek_impl(
        &self,
        topic: &str,
        name: &str,
        position: Position,
    ) -> Result<u64, Error> {
        let g = self.group_ref(topic, name).await?;
        let (kind, value) = position_args(position);
        let gid = g.gid.to_string();
        let mut r = self
            .run(
                |s| &s.seek,
                topic,
                &[
                    gid.as_bytes(),
                    g.generation.as_bytes(),
                    kind.as_bytes(),
                    value.as_bytes(),
                ],
            )
            .await?;
        match r.text()?.as_str() {
            "OK" => {
                self.group_wake(g.gid).notify_waiters();
                r.uint()
            }
            "RANGE" => Err(out_of_range("position", position, r.uint()?, r.uint()?)),
            _ => {
                self.group_gone(g.gid);
                Err(not_found_group(topic, name))
            }
        }
    }

    /// The gauges of a group with consumers here.
    pub(super) fn gauges_of(&self, g: &GroupRef) -> Arc<GroupGauges> {
        lock(&self.inner.gauges)
            .entry(g.gid)
            .or_insert_with(|| (g.topic.clone(), g.name.clone(), Arc::default()))
            .2
            .clone()
    }
}

/// Reads group_stats's reply after its status.
fn parse_stats(r: &mut Reply) -> Result<GroupStats, Error> {
    let now = r.int()?;
    let _end = r.uint()?;
    let cursor = r.uint()?;
    let floor = r.uint()?;
    let pending = r.uint()?;
    let in_flight = r.uint()?;
    let dead_letters = r.uint()?;
    let consumers = r.uint()?;
    let oldest = r.int()?;
    let oldest_dl = r.int()?;
    let blocked = r.uint()?;
    let end = _end;
    let age = |t: i64| (t >= 0).then(|| Duration::from_micros(u64::try_from(now - t).unwrap_or(0)));
    let mut stats = GroupStats {
        backlog: end.saturating_sub(cursor) + pending,
        in_flight,
        dead_letter_count: dead_letters,
        connected_consumers: u32::try_from(consumers).unwrap_or(u32::MAX),
        oldest_unacked_age: age(oldest),
        ack_floor: floor,
        blocked_keys: blocked,
        oldest_dead_letter_age: age(oldest_dl),
        ..GroupStats::default()
    };
    loop {
        let field = r.text()?;
        if field == "--" {
            break;
        }
        let v = r.uint()?;
        match field.as_str() {
            "delivered" => stats.delivered = v,
            "acked" => stats.acked = v,
            "nacked" => stats.nacked = v,
            "redelivered" => stats.redelivered = v,
            "dead_lettered" => stats.dead_lettered = v,
            "filtered" => stats.filtered = v,
            "expired" => stats.expired = v,
            _ => {}
        }
    }
    while r.left() >= 5 {
        stats.oldest_blocked.push(BlockedKey {
            key: r.text()?,
            offset: r.uint()?,
            attempts: u32::try_from(r.uint()?).unwrap_or(u32::MAX),
            waiting: r.uint()?,
            since_us: r.int()?,
        });
    }
    Ok(stats)
}
