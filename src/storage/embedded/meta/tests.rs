use std::sync::Arc;

use redb::{Database, TableDefinition};

use super::*;
use crate::event::{Event, StoredEvent};

fn header(generation: u64, cursor: u64) -> StateHeader {
    StateHeader {
        generation,
        floor: cursor,
        cursor,
        reserved: cursor,
    }
}

fn dead_letter(id: u64, event_type: &str) -> DeadLetter {
    DeadLetter {
        id,
        event: Arc::new(StoredEvent {
            offset: id,
            publish_time_us: 1,
            event: Event {
                id: format!("e{id}"),
                event_type: event_type.into(),
                data: bytes::Bytes::from(vec![7; 100]),
                ..Event::default()
            },
        }),
        attempts: 3,
        last_reason: "boom".into(),
        first_failure_us: 1,
        last_failure_us: 2,
        dead_letter_us: 10 + id as i64,
    }
}

fn write(topic: &str, group: &str, generation: u64, delta: Option<StateDelta>) -> StateWrite {
    StateWrite {
        topic: topic.into(),
        group: group.into(),
        generation,
        delta,
        dead_letters: DeadLetterOps::default(),
    }
}

#[test]
fn records_survive_reopen_and_topic_delete_cascades() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    {
        let store = MetaStore::open(&path).unwrap();
        store.put_topic("orders", b"t1").unwrap();
        store.put_topic("users", b"t2").unwrap();
        store
            .create_group("orders", "billing", b"g1", &header(1, 0))
            .unwrap();
        store
            .create_group("orders", "audit", b"g2", &header(2, 0))
            .unwrap();
        store
            .create_group("users", "audit", b"g3", &header(3, 0))
            .unwrap();
        let mut w = write(
            "orders",
            "billing",
            1,
            Some(StateDelta {
                header: header(1, 5),
                deletes: vec![],
                upserts: vec![StoredEntry {
                    key: 2,
                    attempts: 1,
                    ..StoredEntry::default()
                }],
            }),
        );
        w.dead_letters.put = vec![dead_letter(1, "A"), dead_letter(2, "B")];
        let mut ghost = w.clone();
        ghost.group = "ghost".into();
        store.put_group_states(&[w, ghost]).unwrap();
    }
    let store = MetaStore::open(&path).unwrap();
    assert_eq!(store.topics().unwrap().len(), 2);
    let groups = store.groups().unwrap();
    assert_eq!(groups.len(), 3, "the ghost's write must not create a group");
    let billing = groups.iter().find(|g| g.group == "billing").unwrap();
    assert_eq!(billing.state.header.cursor, 5);
    assert_eq!(billing.state.entries.len(), 1);
    assert_eq!(
        store
            .dead_letter_summaries("orders", "billing")
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .dead_letter_summaries("orders", "ghost")
            .unwrap()
            .is_empty()
    );
    let secret = store.secret([7; 16]).unwrap();
    assert_eq!(store.secret([8; 16]).unwrap(), secret, "kept once created");

    store.delete_topic("orders").unwrap();
    assert!(
        store
            .dead_letter_summaries("orders", "billing")
            .unwrap()
            .is_empty()
    );
    let groups = store.groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].topic.as_str(), groups[0].group.as_str()),
        ("users", "audit")
    );
}

/// Regression (issue 8, finding 2): the existence checks happen in the
/// writing transaction, so a racing delete cannot be undone.
#[test]
fn writes_never_resurrect_deleted_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
    store.put_topic("orders", b"t").unwrap();
    store
        .create_group("orders", "billing", b"g", &header(1, 0))
        .unwrap();
    store.delete_group("orders", "billing").unwrap();
    let err = store.put_group("orders", "billing", b"g2").unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    store.delete_topic("orders").unwrap();
    let err = store
        .create_group("orders", "audit", b"g", &header(2, 0))
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    assert!(store.groups().unwrap().is_empty());
}

/// A flush of a deleted group that was created anew under the same name
/// (another generation) must not overwrite the new group's progress.
#[test]
fn writes_of_another_generation_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
    store.put_topic("orders", b"t").unwrap();
    store
        .create_group("orders", "billing", b"g", &header(1, 0))
        .unwrap();
    store.delete_group("orders", "billing").unwrap();
    store
        .create_group("orders", "billing", b"g", &header(2, 100))
        .unwrap();
    let stale = write(
        "orders",
        "billing",
        1,
        Some(StateDelta {
            header: header(1, 3),
            ..StateDelta::default()
        }),
    );
    store.put_group_states(&[stale]).unwrap();
    let g = &store.groups().unwrap()[0];
    assert_eq!((g.state.header.generation, g.state.header.cursor), (2, 100));
}

