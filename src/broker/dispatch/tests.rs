//! Unit tests of the group state machine.

use super::*;
use crate::event::Event;

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

fn policy() -> RetryPolicy {
    RetryPolicy {
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        multiplier: 2.0,
    }
}

#[test]
fn consumers_share_work_without_overlap_and_respect_max_in_flight() {
    let now = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 3);
    d.add_consumer(2, 2);
    assert_eq!(d.wanted(), 5);
    d.add_events(events(0..10), |_| true);
    let out = d.dispatch(now, LEASE);
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
    assert!(d.dispatch(now, LEASE).is_empty(), "no credit left");
    assert_eq!(d.in_flight(), 5);
}

#[test]
fn ack_advances_floor_and_repeated_ack_is_already_done() {
    let now = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..3), |_| true);
    let batch = d.dispatch(now, LEASE).remove(0).1;
    assert_eq!(d.ack(1, batch[1].lease), LeaseOutcome::Ok);
    assert_eq!(d.floor(), 0, "offset 0 still pending");
    assert_eq!(d.ack(0, batch[0].lease), LeaseOutcome::Ok);
    assert_eq!(d.floor(), 2);
    assert_eq!(d.ack(0, batch[0].lease), LeaseOutcome::AlreadyDone);
    assert_eq!(d.ack(7, 1), LeaseOutcome::Unknown, "never read");
    assert_eq!(d.ack(2, 999), LeaseOutcome::Unknown, "lease never issued");
    assert_eq!(d.snapshot().pending, vec![(2, 1)]);
}

#[test]
fn expired_lease_comes_back_with_next_attempt_after_backoff() {
    let t0 = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..1), |_| true);
    let first = d.dispatch(t0, LEASE).remove(0).1.remove(0);
    assert_eq!(first.attempt, 1);
    assert_eq!(d.next_wakeup(), Some(t0 + LEASE));
    assert_eq!(d.tick(t0 + LEASE - Duration::from_millis(1), &policy()), 0);
    assert_eq!(d.tick(t0 + LEASE, &policy()), 1);
    assert!(
        d.dispatch(t0 + LEASE, LEASE).is_empty(),
        "waits for backoff"
    );
    let due = t0 + LEASE + Duration::from_secs(1);
    assert_eq!(d.next_wakeup(), Some(due));
    d.tick(due, &policy());
    let second = d.dispatch(due, LEASE).remove(0).1.remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        d.nack(0, first.lease, None, &policy(), due),
        LeaseOutcome::Stale
    );
    assert_eq!(
        d.extend(0, first.lease, LEASE, due),
        Err(LeaseOutcome::Stale)
    );
    // A late ack of the first lease is honoured: the work was done.
    assert_eq!(d.ack(0, first.lease), LeaseOutcome::Ok);
    assert_eq!(d.ack(0, second.lease), LeaseOutcome::AlreadyDone);
    assert_eq!(d.in_flight(), 0);
    assert_eq!(d.credit(), 10);
}

#[test]
fn nack_with_delay_and_backoff_grows() {
    let t0 = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..1), |_| true);
    let h = d.dispatch(t0, LEASE).remove(0).1.remove(0);
    assert_eq!(
        d.nack(0, h.lease, Some(Duration::ZERO), &policy(), t0),
        LeaseOutcome::Ok
    );
    let h = d.dispatch(t0, LEASE).remove(0).1.remove(0);
    assert_eq!(h.attempt, 2);
    assert_eq!(d.nack(0, h.lease, None, &policy(), t0), LeaseOutcome::Ok);
    assert_eq!(
        d.next_wakeup(),
        Some(t0 + Duration::from_secs(2)),
        "attempt 2 failed: 1s*2"
    );
    assert_eq!(d.counters().nacked, 2);
    assert_eq!(d.counters().redelivered, 1);
}

#[test]
fn removed_consumer_releases_leases_at_once() {
    let now = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 5);
    d.add_events(events(0..5), |_| true);
    let batch = d.dispatch(now, LEASE).remove(0).1;
    assert_eq!(batch.len(), 5);
    d.add_consumer(2, 5);
    assert_eq!(d.remove_consumer(1), 5);
    let out = d.dispatch(now, LEASE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 2);
    assert!(out[0].1.iter().all(|h| h.attempt == 2));
    assert_eq!(
        d.ack(0, batch[0].lease),
        LeaseOutcome::Ok,
        "late ack from the gone consumer"
    );
}

#[test]
fn extend_moves_the_deadline() {
    let t0 = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 1);
    d.add_events(events(0..1), |_| true);
    let h = d.dispatch(t0, LEASE).remove(0).1.remove(0);
    let later = t0 + Duration::from_secs(20);
    let new = d
        .extend(0, h.lease, Duration::from_secs(60), later)
        .unwrap();
    assert_eq!(new, later + Duration::from_secs(60));
    assert_eq!(
        d.tick(t0 + LEASE, &policy()),
        0,
        "old deadline no longer applies"
    );
    assert_eq!(d.tick(new, &policy()), 1);
}

#[test]
fn filtered_events_are_done_and_snapshot_restores_pending() {
    let now = Instant::now();
    let mut d = Dispatcher::new(0);
    d.add_consumer(1, 10);
    d.add_events(events(0..6), |e| e.offset % 2 == 0);
    assert_eq!(d.counters().filtered, 3);
    let batch = d.dispatch(now, LEASE).remove(0).1;
    assert_eq!(batch.len(), 3);
    assert_eq!(d.ack(2, batch[1].lease), LeaseOutcome::Ok);
    let snap = d.take_snapshot().unwrap();
    assert_eq!(
        snap,
        Snapshot {
            floor: 0,
            cursor: 6,
            pending: vec![(0, 1), (4, 1)]
        }
    );
    assert!(d.take_snapshot().is_none(), "clean after taking");

    let restored_events = events(0..6)
        .into_iter()
        .filter(|e| e.offset == 0 || e.offset == 4)
        .collect();
    let mut r = Dispatcher::restore(&snap, restored_events);
    r.add_consumer(9, 10);
    let again = r.dispatch(now, LEASE).remove(0).1;
    let got: Vec<(u64, u32)> = again.iter().map(|h| (h.event.offset, h.attempt)).collect();
    assert_eq!(
        got,
        vec![(0, 2), (4, 2)],
        "only unacked events, attempts continue"
    );
    assert_eq!(r.cursor(), 6);
}
