//! Unit tests of the group state machine, under paused tokio time.

use super::super::meta::GroupState;
use super::*;
use crate::event::Event;
use tokio::time::advance;

fn events(range: std::ops::Range<u64>) -> Vec<Arc<StoredEvent>> {
    range
        .map(|offset| {
            Arc::new(StoredEvent {
                offset,
                publish_time_us: 1_000 + offset as i64,
                event: Event {
                    id: format!("e{offset}"),
                    event_type: "T".into(),
                    ..Event::default()
                },
            })
        })
        .collect()
}

const LEASE: Duration = Duration::from_secs(30);
const WALL: i64 = 1_700_000_000_000_000;

fn policy() -> RetryPolicy {
    RetryPolicy {
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        multiplier: 2.0,
    }
}

fn group(max_attempts: u32) -> Dispatcher {
    let mut d = Dispatcher::new(0);
    d.reserve_all_for_test();
    d.set_policy(policy(), max_attempts);
    d
}

/// Makes what the dispatcher wants written durable (as a flush would).
fn persist(d: &mut Dispatcher) {
    if d.take_delta(Instant::now(), WALL, false).is_some() {
        d.durable(true);
    }
}

/// A flush, then a dispatch: what a group task does.
fn deliver(d: &mut Dispatcher) -> Vec<(ConsumerId, Vec<Handout>)> {
    persist(d);
    d.dispatch(Instant::now(), LEASE)
}

fn one(d: &mut Dispatcher) -> Handout {
    let mut out = deliver(d);
    assert_eq!(out.len(), 1, "one consumer served");
    let mut batch = out.remove(0).1;
    assert_eq!(batch.len(), 1, "one delivery");
    batch.remove(0)
}

#[tokio::test(start_paused = true)]
async fn consumers_share_work_without_overlap_and_respect_max_in_flight() {
    let mut d = group(0);
    d.add_consumer(1, 3);
    d.add_consumer(2, 2);
    assert_eq!(d.wanted(), 5);
    d.add_events(events(0..10), |_| true);
    let out = deliver(&mut d);
    let mut seen: Vec<u64> = out
        .iter()
        .flat_map(|(_, b)| b.iter().map(|h| h.event.offset))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![0, 1, 2, 3, 4],
        "five slots, five distinct events"
    );
    let per: HashMap<_, _> = out.iter().map(|(c, b)| (*c, b.len())).collect();
    assert_eq!(per[&1], 3);
    assert_eq!(per[&2], 2);
    assert!(deliver(&mut d).is_empty(), "no credit left");
    assert_eq!(d.in_flight(), 5);
}

#[tokio::test(start_paused = true)]
async fn ack_advances_floor_and_repeated_ack_is_already_done() {
    let mut d = group(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..3), |_| true);
    let batch = deliver(&mut d).remove(0).1;
    assert_eq!(d.ack(1, batch[1].lease), LeaseOutcome::Ok);
    assert_eq!(d.floor(), 0, "offset 0 still pending");
    assert_eq!(d.ack(0, batch[0].lease), LeaseOutcome::Ok);
    assert_eq!(d.floor(), 2);
    assert_eq!(d.ack(0, batch[0].lease), LeaseOutcome::AlreadyDone);
    assert_eq!(d.ack(7, 1), LeaseOutcome::Unknown, "never read");
    assert_eq!(d.ack(2, 999), LeaseOutcome::Unknown, "lease never issued");
    let delta = d.take_delta(Instant::now(), WALL, true).unwrap();
    assert_eq!(delta.upserts.len(), 1);
    assert_eq!((delta.upserts[0].key, delta.upserts[0].attempts), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn expiry_backoff_schedule_and_attempt_numbers() {
    let mut d = group(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..1), |_| true);
    let mut attempts = Vec::new();
    let mut gaps = Vec::new();
    let mut last_expiry = None;
    for _ in 0..5 {
        // Wait for the retry (if any) to come due, then take the delivery.
        while deliver(&mut d).is_empty() {
            let wake = d.next_wakeup().expect("something is scheduled");
            tokio::time::sleep_until(wake).await;
            d.tick(Instant::now(), WALL);
            if let Some(t) = last_expiry
                && !d.ready.is_empty()
            {
                gaps.push(Instant::now() - t);
            }
        }
        let h = d.entries.get(&0).map(|e| e.attempts).unwrap();
        attempts.push(h);
        // Let the lease run out.
        advance(LEASE).await;
        assert_eq!(d.tick(Instant::now(), WALL), 1);
        last_expiry = Some(Instant::now());
    }
    assert_eq!(attempts, vec![1, 2, 3, 4, 5], "delivery_attempt is exact");
    let secs: Vec<u64> = gaps.iter().map(|g| g.as_secs()).collect();
    assert_eq!(
        secs,
        vec![1, 2, 4, 8],
        "backoff doubles, capped at max_backoff 8s"
    );
    assert_eq!(d.counters().expired_leases, 5);
}