#[test]
fn deltas_upsert_and_delete_rows_and_pages_scan_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
    store.put_topic("t", b"t").unwrap();
    store.create_group("t", "g", b"g", &header(9, 0)).unwrap();
    let e = |key| StoredEntry {
        key,
        attempts: 1,
        ..StoredEntry::default()
    };
    let mut w = write(
        "t",
        "g",
        9,
        Some(StateDelta {
            header: header(9, 10),
            deletes: vec![],
            upserts: vec![e(1), e(2), e(3)],
        }),
    );
    w.dead_letters.put = (1..=10)
        .map(|i| dead_letter(i, if i % 2 == 0 { "Even" } else { "Odd" }))
        .collect();
    store.put_group_states(&[w]).unwrap();
    let w = write(
        "t",
        "g",
        9,
        Some(StateDelta {
            header: header(9, 12),
            deletes: vec![2],
            upserts: vec![StoredEntry {
                attempts: 4,
                ..e(3)
            }],
        }),
    );
    store.put_group_states(&[w]).unwrap();
    let g = &store.groups().unwrap()[0];
    let rows: Vec<(u64, u32)> = g
        .state
        .entries
        .iter()
        .map(|e| (e.key, e.attempts))
        .collect();
    assert_eq!(rows, vec![(1, 1), (3, 4)]);

    let page = |after, oldest_first, max_entries| PageRequest {
        after,
        oldest_first,
        max_entries,
        max_bytes: usize::MAX,
    };
    let even = |s: &DeadLetterSummary| s.event_type == "Even";
    let (p, more) = store
        .dead_letter_page("t", "g", page(None, false, 2), &even)
        .unwrap();
    assert_eq!(p.iter().map(|d| d.id).collect::<Vec<_>>(), vec![10, 8]);
    assert!(more);
    let (p, more) = store
        .dead_letter_page("t", "g", page(Some(8), false, 10), &even)
        .unwrap();
    assert_eq!(p.iter().map(|d| d.id).collect::<Vec<_>>(), vec![6, 4, 2]);
    assert!(!more);
    let (p, _) = store
        .dead_letter_page("t", "g", page(Some(4), true, 2), &|_| true)
        .unwrap();
    assert_eq!(p.iter().map(|d| d.id).collect::<Vec<_>>(), vec![5, 6]);
    // A byte budget cuts the page (100-byte payloads: two fit in 150).
    let mut small = page(None, true, 10);
    small.max_bytes = 150;
    let (p, more) = store.dead_letter_page("t", "g", small, &|_| true).unwrap();
    assert_eq!(p.len(), 2);
    assert!(more);
    assert_eq!(store.dead_letter("t", "g", 7).unwrap().unwrap().id, 7);
    assert!(store.dead_letter("t", "g", 70).unwrap().is_none());
}

/// Regression (issue 8, finding 3): after a failed commit the store says
/// so (and refuses calls) instead of answering success, and a reopen
/// brings it back with what was committed before.
#[test]
fn a_failed_commit_marks_the_store_unhealthy_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
    store.put_topic("kept", b"1").unwrap();
    store.inject_write_failures(true);
    assert!(store.put_topic("lost", b"2").is_err());
    assert!(!store.healthy());
    let err = store.topics().unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    // Opening writes too (redb marks the file in use): with the disk still
    // full the store stays unhealthy.
    if store.reopen().is_ok() {
        assert!(
            store.put_topic("lost", b"2").is_err(),
            "the disk is still full"
        );
    }
    store.inject_write_failures(false);
    store.reopen().unwrap();
    assert!(store.healthy());
    store.put_topic("later", b"3").unwrap();
    let names: Vec<String> = store.topics().unwrap().into_iter().map(|t| t.0).collect();
    assert_eq!(names, vec!["kept", "later"]);
}

#[test]
fn clean_mark_is_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    {
        let store = MetaStore::open(&path).unwrap();
        assert!(store.take_clean_mark().unwrap(), "a new database is clean");
        assert!(!store.take_clean_mark().unwrap(), "this run has not ended");
        store.mark_clean().unwrap();
    }
    let store = MetaStore::open(&path).unwrap();
    assert!(store.take_clean_mark().unwrap());
}

const LEGACY_TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
const LEGACY_GROUPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("groups");
const LEGACY_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("group_state");
const LEGACY_DLS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("dead_letters");

/// A database of release 0.1 (JSON snapshots, replay flags in dead-letter
/// records) opens, converted to the current format.
#[test]
fn release_0_1_databases_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LEGACY_TOPICS)
            .unwrap()
            .insert("t", b"{}".as_slice())
            .unwrap();
        txn.open_table(LEGACY_GROUPS)
            .unwrap()
            .insert(("t", "g"), b"{}".as_slice())
            .unwrap();
        txn.open_table(LEGACY_STATE)
            .unwrap()
            .insert(
                ("t", "g"),
                br#"{"floor":1,"cursor":6,"pending":[{"k":1,"a":2,"r":"x"},{"k":4,"a":0}]}"#
                    .as_slice(),
            )
            .unwrap();
        let dl = dead_letter(3, "T");
        let header = br#"{"attempts":3,"last_reason":"boom","first_failure_us":1,"last_failure_us":2,"dead_letter_us":13,"replaying":true}"#;
        let mut bytes = (header.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&crate::storage::embedded::log::encode_event(&dl.event));
        txn.open_table(LEGACY_DLS)
            .unwrap()
            .insert(("t", "g", 3), bytes.as_slice())
            .unwrap();
        drop(txn.commit());
    }
    let store = MetaStore::open(&path).unwrap();
    let g = &store.groups().unwrap()[0];
    assert_ne!(g.state.header.generation, 0);
    assert_eq!(g.state.header.cursor, 6);
    let keys: Vec<(u64, u32)> = g
        .state
        .entries
        .iter()
        .map(|e| (e.key, e.attempts))
        .collect();
    assert_eq!(keys, vec![(1, 2), (4, 0), (REPLAY_BIT | 3, 0)]);
    assert_eq!(
        store.dead_letter("t", "g", 3).unwrap().unwrap(),
        dead_letter(3, "T")
    );
    drop(store);
    // Opening again leaves it as it is.
    let store = MetaStore::open(&path).unwrap();
    assert_eq!(store.groups().unwrap()[0].state, g.state);
}
