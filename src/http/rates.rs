//! Publish and delivery rates over the last minutes, from samples of the
//! broker's counters.
//!
//! Edge layer. A sampler task reads the published total
//! ([`Broker::server_info`]), each topic's published count and each
//! group's delivered count every few seconds and keeps a ring of samples;
//! rates are differences between samples. Counters that go down (a topic
//! or group deleted and created again) count as zero for that interval.
//! Nothing is added to the broker for this.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Console;
use crate::broker::Broker;

/// How far back server-wide samples go.
pub const HISTORY: Duration = Duration::from_secs(15 * 60);
/// How far back per-topic and per-group samples go (their rates are "over
/// the last minute").
pub const RECENT: Duration = Duration::from_secs(60);
/// Groups asked for their counters per page.
const PAGE: usize = 500;

/// One server-wide sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    published: u64,
    delivered: u64,
}

/// Recent (time, counter) points of one topic or group.
type Points = VecDeque<(Instant, u64)>;

/// The samples; all methods are cheap and never wait on the broker.
#[derive(Debug, Default)]
pub struct Rates {
    server: Mutex<VecDeque<Sample>>,
    topics: Mutex<HashMap<String, Points>>,
    groups: Mutex<HashMap<(String, String), Points>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Per-second rate between the oldest and newest of `points` at most
/// `window` apart.
fn rate_of(points: &VecDeque<(Instant, u64)>, window: Duration) -> Option<f64> {
    let &(last_at, last) = points.back()?;
    let &(first_at, first) = points
        .iter()
        .find(|(at, _)| last_at.duration_since(*at) <= window)?;
    let secs = last_at.duration_since(first_at).as_secs_f64();
    (secs > 0.0).then(|| last.saturating_sub(first) as f64 / secs)
}

fn push(points: &mut VecDeque<(Instant, u64)>, at: Instant, value: u64, keep: Duration) {
    points.push_back((at, value));
    while points
        .front()
        .is_some_and(|(t, _)| at.duration_since(*t) > keep)
    {
        points.pop_front();
    }
}

impl Rates {
    /// Takes one sample of `broker`'s counters now.
    pub async fn sample(&self, broker: &Broker) {
        let at = Instant::now();
        let info = broker.server_info();
        let mut groups = Vec::new();
        let mut after = None;
        loop {
            match broker.list_groups(None, after, PAGE).await {
                Ok((page, next)) => {
                    groups.extend(
                        page.into_iter()
                            .map(|g| ((g.record.topic, g.record.name), g.stats.delivered)),
                    );
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "rate sample: listing groups failed");
                    return;
                }
            }
        }
        let topics = match broker.list_topics(None, usize::MAX - 1).await {
            Ok((topics, _)) => topics,
            Err(e) => {
                tracing::debug!(error = %e, "rate sample: listing topics failed");
                return;
            }
        };
        let delivered = groups.iter().map(|(_, d)| d).sum();
        {
            let mut server = lock(&self.server);
            server.push_back(Sample {
                at,
                published: info.published,
                delivered,
            });
            while server
                .front()
                .is_some_and(|s| at.duration_since(s.at) > HISTORY)
            {
                server.pop_front();
            }
        }
        {
            let mut map = lock(&self.topics);
            map.retain(|name, _| topics.iter().any(|t| &t.record.name == name));
            for t in topics {
                let points = map.entry(t.record.name).or_default();
                push(points, at, t.stats.published, RECENT);
            }
        }
        let mut map = lock(&self.groups);
        map.retain(|key, _| groups.iter().any(|(k, _)| k == key));
        for (key, delivered) in groups {
            push(map.entry(key).or_default(), at, delivered, RECENT);
        }
    }

    /// Server-wide (published, delivered) per second over the last `window`.
    pub fn server(&self, window: Duration) -> (Option<f64>, Option<f64>) {
        let server = lock(&self.server);
        let published: VecDeque<(Instant, u64)> =
            server.iter().map(|s| (s.at, s.published)).collect();
        let delivered: VecDeque<(Instant, u64)> =
            server.iter().map(|s| (s.at, s.delivered)).collect();
        (rate_of(&published, window), rate_of(&delivered, window))
    }

    /// Per-interval (published, delivered) rates of the whole history,
    /// oldest first, for a chart.
    pub fn series(&self) -> (Vec<f64>, Vec<f64>) {
        let server = lock(&self.server);
        let pairs = server.iter().zip(server.iter().skip(1));
        pairs
            .map(|(a, b)| {
                let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
                (
                    b.published.saturating_sub(a.published) as f64 / secs,
                    b.delivered.saturating_sub(a.delivered) as f64 / secs,
                )
            })
            .unzip()
    }

    /// A topic's publish rate over the last minute.
    pub fn topic(&self, topic: &str) -> Option<f64> {
        lock(&self.topics)
            .get(topic)
            .and_then(|p| rate_of(p, RECENT))
    }

    /// A group's delivery rate over the last minute.
    pub fn group(&self, topic: &str, group: &str) -> Option<f64> {
        lock(&self.groups)
            .get(&(topic.to_string(), group.to_string()))
            .and_then(|p| rate_of(p, RECENT))
    }
}

/// Samples every `interval` until `stop`.
pub(super) async fn run(console: Console, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => console.rates().sample(console.broker()).await,
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_over_the_window() {
        let t0 = Instant::now();
        let mut p = VecDeque::new();
        push(&mut p, t0, 100, RECENT);
        assert_eq!(rate_of(&p, RECENT), None, "one sample is no rate");
        push(&mut p, t0 + Duration::from_secs(10), 150, RECENT);
        assert_eq!(rate_of(&p, RECENT), Some(5.0));
        push(&mut p, t0 + Duration::from_secs(40), 210, RECENT);
        assert_eq!(rate_of(&p, RECENT), Some(110.0 / 40.0));
        push(&mut p, t0 + Duration::from_secs(80), 250, RECENT);
        assert_eq!(p.len(), 2, "samples older than the window are dropped");
        assert_eq!(rate_of(&p, RECENT), Some(1.0));
        push(&mut p, t0 + Duration::from_secs(90), 10, RECENT);
        assert_eq!(rate_of(&p, RECENT), Some(0.0), "a reset counts as zero");
    }
}
