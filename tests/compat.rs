//! Data written by release 0.1 opens unchanged (issue 9, part 1): a data
//! directory made by the 0.1 binary (`tests/fixtures/data-0.1`: topic
//! `orders` with six events; group `billing` with two acked, two dead
//! letters and two pending, one of them after a failed attempt; group `audit`
//! with everything pending) is served by today's code with the same state,
//! and is migrated on the way.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use herald::proto;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_0_1_data_directory_opens_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-0.1"),
        dir.path(),
    );
    let data = dir.path().to_path_buf();
    let server = TestServer::start_with(move |c| c.data_dir = data).await;
    assert_eq!(server.end_offset("orders").await, 6);

    // billing: two dead letters with their reasons and attempts.
    let dls = server
        .dead_letters()
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "orders".into(),
            group: "billing".into(),
            oldest_first: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<(String, u32, String)> = dls
        .dead_letters
        .iter()
        .map(|d| {
            (
                d.event.as_ref().unwrap().id.clone(),
                d.attempts,
                d.last_reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ev-3".to_string(), 2, "bad total".to_string()),
            ("ev-4".to_string(), 3, "db down".to_string()),
        ]
    );
    // billing: the two pending events, with the attempts they had.
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    let mut pending: Vec<(String, u32)> = got
        .iter()
        .map(|d| (d.event.as_ref().unwrap().id.clone(), d.delivery_attempt))
        .collect();
    pending.sort();
    assert_eq!(
        pending,
        vec![("ev-5".to_string(), 2), ("ev-6".to_string(), 1)]
    );
    // audit: everything, first attempts.
    let mut audit = subscribe(&mut sub, "orders", "audit", 10).await;
    let mut all = Vec::new();
    while all.len() < 6 {
        all.extend(next_batch(&mut audit, Duration::from_secs(5)).await);
    }
    assert!(all.iter().all(|d| d.delivery_attempt == 1));
    assert_eq!(
        ids(&all),
        (1..=6).map(|i| format!("ev-{i}")).collect::<Vec<_>>()
    );
    // The settings came along.
    let group = server
        .admin()
        .get_group(proto::GetGroupRequest {
            topic: "orders".into(),
            group: "billing".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(group.max_delivery_attempts, Some(3));
    assert_eq!(group.retry_policy.unwrap().min_backoff.unwrap().seconds, 30);
}
