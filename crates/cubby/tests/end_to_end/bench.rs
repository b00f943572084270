//! `cubby bench` as someone comparing backends runs it, scaled down: every scenario against
//! a server it starts itself, side by side with Mosquitto. These tests check that the
//! harness measures what it says (every acknowledged message reached every receiver, the
//! figures are there and sane, the plot is drawn); they never assert a speed.

use crate::common::{BIN, TestResult, text};
use serde_json::Value;

fn row<'a>(report: &'a Value, scenario: &str, system: &str, setting: &str) -> Result<&'a Value, String> {
    report["rows"]
        .as_array()
        .and_then(|rows| {
            rows.iter().find(|r| r["scenario"] == scenario && r["system"] == system && r["setting"].as_str().is_some_and(|s| s.contains(setting)))
        })
        .ok_or_else(|| format!("no {scenario}/{system}/{setting} row in {report}"))
}

fn metric(row: &Value, name: &str) -> Result<f64, String> {
    row["median"]
        .as_array()
        .and_then(|metrics| metrics.iter().find(|m| m["name"] == name))
        .and_then(|m| m["value"].as_f64())
        .ok_or_else(|| format!("no {name} in {row}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_measures_on_cubby_and_mosquitto() -> TestResult {
    let dir = tempfile::tempdir()?;
    let plot = dir.path().join("latency.svg");
    let output = tokio::process::Command::new(BIN)
        .args([
            "bench", "--json", "--runs", "1", "--duration", "1", "--warmup", "0.3", "--pairs", "3", "--in-flight", "8",
            "--receivers", "6", "--rate", "300", "--sweep", "200,600", "--idle-connections", "40", "--media-size", "1048576",
            "--media-transfers", "2", "--login-workers", "2",
        ])
        .arg("--plot")
        .arg(&plot)
        .env_remove("CUBBY_MASTER_KEY")
        .output()
        .await?;
    assert!(output.status.success(), "cubby bench failed: {}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout)?;

    for system in ["cubby", "mosquitto"] {
        for setting in ["3 pairs, 8 in flight", "3 pairs, 1 in flight", "300/s offered"] {
            let relay = row(&report, "relay", system, setting)?;
            assert!(metric(relay, "acknowledged")? > 0.0, "{relay}");
            // Every acknowledged message reached its receiver: durable, nothing dropped.
            assert_eq!(metric(relay, "dropped")?, 0.0, "{relay}");
            assert!(metric(relay, "p50")? > 0.0 && metric(relay, "p99")? >= metric(relay, "p50")?, "{relay}");
            assert!(metric(relay, "harness CPU")? > 0.0 && metric(relay, "server CPU")? >= 0.0, "{relay}");
        }
        // The paced run sends at the rate offered: its pacer neither starves nor floods.
        let paced = metric(row(&report, "relay", system, "300/s offered")?, "acknowledged")?;
        assert!((240.0..=360.0).contains(&paced), "{system} acknowledged {paced}/s of 300/s offered");
        let fanout = row(&report, "fanout", system, "1 → 6")?;
        assert!(metric(fanout, "acknowledged")? > 0.0, "{fanout}");
        // Six receivers: about six deliveries per acknowledged message over the same interval.
        let ratio = metric(fanout, "deliveries")? / metric(fanout, "acknowledged")?;
        assert!((4.0..=8.0).contains(&ratio), "{fanout}");
        if system == "cubby" {
            assert_eq!(metric(fanout, "dropped")?, 0.0, "{fanout}");
        }
    }
    // The same bytes on both sides: the MQTT payload is the size of Cubby's ciphertext.
    let setting = row(&report, "relay", "cubby", "8 in flight")?["setting"].as_str().unwrap_or_default().to_owned();
    assert!(row(&report, "relay", "mosquitto", &setting).is_ok(), "no Mosquitto row with the same setting {setting}");

    let sweep = report["sweep"].as_array().ok_or("no sweep")?;
    assert_eq!(sweep.len(), 4, "two rates on two systems: {sweep:?}");
    assert!(sweep.iter().all(|p| p["latency"]["samples"].as_u64().is_some_and(|n| n > 0)), "{sweep:?}");
    let svg = std::fs::read_to_string(&plot)?;
    assert!(svg.starts_with("<svg") && svg.contains("Cubby") && svg.contains("Mosquitto"), "{svg:.300}");

    let idle = row(&report, "idle", "cubby", "40 toys")?;
    assert_eq!(metric(idle, "connections")?, 40.0);
    assert!(metric(idle, "server RSS")? > 1.0, "{idle}");

    for (system, setting) in [("machine", "loopback file copy"), ("cubby", "upload"), ("cubby", "download")] {
        let media = row(&report, "media", system, setting)?;
        assert!(metric(media, "throughput")? > 0.0, "{media}");
    }
    let logins = row(&report, "logins", "cubby", "2 guardians")?;
    assert!(metric(logins, "logins")? > 0.0, "{logins}");
    assert!(report["machine"]["cpus"].as_u64().is_some_and(|n| n >= 1));
    Ok(())
}

#[tokio::test]
async fn the_human_table_shows_ratios_and_bad_arguments_are_refused() -> TestResult {
    let output = tokio::process::Command::new(BIN)
        .args(["bench", "--scenarios", "relay", "--runs", "1", "--duration", "0.5", "--warmup", "0.2", "--pairs", "1", "--rate", "100"])
        .env_remove("CUBBY_MASTER_KEY")
        .output()
        .await?;
    assert!(output.status.success(), "cubby bench failed: {}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.contains("relay") && table.contains("cubby/mosquitto"), "{table}");

    let refused = tokio::process::Command::new(BIN).args(["bench", "--scenarios", "nonsense"]).output().await?;
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("nonsense"), "{}", text(&refused.stderr));
    // A server given by URL needs its outbox (guardians sign up through mail).
    let refused = tokio::process::Command::new(BIN).args(["bench", "--url", "http://127.0.0.1:1"]).output().await?;
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--outbox"), "{}", text(&refused.stderr));
    Ok(())
}