#[tokio::test(start_paused = true)]
async fn expiry_racing_a_late_ack_and_stale_attempts() {
    let mut d = group(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..1), |_| true);
    let first = one(&mut d);
    advance(LEASE).await;
    d.tick(Instant::now(), WALL);
    // The lease expired; the event waits for its retry. A late ack of the
    // expired lease still completes it (the consumer did the work).
    assert_eq!(d.ack(0, first.lease), LeaseOutcome::Ok);
    assert_eq!(d.pending(), 0);
    assert_eq!(d.next_wakeup(), None, "the retry was cancelled");

    d.add_events(events(1..2), |_| true);
    let first = one(&mut d);
    advance(LEASE).await;
    d.tick(Instant::now(), WALL);
    advance(Duration::from_secs(1)).await;
    d.tick(Instant::now(), WALL);
    let second = one(&mut d);
    assert_eq!(second.attempt, 2);
    // Stale attempt: nack and extend of the old lease change nothing.
    assert_eq!(
        d.nack(1, first.lease, None, "x", false, Instant::now(), WALL),
        LeaseOutcome::Stale
    );
    assert_eq!(
        d.extend(1, first.lease, LEASE, Instant::now()),
        Err(LeaseOutcome::Stale)
    );
    assert_eq!(d.in_flight(), 1);
    // Extend after expiry of the current lease is stale too.
    advance(LEASE).await;
    d.tick(Instant::now(), WALL);
    assert_eq!(
        d.extend(1, second.lease, LEASE, Instant::now()),
        Err(LeaseOutcome::Stale)
    );
    // A late ack of the old lease while nobody holds it: honoured.
    assert_eq!(d.ack(1, first.lease), LeaseOutcome::Ok);
    assert_eq!(d.ack(1, second.lease), LeaseOutcome::AlreadyDone);
    assert_eq!(d.credit(), 10);
}

#[tokio::test(start_paused = true)]
async fn nack_with_delay_reason_and_backoff() {
    let mut d = group(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..1), |_| true);
    let h = one(&mut d);
    let out = d.nack(
        0,
        h.lease,
        Some(Duration::ZERO),
        "",
        false,
        Instant::now(),
        WALL,
    );
    assert_eq!(out, LeaseOutcome::Ok);
    let h = one(&mut d);
    assert_eq!(h.attempt, 2);
    assert_eq!(
        d.nack(0, h.lease, None, "db down", false, Instant::now(), WALL + 5),
        LeaseOutcome::Ok
    );
    assert_eq!(
        d.next_wakeup(),
        Some(Instant::now() + Duration::from_secs(2)),
        "attempt 2 failed: 1s * 2"
    );
    let delta = d.take_delta(Instant::now(), WALL + 5, false).unwrap();
    let p = &delta.upserts[0];
    assert_eq!(
        p.attempts, 3,
        "the retry it waits for is counted before it goes out"
    );
    assert_eq!(
        p.due_us,
        Some(WALL + 5 + 2_000_000),
        "retry time is persisted as wall clock"
    );
    assert_eq!(p.first_failure_us, WALL);
    assert_eq!(p.last_reason, "db down");
    assert_eq!(d.counters().nacked, 2);
    assert_eq!(d.counters().redelivered, 1);
}

