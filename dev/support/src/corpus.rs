//! Synthetic embeddings: unit vectors in clusters, reproducible from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The column's dimensions in the shipped schema.
pub const DIMS: usize = 1536;

/// A unit vector with a random direction.
pub fn random_unit(rng: &mut impl Rng, dims: usize) -> Vec<f32> {
    normalize((0..dims).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
}

/// `v` scaled to unit length (cosine distance ignores length; pgvector's tests expect it).
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `n` unit vectors around `clusters` random centres; `spread` is the noise scale.
pub fn clustered(n: usize, clusters: usize, dims: usize, spread: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| random_unit(&mut rng, dims)).collect();
    (0..n)
        .map(|i| near(&centres[i % clusters], spread, &mut rng))
        .collect()
}

/// A unit vector near `vector`: each dimension moved by uniform noise in
/// `[-spread, spread)`, then scaled back to unit length.
pub fn near(vector: &[f32], spread: f32, rng: &mut impl Rng) -> Vec<f32> {
    normalize(
        vector
            .iter()
            .map(|c| c + spread * rng.gen_range(-1.0f32..1.0))
            .collect(),
    )
}

/// Cosine distance, as pgvector's `<=>` computes it.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    1.0 - dot / (na.sqrt() * nb.sqrt())
}

/// Exact search: the indices of the `k` vectors nearest to `query` by cosine distance
/// (`<=>`) among those `keep` accepts, nearest first. The truth recall is measured
/// against.
pub fn exact_nearest(
    query: &[f32],
    vectors: &[Vec<f32>],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (cosine_distance(query, v), i))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    scored.truncate(k);
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_reproducible_and_of_unit_vectors() {
        let (a, b) = (clustered(20, 3, 16, 0.1, 7), clustered(20, 3, 16, 0.1, 7));
        assert_eq!(a, b);
        for v in &a {
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
    }

    #[test]
    fn exact_search_ranks_by_cosine_distance_among_the_kept() {
        let vectors = clustered(200, 4, 16, 0.3, 3);
        let nearest = exact_nearest(&vectors[7], &vectors, 5, |_| true);
        assert_eq!(nearest.len(), 5);
        assert_eq!(nearest[0], 7, "a vector is its own nearest");
        let distances: Vec<f64> = nearest
            .iter()
            .map(|&i| cosine_distance(&vectors[7], &vectors[i]))
            .collect();
        assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
        let even = exact_nearest(&vectors[7], &vectors, 500, |i| i % 2 == 0);
        assert_eq!(even.len(), 100);
        assert!(even.iter().all(|i| i % 2 == 0));
    }
}
