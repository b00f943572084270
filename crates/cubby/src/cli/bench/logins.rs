//! Scenario (e): guardians' sign-ins per second. Each one runs Argon2id on the server by
//! design; the figure says what that costs, it is not something to tune away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::provision::Family;
use super::report::{Latency, Metric};

/// Signs the families' guardians in over and over, one at a time each, for `duration`.
pub async fn measure(families: &[Arc<Mutex<Family>>], duration: Duration) -> anyhow::Result<Vec<Metric>> {
    let stop_at = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for family in families {
        let family = family.clone();
        tasks.spawn(async move {
            let mut micros = Vec::new();
            while Instant::now() < stop_at {
                let started = Instant::now();
                family.lock().await.sign_in().await?;
                micros.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, anyhow::Error>(micros)
        });
    }
    let mut micros = Vec::new();
    while let Some(done) = tasks.join_next().await {
        micros.extend(done??);
    }
    let per_second = micros.len() as f64 / duration.as_secs_f64();
    let latency = Latency::of(&mut micros);
    Ok(vec![
        Metric::new("logins", per_second, "/s"),
        Metric::new("p50", latency.p50_ms, "ms"),
        Metric::new("p99", latency.p99_ms, "ms"),
    ])
}