#[tokio::test(start_paused = true)]
async fn dead_letter_after_max_attempts_or_at_once_when_poison() {
    let mut d = group(3);
    d.add_consumer(1, 10);
    d.add_events(events(0..2), |_| true);
    let batch = deliver(&mut d).remove(0).1;
    // Offset 1 is poison: dead-lettered at once on request.
    assert_eq!(
        d.nack(
            1,
            batch[1].lease,
            None,
            "bad payload",
            true,
            Instant::now(),
            WALL
        ),
        LeaseOutcome::Ok
    );
    let dead = d.take_dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].key, dead[0].attempts, dead[0].reason.as_str()),
        (1, 1, "bad payload")
    );
    // Offset 0 fails three times (nack, expiry, nack), then is given up.
    assert_eq!(
        d.nack(
            0,
            batch[0].lease,
            Some(Duration::ZERO),
            "",
            false,
            Instant::now(),
            WALL
        ),
        LeaseOutcome::Ok
    );
    let h = one(&mut d);
    advance(LEASE).await;
    d.tick(Instant::now(), WALL + 1);
    assert!(d.take_dead().is_empty(), "two failures: not yet");
    advance(Duration::from_secs(2)).await;
    d.tick(Instant::now(), WALL + 2);
    let h3 = one(&mut d);
    assert_eq!((h.attempt, h3.attempt), (2, 3));
    assert_eq!(
        d.nack(
            0,
            h3.lease,
            None,
            "still broken",
            false,
            Instant::now(),
            WALL + 3
        ),
        LeaseOutcome::Ok
    );
    let dead = d.take_dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].attempts,
            dead[0].first_failure_us,
            dead[0].last_failure_us
        ),
        (3, WALL, WALL + 3)
    );
    assert_eq!(dead[0].reason, "still broken");
    assert_eq!(d.pending(), 0);
    assert_eq!(d.floor(), 2, "dead letters leave the live flow");
    assert_eq!(d.counters().dead_lettered, 2);
    assert_eq!(d.ack(0, h3.lease), LeaseOutcome::AlreadyDone);
}

#[tokio::test(start_paused = true)]
async fn replay_resets_attempts_and_is_not_duplicated() {
    let mut d = group(2);
    d.add_consumer(1, 10);
    d.add_events(events(5..6), |_| true);
    let copy = events(5..6).remove(0);
    assert!(d.add_replay(9, copy.clone()));
    assert!(!d.add_replay(9, copy.clone()), "already pending");
    let batch = deliver(&mut d).remove(0).1;
    let replay = batch.iter().find(|h| h.key == REPLAY_BIT | 9).unwrap();
    assert_eq!(replay.attempt, 1);
    assert_eq!(
        replay.event.offset, 5,
        "a replay carries the original offset"
    );
    assert_eq!(d.ack(REPLAY_BIT | 9, replay.lease), LeaseOutcome::Ok);
    assert_eq!(d.take_acked_replays(), vec![9]);
    assert_eq!(
        d.ack(REPLAY_BIT | 9, replay.lease),
        LeaseOutcome::AlreadyDone
    );
    assert_eq!(d.floor(), 5, "replays do not hold the floor");
}

#[tokio::test(start_paused = true)]
async fn removed_consumer_releases_leases_at_once_and_counts_the_attempt() {
    let mut d = group(0);
    d.add_consumer(1, 5);
    d.add_events(events(0..5), |_| true);
    let batch = deliver(&mut d).remove(0).1;
    assert_eq!(batch.len(), 5);
    d.add_consumer(2, 5);
    assert_eq!(
        d.remove_consumer(1, &Default::default(), Instant::now(), WALL),
        5
    );
    let out = deliver(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 2);
    assert!(out[0].1.iter().all(|h| h.attempt == 2));
    assert_eq!(
        d.ack(0, batch[0].lease),
        LeaseOutcome::Ok,
        "late ack from the gone consumer"
    );
}

