//! Ordering of the short lists the node ranks (holder candidates, the top R
//! of a shard): an insertion sort, stable, without the code size of the
//! standard library's pattern-defeating sorts (about 7 KB of flash on a
//! Cortex-M for the three call sites), and fast for the few dozen entries
//! these lists hold.

/// Sorts `items` by `key`, largest first; equal keys keep their order.
pub(crate) fn sort_by_key_descending<T, K: Ord>(items: &mut [T], mut key: impl FnMut(&T) -> K) {
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 {
            let (Some(before), Some(current)) = (items.get(j - 1), items.get(j)) else { break };
            if key(before) >= key(current) {
                break;
            }
            items.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    #[test]
    fn sorts_descending_and_is_stable() {
        let mut rng = Rng::new(3);
        for len in 0..40 {
            let mut items: heapless::Vec<(u8, usize), 64> = heapless::Vec::new();
            for i in 0..len {
                let _ = items.push(((rng.next_u64() % 5) as u8, i));
            }
            sort_by_key_descending(&mut items, |(k, _)| *k);
            for pair in items.windows(2) {
                assert!(pair[0].0 > pair[1].0 || (pair[0].0 == pair[1].0 && pair[0].1 < pair[1].1));
            }
        }
    }
}
