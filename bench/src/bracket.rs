//! Filters measured between runs without one: no filter, the first filter,
//! no filter, the second, ... no filter, every round. Each filter's ratio
//! is to the mean of the two runs next to it: the machine's load drifts
//! over minutes, much less over seconds.

use crate::{firewall::Filter, interrupt};

/// Samples of one filter: a value per round for each metric, and its ratio
/// to the runs without a filter next to it.
#[derive(Default)]
pub struct Series {
    pub values: Vec<Vec<f64>>,
    pub ratios: Vec<Vec<f64>>,
}

pub struct Bracketed {
    /// Every run without a filter, per metric.
    pub baseline: Vec<Vec<f64>>,
    /// In the order of the filters measured.
    pub filters: Vec<Series>,
}

/// Runs `measure` (one value per metric) on no filter and each of
/// `filters`, bracketed, for `rounds` rounds.
pub fn bracketed(
    filters: &[Filter],
    rounds: usize,
    metrics: usize,
    mut measure: impl FnMut(Filter, usize) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Bracketed> {
    let mut result = Bracketed {
        baseline: vec![Vec::new(); metrics],
        filters: filters
            .iter()
            .map(|_| Series {
                values: vec![Vec::new(); metrics],
                ratios: vec![Vec::new(); metrics],
            })
            .collect(),
    };
    let mut run = |filter, round| -> anyhow::Result<Vec<f64>> {
        interrupt::checkpoint()?;
        let values = measure(filter, round)?;
        assert_eq!(values.len(), metrics, "one value per metric");
        Ok(values)
    };
    for round in 1..=rounds {
        let mut before = run(Filter::None, round)?;
        record(&mut result.baseline, &before);
        for (&filter, series) in filters.iter().zip(&mut result.filters) {
            let value = run(filter, round)?;
            let after = run(Filter::None, round)?;
            record(&mut result.baseline, &after);
            for metric in 0..metrics {
                let neighbours = (before[metric] + after[metric]) / 2.0;
                series.ratios[metric].push(value[metric] / neighbours);
            }
            record(&mut series.values, &value);
            before = after;
        }
    }
    Ok(result)
}

fn record(into: &mut [Vec<f64>], values: &[f64]) {
    for (series, &value) in into.iter_mut().zip(values) {
        series.push(value);
    }
}