#[tokio::test(start_paused = true)]
async fn extend_moves_the_deadline() {
    let mut d = group(0);
    d.add_consumer(1, 1);
    d.add_events(events(0..1), |_| true);
    let h = one(&mut d);
    advance(Duration::from_secs(20)).await;
    let new = d
        .extend(0, h.lease, Duration::from_secs(60), Instant::now())
        .unwrap();
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        d.tick(Instant::now(), WALL),
        0,
        "old deadline no longer applies"
    );
    tokio::time::sleep_until(new).await;
    assert_eq!(d.tick(Instant::now(), WALL), 1);
}

#[tokio::test(start_paused = true)]
async fn stored_state_restores_attempts_schedule_and_replays() {
    let mut d = group(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..6), |e| e.offset % 2 == 0);
    assert_eq!(d.counters().filtered, 3);
    let batch = deliver(&mut d).remove(0).1;
    assert_eq!(batch.len(), 3);
    assert_eq!(d.ack(2, batch[1].lease), LeaseOutcome::Ok);
    assert_eq!(
        d.nack(
            4,
            batch[2].lease,
            Some(Duration::from_secs(10)),
            "later",
            false,
            Instant::now(),
            WALL
        ),
        LeaseOutcome::Ok
    );
    d.add_replay(3, events(1..2).remove(0));
    let delta = d.take_delta(Instant::now(), WALL, true).unwrap();
    d.durable(true);
    assert_eq!(delta.header.cursor, 6);
    let keys: Vec<u64> = delta.upserts.iter().map(|p| p.key).collect();
    assert_eq!(keys, vec![0, 4, REPLAY_BIT | 3]);
    let state = GroupState {
        header: delta.header,
        entries: delta.upserts,
    };

    // Restart 4 s later: offset 4 still waits 6 s, offset 0 is ready now.
    advance(Duration::from_secs(4)).await;
    let mut r = restored(&state, true, WALL + 4_000_000);
    r.add_consumer(9, 10);
    let got: Vec<(u64, u32)> = deliver(&mut r)
        .remove(0)
        .1
        .iter()
        .map(|h| (h.key, h.attempt))
        .collect();
    assert_eq!(
        got,
        vec![(0, 2), (REPLAY_BIT | 3, 1)],
        "attempts continue; the retry waits"
    );
    assert_eq!(
        r.next_wakeup(),
        Some(Instant::now() + Duration::from_secs(6))
    );
    assert_eq!(r.cursor(), 6);
}

/// A dispatcher restored from `state` with the events of its rows.
fn restored(state: &GroupState, clean: bool, wall: i64) -> Dispatcher {
    let mut r = Dispatcher::restore(&state.header, clean, false);
    r.set_policy(policy(), 0);
    for row in &state.entries {
        let offset = if row.key & REPLAY_BIT != 0 {
            1
        } else {
            row.key
        };
        r.add_restored(
            row,
            events(offset..offset + 1).remove(0),
            Instant::now(),
            wall,
        );
    }
    r
}

