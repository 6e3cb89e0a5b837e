//! Synthetic embeddings: unit vectors in clusters, reproducible from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The column's dimensions in the shipped schema.
pub const DIMS: usize = 1536;

/// A unit vector with a random direction.
pub fn random_unit(rng: &mut impl Rng, dims: usize) -> Vec<f32> {
    normalize((0..dims).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
}

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
        .map(|i| {
            let centre = &centres[i % clusters];
            normalize(
                centre
                    .iter()
                    .map(|c| c + spread * rng.gen_range(-1.0f32..1.0))
                    .collect(),
            )
        })
        .collect()
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
