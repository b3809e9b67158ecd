//! `make bench`: the figures a Rust implementation is for, measured on the release binaries
//! through the local-invoke harness, against moto and a throwaway PostgreSQL.
//!
//! Prints one table and writes `target/bench.json`:
//! - init: process start → first `GET .../invocation/next` (median, max over 20 starts);
//! - warm latency: invocation handed out → response PUT received (median, p95 over 100);
//! - peak RSS of the Lambda process (VmHWM) during those runs;
//! - arm64 zip size from `cargo lambda build --release --arm64 --output-format zip`;
//! - contention: 64 simultaneous priority allocations on a listener with 500 rules;
//! - guarantee latency: panic → FAILED, and how long before the deadline a hang's FAILED arrives.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use local_invoke::postgres::postgres;
use local_invoke::services::{self, moto, repo_root};
use local_invoke::{Exchange, Harness, Profile, RuntimeApi, binary_path, fixtures};
use serde_json::{Value, json};

const INIT_STARTS: usize = 20;
const WARM_RUNS: usize = 100;
const CONTENDERS: usize = 64;

fn main() {
    // Stop the services this process started even when a step panics.
    let code = std::panic::catch_unwind(|| local_invoke::block_on(run())).unwrap_or(101);
    services::shutdown();
    std::process::exit(code);
}

fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (ms.len() - 1) as f64).round() as usize;
    ms[rank.min(ms.len() - 1)]
}

/// Process start → first poll of `/next`, over `starts` fresh processes.
async fn init_times(binary: &str, env: &[(&str, &str)], starts: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(starts);
    for _ in 0..starts {
        let api = RuntimeApi::start().await;
        let lambda = local_invoke::Lambda::spawn(&binary_path(binary, Profile::Release), &api.address(), env);
        assert!(
            api.wait_for_polls(1, Duration::from_secs(10)).await,
            "{binary} never polled: {}",
            lambda.logs()
        );
        times.push(api.next_polls()[0].saturating_duration_since(lambda.started_at));
    }
    times
}

struct Warm {
    latencies: Vec<Duration>,
    peak_rss_kib: Option<u64>,
    failures: Vec<String>,
}

/// Sends `runs` events built by `event(i)` to one warm process (after 5 warm-up calls).
async fn warm(harness: &Harness, runs: usize, mut event: impl FnMut(usize) -> Value) -> Warm {
    let mut failures = Vec::new();
    for i in 0..5 {
        harness.call(event(1_000_000 + i)).await;
    }
    let mut latencies = Vec::with_capacity(runs);
    for i in 0..runs {
        let x: Exchange = harness.call(event(i)).await;
        let status = x
            .puts
            .last()
            .and_then(|p| p.json["Status"].as_str())
            .unwrap_or("none")
            .to_string();
        if status != "SUCCESS" {
            failures.push(
                x.puts
                    .last()
                    .map(|p| p.json["Reason"].to_string())
                    .unwrap_or_default(),
            );
        }
        if let Some(latency) = x.latency {
            latencies.push(latency);
        }
    }
    Warm {
        latencies,
        peak_rss_kib: harness.lambda.peak_rss_kib(),
        failures,
    }
}

fn zip_size(binary: &str) -> Option<u64> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    std::fs::metadata(target.join("lambda").join(binary).join("bootstrap.zip"))
        .ok()
        .map(|m| m.len())
}

