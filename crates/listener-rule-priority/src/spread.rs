//! The spread strategy: which free priority a request tries next, so that a crowd of concurrent
//! Creates lands on distinct numbers.

use std::collections::BTreeSet;

use crate::Owner;

/// The order in which free priorities are tried: from one above the highest taken priority in
/// `min..=max` (or `min`) up to `max`, then the gaps from `min` upwards; taken ones skipped.
pub fn candidates(min: u32, max: u32, taken: &BTreeSet<u32>) -> impl Iterator<Item = u32> + '_ {
    let start = taken
        .range(min..=max)
        .next_back()
        .map_or(min, |highest| highest + 1);
    (start..=max)
        .chain(min..start.min(max.saturating_add(1)))
        .filter(move |p| !taken.contains(p))
}

/// Which of the `remaining` candidates (in [`candidates`] order) to try next, after `lost`
/// claims went to concurrent requests: the first one while uncontended, so results are
/// predictable; after the first loss one among the next [`SPREAD_WINDOW`] (64, then 128, then
/// 256), picked by `seed` (see [`spread_seed`]). A loss means a crowd, of unknown size, raced for
/// the same number; a window that starts at the crowd's likely size lets most of it land on
/// distinct numbers in the next round (64 requests: about 95 lost claims in all instead of about
/// 330 with windows of 2, 4, 8, ...), at the price of gaps the fallback path fills later.
pub fn spread(lost: usize, remaining: usize, seed: u64) -> usize {
    let window = match lost {
        0 => 1,
        n => (SPREAD_WINDOW << (n - 1).min(2)).min(remaining),
    };
    if window <= 1 {
        0
    } else {
        (seed % window as u64) as usize
    }
}

/// The window [`spread`] picks from after the first loss (it doubles twice after that).
pub const SPREAD_WINDOW: usize = 64;

/// A stable per-resource, per-round seed for [`spread`]: FNV-1a of the owner and the number of
/// losses, so different resources land on different numbers and a resource that lost again tries
/// elsewhere. (Duplicates of one resource pick the same numbers; the reservation settles them.)
pub fn spread_seed(owner: &Owner, lost: usize) -> u64 {
    let hash = cfn_custom_resource::fnv1a_64(owner.to_string().bytes().chain(lost.to_le_bytes()));
    // FNV's low bits are weak for short inputs that differ at the end: fold the high half in.
    hash ^ (hash >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        let first = |min, max, taken: &[u32]| candidates(min, max, &set(taken)).take(4).collect::<Vec<_>>();
        assert_eq!(first(1, 50_000, &[]), [1, 2, 3, 4]);
        assert_eq!(first(1, 50_000, &[1, 2, 5]), [6, 7, 8, 9]);
        assert_eq!(first(1, 50_000, &[1, 2, 5, 50_000]), [3, 4, 6, 7]);
        assert_eq!(first(100, 200, &[1, 2, 5]), [100, 101, 102, 103]);
        assert_eq!(first(10, 12, &[10, 11, 12]), Vec::<u32>::new());
        assert_eq!(first(10, 12, &[11, 60_000]), [12, 10]);
        assert_eq!(candidates(1, 50_000, &set(&[])).count(), 50_000);
    }

    #[test]
    fn spreading_starts_only_after_a_loss() {
        for seed in [0, 1, 7, u64::MAX] {
            assert_eq!(
                spread(0, 50_000, seed),
                0,
                "uncontended: always the first candidate"
            );
            assert!(spread(1, 50_000, seed) < 64);
            assert!(spread(2, 50_000, seed) < 128);
            assert!(spread(30, 50_000, seed) < 256);
            assert!(spread(30, 3, seed) < 3, "never past the candidates left");
            assert_eq!(spread(5, 1, seed), 0);
        }
    }

    #[test]
    fn a_crowd_spreads_over_the_window() {
        // 64 resources that all lost the first candidate: their next picks should look like 64
        // uniform draws from 64 (about 40 distinct), and a second loss moves each elsewhere.
        let owners: Vec<Owner> = (0..64)
            .map(|i| {
                Owner::new(
                    format!("arn:aws:cloudformation:us-east-1:1:stack/s-{i}/id"),
                    "Rule",
                )
            })
            .collect();
        let picks: BTreeSet<usize> = owners
            .iter()
            .map(|o| spread(1, 50_000, spread_seed(o, 1)))
            .collect();
        assert!(picks.len() >= 32, "{} distinct of 64", picks.len());
        let moved = owners
            .iter()
            .filter(|o| spread(1, 50_000, spread_seed(o, 1)) != spread(2, 50_000, spread_seed(o, 2)))
            .count();
        assert!(moved >= 60, "{moved}");
    }
}
