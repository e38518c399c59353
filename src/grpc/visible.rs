//! List calls that show only what the caller may see, with page tokens
//! that stay correct.
//!
//! gRPC layer. The broker lists everything; [`visible_page`] fetches its
//! pages and drops what the caller may not see until it has a full page
//! and knows whether one more visible item follows. So a page is never
//! empty while more visible items exist, the last page has no token, and
//! every token is the key of an item the caller was shown (a token never
//! names a topic the caller may not see).

/// Most items asked of the broker at once while filtering.
const FETCH: usize = 256;

/// A page of at most `limit` items for which `visible` holds, after the
/// key `after`; and the key to continue after, if more visible items
/// follow. `fetch(after, n)` returns up to `n` items after a key and the
/// key of its last one when more may follow.
///
/// # Errors
/// Whatever `fetch` returns.
pub async fn visible_page<T, K, E, F>(
    mut after: Option<K>,
    limit: usize,
    mut fetch: impl FnMut(Option<K>, usize) -> F,
    visible: impl Fn(&T) -> bool,
    key: impl Fn(&T) -> K,
) -> Result<(Vec<T>, Option<K>), E>
where
    F: Future<Output = Result<(Vec<T>, Option<K>), E>>,
{
    let mut page = Vec::with_capacity(limit.min(FETCH));
    loop {
        let (items, next) = fetch(after.take(), FETCH.max(limit + 1)).await?;
        for item in items {
            if !visible(&item) {
                continue;
            }
            if page.len() == limit {
                // One more visible item exists: the page is full and has a
                // token, the key of its last (visible) item.
                let token = page.last().map(&key);
                return Ok((page, token));
            }
            page.push(item);
        }
        match next {
            Some(k) => after = Some(k),
            None => return Ok((page, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists `0..n` like the broker: after a key, `limit` items, and the
    /// last key when more follow.
    async fn numbers(
        n: u32,
        after: Option<u32>,
        limit: usize,
    ) -> Result<(Vec<u32>, Option<u32>), ()> {
        let start = after.map_or(0, |a| a + 1);
        let items: Vec<u32> = (start..n).take(limit).collect();
        let next = (items.last().is_some_and(|l| l + 1 < n)).then(|| *items.last().unwrap_or(&0));
        Ok((items, next))
    }

    async fn all_pages(
        n: u32,
        limit: usize,
        visible: impl Fn(&u32) -> bool + Copy,
    ) -> Vec<Vec<u32>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = visible_page(after, limit, |a, l| numbers(n, a, l), visible, |x| *x)
                .await
                .unwrap();
            pages.push(page);
            match next {
                Some(k) => {
                    assert!(visible(&k), "a token names only a visible item");
                    after = Some(k);
                }
                None => return pages,
            }
        }
    }

    #[tokio::test]
    async fn sparse_visibility_gives_full_pages_and_no_trailing_empty_page() {
        // One visible item in 1000, far apart: more than one fetch each.
        let pages = all_pages(5000, 2, |x| x % 1000 == 999).await;
        assert_eq!(pages, vec![vec![999, 1999], vec![2999, 3999], vec![4999]]);
        // Exactly a full last page: no token after it.
        let pages = all_pages(4000, 2, |x| x % 1000 == 999).await;
        assert_eq!(pages, vec![vec![999, 1999], vec![2999, 3999]]);
        // Nothing visible: one empty page, no token.
        assert_eq!(
            all_pages(3000, 10, |_| false).await,
            vec![Vec::<u32>::new()]
        );
        // Everything visible, page by page.
        let pages = all_pages(7, 3, |_| true).await;
        assert_eq!(pages, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }
}