async fn run() -> i32 {
    println!("Starting moto and a throwaway PostgreSQL ...");
    let moto = tokio::task::spawn_blocking(moto).await.expect("moto");
    let pg = tokio::task::spawn_blocking(postgres).await.expect("postgres");
    let env = [("AWS_ENDPOINT_URL", moto.endpoint.as_str())];
    let (key, listener, crowded) = tokio::task::spawn_blocking(|| {
        (
            fixtures::kms_key("bench"),
            fixtures::listener([1, 2, 5]),
            fixtures::listener(1..=500),
        )
    })
    .await
    .expect("fixtures");
    let admin_parameter = "/bench/admin-password".to_string();
    {
        let script = "import sys, boto3; boto3.client('ssm').put_parameter(Name=sys.argv[1], Value=sys.argv[2], Type='SecureString', KeyId=sys.argv[3], Overwrite=True)";
        let (name, password, key) = (admin_parameter.clone(), pg.admin_password.clone(), key.clone());
        tokio::task::spawn_blocking(move || moto.python(script, &[&name, &password, &key]))
            .await
            .expect("admin password");
    }

    let mut rows: Vec<Value> = Vec::new();
    let mut failures = Vec::new();

    // --- per binary: init, warm latency, peak RSS, zip size ---------------------------------
    for binary in ["admin-secret", "service-database", "listener-rule-priority"] {
        println!("{binary}: {INIT_STARTS} cold starts ...");
        let init = init_times(binary, &env, INIT_STARTS).await;
        let harness = Harness::start_profile(binary, Profile::Release, &env).await;
        let stack = harness.events.for_stack("bench");
        let label;
        let warm = match binary {
            "admin-secret" => {
                label = "Create (new SecureString)";
                let key = key.clone();
                warm(&harness, WARM_RUNS, |i| {
                    stack.create(
                        "Custom::AdminSecret",
                        &format!("Secret{i}"),
                        json!({"ParameterName": format!("/bench/secret-{i}"), "KeyId": key}),
                    )
                })
                .await
            }
            "service-database" => {
                label = "Create (existing db: TLS + SCRAM + checks)";
                let first = stack.create(
                    "Custom::ServiceDatabase",
                    "Db",
                    database_properties(pg, &admin_parameter, &key, "bench_db"),
                );
                harness.call(first).await;
                warm(&harness, WARM_RUNS, |_| {
                    stack.create(
                        "Custom::ServiceDatabase",
                        "Db",
                        database_properties(pg, &admin_parameter, &key, "bench_db"),
                    )
                })
                .await
            }
            _ => {
                label = "Create (claim a priority)";
                warm(&harness, WARM_RUNS, |i| {
                    stack.create(
                        "Custom::ListenerRulePriority",
                        &format!("Rule{i}"),
                        json!({"ListenerArn": listener}),
                    )
                })
                .await
            }
        };
        failures.extend(warm.failures.iter().map(|f| format!("{binary}: {f}")));
        rows.push(json!({
            "binary": binary,
            "init_ms": {"median": percentile(&init, 50.0), "max": percentile(&init, 100.0), "starts": init.len()},
            "warm_ms": {"request": label, "median": percentile(&warm.latencies, 50.0), "p95": percentile(&warm.latencies, 95.0), "runs": warm.latencies.len()},
            "peak_rss_mb": warm.peak_rss_kib.map(|k| k as f64 / 1024.0),
            "zip_bytes": zip_size(binary),
        }));
    }

    // A new database each time: CREATE DATABASE copies a template, which dominates.
    println!("service-database: 20 Creates of new databases ...");
    let fresh = {
        let harness = Harness::start_profile("service-database", Profile::Release, &env).await;
        let stack = harness.events.for_stack("bench-fresh");
        warm(&harness, 20, |i| {
            stack.create(
                "Custom::ServiceDatabase",
                &format!("Fresh{i}"),
                database_properties(pg, &admin_parameter, &key, &format!("bench_fresh_{i}")),
            )
        })
        .await
    };
    failures.extend(
        fresh
            .failures
            .iter()
            .map(|f| format!("service-database (new): {f}")),
    );

    // --- contention ---------------------------------------------------------------------------
    println!(
        "listener-rule-priority: {CONTENDERS} simultaneous Creates against a listener with 500 rules ..."
    );
    let mut contenders = Vec::new();
    for _ in 0..CONTENDERS {
        contenders.push(Harness::start_profile("listener-rule-priority", Profile::Release, &env).await);
    }
    for h in &contenders {
        h.runtime_api.wait_for_polls(1, Duration::from_secs(10)).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, h) in contenders.iter().enumerate() {
        let event = h.events.for_stack(&format!("contender-{i}")).create(
            "Custom::ListenerRulePriority",
            "Rule",
            json!({"ListenerArn": crowded}),
        );
        tasks.push(h.call(event));
    }
    let exchanges = join_all(tasks).await;
    let contention_ms = started.elapsed().as_secs_f64() * 1000.0;
    let granted: Vec<u32> = exchanges
        .iter()
        .filter_map(|x| x.puts.last()?.json["Data"]["Priority"].as_str()?.parse().ok())
        .collect();
    let distinct: BTreeSet<u32> = granted.iter().copied().collect();
    let clashes = distinct.iter().filter(|p| **p <= 500).count();
    drop(contenders);

    // --- guarantee latency --------------------------------------------------------------------
    println!("fault-injection: panic → FAILED, hang → FAILED before the deadline ...");
    let fault = Harness::start_profile(
        "fault-injection",
        Profile::Release,
        &[("CFN_RESPONSE_MARGIN_MS", "1000")],
    )
    .await;
    let mut panic_latencies = Vec::new();
    for i in 0..20 {
        let event = fault.events.create(
            "Custom::FaultInjection",
            &format!("Panic{i}"),
            json!({"Label": "bench", "OnCreate": "panic"}),
        );
        if let Some(latency) = fault.call(event).await.latency {
            panic_latencies.push(latency);
        }
    }
    let timeout = Duration::from_secs(4);
    let event = fault.events.create(
        "Custom::FaultInjection",
        "Hang",
        json!({"Label": "bench", "OnCreate": "hang"}),
    );
    let hang = fault.call_with_timeout(event, timeout).await;
    let hang_before_deadline_ms = hang
        .latency
        .map(|l| (timeout.saturating_sub(l)).as_secs_f64() * 1000.0);

    // --- report -------------------------------------------------------------------------------
    let machine = machine();
    println!();
    println!("Machine: {machine}");
    println!();
    println!(
        "| Lambda | init median / max (ms) | warm request | warm median / p95 (ms) | peak RSS (MiB) | arm64 zip (MiB) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        let zip = row["zip_bytes"]
            .as_u64()
            .map_or("n/a (make build)".to_string(), |b| {
                format!("{:.2}", b as f64 / 1_048_576.0)
            });
        let rss = row["peak_rss_mb"]
            .as_f64()
            .map_or("n/a".to_string(), |m| format!("{m:.1}"));
        println!(
            "| {} | {:.1} / {:.1} | {} | {:.1} / {:.1} | {} | {} |",
            row["binary"].as_str().unwrap_or_default(),
            row["init_ms"]["median"].as_f64().unwrap_or(f64::NAN),
            row["init_ms"]["max"].as_f64().unwrap_or(f64::NAN),
            row["warm_ms"]["request"].as_str().unwrap_or_default(),
            row["warm_ms"]["median"].as_f64().unwrap_or(f64::NAN),
            row["warm_ms"]["p95"].as_f64().unwrap_or(f64::NAN),
            rss,
            zip,
        );
    }
    println!(
        "| service-database | | Create (new database) | {:.1} / {:.1} | {} | |",
        percentile(&fresh.latencies, 50.0),
        percentile(&fresh.latencies, 95.0),
        fresh
            .peak_rss_kib
            .map_or("n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
    );
    println!();
    println!(
        "Contention: {CONTENDERS} simultaneous Creates on a listener with 500 rules: {} distinct priorities of {} granted, {} on a live rule, in {:.0} ms",
        distinct.len(),
        granted.len(),
        clashes,
        contention_ms
    );
    println!(
        "Guarantee: panic → FAILED median {:.1} ms (max {:.1} ms); a hang's FAILED arrived {} ms before the deadline (margin 1000 ms)",
        percentile(&panic_latencies, 50.0),
        percentile(&panic_latencies, 100.0),
        hang_before_deadline_ms.map_or("n/a".into(), |ms| format!("{ms:.0}")),
    );
    let report = json!({
        "machine": machine,
        "lambdas": rows,
        "service_database_new_database_ms": {"median": percentile(&fresh.latencies, 50.0), "p95": percentile(&fresh.latencies, 95.0), "runs": fresh.latencies.len()},
        "contention": {"contenders": CONTENDERS, "rules": 500, "granted": granted.len(), "distinct": distinct.len(), "on_live_rule": clashes, "wall_ms": contention_ms},
        "guarantee": {"panic_to_failed_ms": {"median": percentile(&panic_latencies, 50.0), "max": percentile(&panic_latencies, 100.0)}, "hang_failed_before_deadline_ms": hang_before_deadline_ms, "margin_ms": 1000},
        "failures": failures,
    });
    let out = repo_root().join("target");
    let _ = std::fs::create_dir_all(&out);
    let path = out.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write bench.json");
    println!("Written to {}", path.display());
    if !failures.is_empty() {
        eprintln!(
            "{} benchmarked requests did not succeed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        return 1;
    }
    if distinct.len() != CONTENDERS || clashes != 0 {
        return 1;
    }
    0
}

fn database_properties(
    pg: &local_invoke::postgres::Postgres,
    admin_parameter: &str,
    key: &str,
    database: &str,
) -> Value {
    json!({
        "ClusterEndpoint": pg.host,
        "Port": pg.port.to_string(),
        "AdminUsername": pg.admin_user,
        "AdminPasswordParameterName": admin_parameter,
        "DatabaseName": database,
        "PasswordParameterName": format!("/bench/{database}/password"),
        "KeyId": key,
        "CaCertificate": pg.ca_pem,
    })
}

async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("completed")).collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("?".into(), |k| format!("{:.0} GiB", k as f64 / 1_048_576.0));
    format!(
        "{cores} cores ({cpu}), {mem} RAM, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