/// Regression (issue 8, finding 10): a crash inside the flush interval
/// must never hand an event out again with an attempt number it already
/// had. Deliveries after the last durable flush are not on disk; the
/// restored attempts must still count them.
#[tokio::test(start_paused = true)]
async fn attempts_never_go_backwards_after_a_crash() {
    let mut d = group(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..3), |_| true);
    let state_at = |d: &mut Dispatcher| {
        let delta = d.take_delta(Instant::now(), WALL, false);
        d.durable(true);
        delta
    };
    // Flush 1 happens before any delivery.
    let first = state_at(&mut d).expect("something to write");
    let mut disk = GroupState {
        header: first.header,
        entries: first.upserts,
    };
    // Offset 0 is delivered (attempt 1), nacked, delivered again (2),
    // nacked again and delivered (3); offset 1 is delivered once. Each
    // redelivery needs its attempt on disk first: every flush is applied
    // to `disk`, except that the process dies before the last one.
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for round in 0..3 {
        for (_, batch) in d.dispatch(Instant::now(), LEASE) {
            for h in batch {
                seen.insert(h.key, h.attempt);
                if h.key == 0 && round < 2 {
                    d.nack(
                        0,
                        h.lease,
                        Some(Duration::ZERO),
                        "x",
                        false,
                        Instant::now(),
                        WALL,
                    );
                }
            }
        }
        if round < 2 {
            let delta = state_at(&mut d).expect("the retry waits for its write");
            disk.header = delta.header;
            disk.entries.retain(|e| !delta.deletes.contains(&e.key));
            for up in delta.upserts {
                disk.entries.retain(|e| e.key != up.key);
                disk.entries.push(up);
            }
            disk.entries.sort_by_key(|e| e.key);
        }
    }
    assert_eq!(seen[&0], 3);
    // Crash: restore from `disk` as an unclean stop, and read the log again.
    let mut r = restored(&disk, false, WALL);
    r.add_events(events(0..3), |_| true);
    r.add_consumer(9, 10);
    let again: HashMap<u64, u32> = deliver(&mut r)
        .into_iter()
        .flat_map(|(_, b)| b.into_iter().map(|h| (h.key, h.attempt)))
        .collect();
    for (key, attempt) in &again {
        let before = seen.get(key).copied().unwrap_or(0);
        assert!(
            *attempt > before,
            "offset {key} was delivered as attempt {before} before the crash and again as {attempt}"
        );
    }
    assert_eq!(again.len(), 3, "{again:?}");
}

