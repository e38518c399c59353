//! The record sizes of a stream chunk of the Redis backend (see
//! `redis/keys.rs`): comma-separated decimal byte counts of the records
//! stored one after another. Outside the `redis` feature so that the fuzz
//! targets reach it.

/// Where each record of a chunk starts, then the end: from its sizes
/// (comma-separated decimals) and the records' total length; `None` when
/// they do not add up.
pub fn record_bounds(sizes: &[u8], total: usize) -> Option<Vec<usize>> {
    let mut bounds = vec![0];
    let mut at = 0usize;
    for size in sizes.split(|b| *b == b',') {
        if size.is_empty() || size.len() > 20 || !size.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let size: usize = std::str::from_utf8(size).ok()?.parse().ok()?;
        at = at.checked_add(size).filter(|a| *a <= total)?;
        bounds.push(at);
    }
    (at == total).then_some(bounds)
}

#[cfg(test)]
mod tests {
    use super::record_bounds;

    #[test]
    fn sizes_give_bounds_only_when_they_add_up() {
        assert_eq!(record_bounds(b"3,0,2", 5), Some(vec![0, 3, 3, 5]));
        assert_eq!(record_bounds(b"7", 7), Some(vec![0, 7]));
        for (sizes, total) in [
            (&b"3,2"[..], 6),
            (b"3,2", 4),
            (b"", 0),
            (b"3,,2", 5),
            (b"3,+2", 5),
            (b"-1,6", 5),
            (b"99999999999999999999999,1", 1),
            (b"18446744073709551615,1", 0),
        ] {
            assert_eq!(record_bounds(sizes, total), None, "{sizes:?} {total}");
        }
    }
}
