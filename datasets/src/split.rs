//! Stratified, seeded index selection: train/validation splits and `limit N` subsets. Each class
//! keeps its share (largest-remainder rounding), the choice within a class is a seeded shuffle,
//! and the returned indices are sorted. Unlabeled items form a single group.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

/// Groups indices by label (in label order), each group shuffled with `seed`.
fn shuffled_groups(labels: &[Option<u32>], seed: u64) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        groups.entry(*l).or_default().push(i);
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    groups
        .into_values()
        .map(|mut g| {
            g.shuffle(&mut rng);
            g
        })
        .collect()
}

/// How many of each group to take so the total is exactly `n` and each share is proportional.
fn apportion(sizes: &[usize], n: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let n = n.min(total);
    if total == 0 {
        return vec![0; sizes.len()];
    }
    let exact: Vec<f64> = sizes.iter().map(|&s| s as f64 * n as f64 / total as f64).collect();
    let mut take: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = n - take.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // Largest remainder first; ties go to the earlier group (deterministic).
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for g in order {
        if left == 0 {
            break;
        }
        if take[g] < sizes[g] {
            take[g] += 1;
            left -= 1;
        }
    }
    take
}

/// A stratified subset of `n` indices (all of them if `n >= labels.len()`), sorted.
pub fn stratified_subset(labels: &[Option<u32>], n: usize, seed: u64) -> Vec<usize> {
    let groups = shuffled_groups(labels, seed);
    let take = apportion(&groups.iter().map(Vec::len).collect::<Vec<_>>(), n);
    let mut out: Vec<usize> = groups.iter().zip(take).flat_map(|(g, t)| g[..t].iter().copied()).collect();
    out.sort_unstable();
    out
}

/// Splits indices into `(train, validation)` with `val_fraction` of each class in validation.
pub fn stratified_split(labels: &[Option<u32>], val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_val = (labels.len() as f64 * val_fraction.clamp(0.0, 1.0)).round() as usize;
    let val = stratified_subset(labels, n_val, seed);
    let mut is_val = vec![false; labels.len()];
    val.iter().for_each(|&i| is_val[i] = true);
    let train = (0..labels.len()).filter(|&i| !is_val[i]).collect();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(counts: &[usize]) -> Vec<Option<u32>> {
        // Interleaved so that indices of a class are not contiguous.
        let mut v = Vec::new();
        let max = *counts.iter().max().unwrap();
        for i in 0..max {
            for (c, &n) in counts.iter().enumerate() {
                if i < n {
                    v.push(Some(c as u32));
                }
            }
        }
        v
    }

    fn per_class(l: &[Option<u32>], idx: &[usize], k: usize) -> Vec<usize> {
        let mut c = vec![0; k];
        idx.iter().for_each(|&i| c[l[i].unwrap() as usize] += 1);
        c
    }

    #[test]
    fn subset_is_exact_proportional_sorted_and_seeded() {
        let l = labels(&[500, 300, 200]);
        let s = stratified_subset(&l, 100, 7);
        assert_eq!(s.len(), 100);
        assert_eq!(per_class(&l, &s, 3), vec![50, 30, 20]);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s, stratified_subset(&l, 100, 7));
        assert_ne!(s, stratified_subset(&l, 100, 8));
        // Remainders: 10 of (5, 3, 2)·… → 10 * (0.5, 0.3, 0.2) = (5, 3, 2).
        assert_eq!(per_class(&l, &stratified_subset(&l, 10, 1), 3), vec![5, 3, 2]);
        // 7 of (1/3, 1/3, 1/3) groups → 3, 2, 2 (ties to the earliest).
        let even = labels(&[30, 30, 30]);
        assert_eq!(per_class(&even, &stratified_subset(&even, 7, 1), 3), vec![3, 2, 2]);
        assert_eq!(stratified_subset(&l, 5000, 1).len(), 1000);
    }

    #[test]
    fn split_is_a_stratified_partition() {
        let l = labels(&[100, 60, 40]);
        let (train, val) = stratified_split(&l, 0.1, 3);
        assert_eq!(val.len(), 20);
        assert_eq!(per_class(&l, &val, 3), vec![10, 6, 4]);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn unlabeled_items_form_one_group() {
        let l = vec![None; 50];
        let s = stratified_subset(&l, 10, 0);
        assert_eq!(s.len(), 10);
    }
}
