//! Summary statistics for measured samples, with one convention everywhere.
//!
//! Percentiles are **nearest rank**: the `p`th percentile of `n` samples is the
//! ⌈p/100 · n⌉-th smallest (at least the first). It never interpolates, so every figure
//! printed is a value that was measured; the median (p50) of an even count is the lower
//! of the two middle samples. No samples give NaN (printed as `NaN`, `null` in JSON):
//! there is no figure to report, and a 0 would pass for one.

use std::time::Duration;

/// The `p`th percentile (0 < `p` ≤ 100) of `samples`, by nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `samples`: [`percentile`] 50.
pub fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

/// `duration` in milliseconds.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Each of `durations` in milliseconds.
pub fn all_millis(durations: &[Duration]) -> Vec<f64> {
    durations.iter().copied().map(millis).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 95.0), 95.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&samples, 100.0), 100.0);
        assert_eq!(percentile(&samples[..1], 99.0), 1.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 100.0), 4.0);
        // Between two ranks: the next sample up, never an interpolation.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 91.0), 10.0);
        assert_eq!(percentile(&ten, 15.0), 2.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle_sample() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.0);
    }

    #[test]
    fn no_samples_give_no_figure() {
        assert!(percentile(&[], 50.0).is_nan());
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn durations_read_in_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1500)), 1.5);
        assert_eq!(
            all_millis(&[Duration::from_millis(2), Duration::from_millis(3)]),
            [2.0, 3.0]
        );
    }
}