fn keyed(offsets: std::ops::Range<u64>, key_of: impl Fn(u64) -> String) -> Vec<Arc<StoredEvent>> {
    offsets
        .map(|offset| {
            Arc::new(StoredEvent {
                offset,
                publish_time_us: 1_000 + offset as i64,
                event: Event {
                    id: format!("e{offset}"),
                    event_type: "T".into(),
                    key: key_of(offset),
                    ..Event::default()
                },
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn ordered_group_holds_a_key_behind_a_failing_event() {
    let mut d = group(2);
    d.set_ordered(true);
    d.add_consumer(1, 10);
    d.add_consumer(2, 10);
    // a0 b1 a2 b3 c4 (key letters)
    let key = |o: u64| ["a", "b", "a", "b", "c"][o as usize].to_string();
    d.add_events(keyed(0..5, key), |_| true);
    let first: Vec<u64> = d
        .dispatch(Instant::now(), LEASE)
        .into_iter()
        .flat_map(|(_, b)| b.into_iter().map(|h| h.key))
        .collect();
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![0, 1, 4],
        "one event per key in flight, other keys flow"
    );
    // a0 fails: a2 stays blocked while a0 waits for its retry.
    let lease_a0 = d.entries.get(&0).map(|e| match e.state {
        EntryState::Leased { lease, .. } => lease,
        _ => unreachable!(),
    });
    d.nack(
        0,
        lease_a0.unwrap(),
        None,
        "boom",
        false,
        Instant::now(),
        WALL,
    );
    assert!(deliver(&mut d).is_empty(), "a2 waits behind a0");
    let (count, list) = d.blocked_keys(10);
    assert_eq!(count, 1);
    assert_eq!(
        (
            list[0].key.as_str(),
            list[0].offset,
            list[0].waiting,
            list[0].since_us
        ),
        ("a", 0, 1, WALL)
    );
    // b1 acked: b3 may go.
    let lease_b1 = match d.entries.get(&1).unwrap().state {
        EntryState::Leased { lease, .. } => lease,
        _ => unreachable!(),
    };
    assert_eq!(d.ack(1, lease_b1), LeaseOutcome::Ok);
    let next: Vec<u64> = d
        .dispatch(Instant::now(), LEASE)
        .into_iter()
        .flat_map(|(_, b)| b.into_iter().map(|h| h.key))
        .collect();
    assert_eq!(next, vec![3]);
    // a0 retried and failed again: dead-lettered (max 2), which releases a.
    advance(Duration::from_secs(1)).await;
    d.tick(Instant::now(), WALL);
    let retry = one(&mut d);
    assert_eq!((retry.key, retry.attempt), (0, 2));
    d.nack(0, retry.lease, None, "boom", false, Instant::now(), WALL);
    assert_eq!(d.take_dead().len(), 1);
    let released = one(&mut d);
    assert_eq!(released.key, 2, "a dead-lettered event releases its key");
    assert_eq!(d.blocked_keys(10).0, 0);
}

mod ordered_property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Dispatch,
        Ack(usize),
        Nack(usize),
        Expire,
        Retry,
        Leave(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Dispatch),
            4 => any::<usize>().prop_map(Op::Ack),
            2 => any::<usize>().prop_map(Op::Nack),
            1 => Just(Op::Expire),
            2 => Just(Op::Retry),
            1 => any::<usize>().prop_map(Op::Leave),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn per_key_acks_follow_offsets_and_one_in_flight_per_key(
            keys in proptest::collection::vec(0u8..5, 1..60),
            consumers in proptest::collection::vec(1usize..5, 1..4),
            max_attempts in 0u32..4,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut now = Instant::now();
            let mut d = Dispatcher::new(0);
            d.reserve_all_for_test();
            d.set_policy(RetryPolicy { min_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(5), multiplier: 1.0 }, max_attempts);
            d.set_ordered(true);
            let mut next_consumer = 100;
            for (i, max) in consumers.iter().enumerate() {
                d.add_consumer(i as u64, *max);
            }
            let n = keys.len() as u64;
            let key_of = |o: u64| format!("k{}", keys[o as usize]);
            d.add_events(keyed(0..n, key_of), |_| true);
            // (consumer, key(entry), lease, event key)
            let mut held: Vec<(u64, u64, u64, String)> = Vec::new();
            let mut last_acked: HashMap<String, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Dispatch => {
                        if d.take_delta(now, WALL, false).is_some() {
                            d.durable(true);
                        }
                        for (c, batch) in d.dispatch(now, LEASE) {
                            for h in batch {
                                let k = h.event.event.key.clone();
                                prop_assert!(!held.iter().any(|x| x.3 == k), "two events of {} in flight", k);
                                held.push((c, h.key, h.lease, k));
                            }
                        }
                    }
                    Op::Ack(i) if !held.is_empty() => {
                        let (_, key, lease, k) = held.remove(i % held.len());
                        if d.ack(key, lease) == LeaseOutcome::Ok
                            && let Some(prev) = last_acked.insert(k.clone(), key)
                        {
                            prop_assert!(key > prev, "{} acked {} after {}", k, key, prev);
                        }
                    }
                    Op::Nack(i) if !held.is_empty() => {
                        let (_, key, lease, _) = held.remove(i % held.len());
                        d.nack(key, lease, None, "", false, now, WALL);
                    }
                    Op::Expire => {
                        now += LEASE;
                        d.tick(now, WALL);
                        held.clear();
                    }
                    Op::Retry => {
                        now += Duration::from_millis(5);
                        d.tick(now, WALL);
                    }
                    Op::Leave(i) => {
                        let ids: Vec<u64> = d.consumers.keys().copied().collect();
                        if let Some(&c) = ids.get(i % ids.len().max(1)) {
                            d.remove_consumer(c, &Default::default(), now, WALL);
                            held.retain(|x| x.0 != c);
                            d.add_consumer(next_consumer, 3);
                            next_consumer += 1;
                        }
                    }
                    _ => {}
                }
                let _ = d.take_dead();
                // Invariant on the machine's own view too.
                let mut in_flight_keys: Vec<&str> = d
                    .entries
                    .values()
                    .filter(|e| matches!(e.state, EntryState::Leased { .. }))
                    .map(|e| e.event.event.key.as_str())
                    .collect();
                let total = in_flight_keys.len();
                in_flight_keys.sort();
                in_flight_keys.dedup();
                prop_assert_eq!(total, in_flight_keys.len(), "a key is leased twice");
            }
        }
    }
}
