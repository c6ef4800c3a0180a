//! Latency samples, percentiles and the figures the run prints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

pub struct Figures(pub Vec<serde_json::Value>);

impl Figures {
    pub fn add(&mut self, name: &str, value: f64, unit: &str, extra: serde_json::Value) {
        let mut v = json!({"figure": name, "value": value, "unit": unit});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        println!("{:<58} {:>14.3} {unit}", name, value);
        self.0.push(v);
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `workers` concurrent loops of `op` for `secs`; returns latencies.
pub async fn measure<F, Fut>(workers: usize, secs: f64, op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    op(w).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (all, elapsed)
}
