//! Tables for people, the goal verdicts, and the CSV.
//!
//! Everything here reads the results document the run just produced, so what is
//! printed, what goes to `results.json` and what the verdicts say come from one
//! set of figures.

use std::fmt::Write as _;

use serde_json::{json, Value};

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e["name"] == name)
}

fn find_tp<'a>(list: &'a Value, name: &str, sessions: u64) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|e| e["name"] == name && e["sessions"].as_u64() == Some(sessions))
}

fn verdict(
    goal: &str,
    target: &str,
    measured: String,
    holds: Option<bool>,
    margin: String,
) -> Value {
    json!({"goal": goal, "target": target, "measured": measured, "holds": holds, "margin": margin})
}

/// Added latency of `path` over `direct` against HAProxy's, at one percentile.
fn latency_goals(list: &Value, label: &str, out: &mut Vec<Value>) {
    let (Some(d), Some(h)) = (find(list, "direct"), find(list, "haproxy")) else {
        return;
    };
    for path in ["manager compat", "manager jsonrpc"] {
        let Some(m) = find(list, path) else { continue };
        for (pct, key) in [("p50", "p50_us"), ("p99", "p99_us")] {
            let direct = f(&d["best"][key]);
            let hap_add = f(&h["best"][key]) - direct;
            let mgr_add = f(&m["best"][key]) - direct;
            out.push(verdict(
                &format!("{label}: {path} adds ≤ HAProxy's added latency at {pct}"),
                &format!("≤ {hap_add:.1} µs (HAProxy adds)"),
                format!("{mgr_add:.1} µs added (direct {direct:.1} µs)"),
                Some(mgr_add <= hap_add),
                format!("{:+.1} µs", hap_add - mgr_add),
            ));
        }
    }
}

pub fn goals(doc: &Value) -> Value {
    let r = &doc["results"];
    let mut out = vec![];
    if r["latency"].is_array() {
        latency_goals(&r["latency"], "Latency (instant backend)", &mut out);
    }
    if let Some(big) = r["big"].as_array() {
        if let Some(d) = big.iter().find(|b| b["name"] == "direct") {
            let direct = f(&d["best_mb_s"]);
            for path in ["manager compat", "manager jsonrpc"] {
                if let Some(m) = big.iter().find(|b| b["name"] == path) {
                    let rate = f(&m["best_mb_s"]);
                    out.push(verdict(
                        &format!("Big reply: {path} ≥ half the direct rate"),
                        &format!("≥ {:.0} MB/s (direct {direct:.0} MB/s)", direct / 2.0),
                        format!("{rate:.0} MB/s ({:.2}× direct)", rate / direct),
                        Some(rate >= direct / 2.0),
                        format!("{:+.0} MB/s", rate - direct / 2.0),
                    ));
                }
            }
        }
    }
    if r["throughput"].is_array() {
        for n in [64u64, 1000] {
            let Some(h) = find_tp(&r["throughput"], "haproxy", n) else {
                continue;
            };
            let hcps = f(&h["best"]["commands_per_s"]);
            for path in ["manager compat", "manager jsonrpc"] {
                if let Some(m) = find_tp(&r["throughput"], path, n) {
                    let mcps = f(&m["best"]["commands_per_s"]);
                    out.push(verdict(
                        &format!("Throughput over {n} sessions: {path} ≥ 0.8× HAProxy"),
                        &format!("≥ {:.0} cmd/s (HAProxy {hcps:.0})", 0.8 * hcps),
                        format!("{mcps:.0} cmd/s ({:.2}× HAProxy)", mcps / hcps),
                        Some(mcps >= 0.8 * hcps),
                        format!("{:+.2}×", mcps / hcps - 0.8),
                    ));
                }
            }
        }
    }
    if r["scale"].is_object() {
        let s = &r["scale"];
        let n = s["sessions"].as_u64().unwrap_or(0);
        let per = f(&s["per_session_bytes"]);
        let conns = s["reported_backend_connections"].as_u64().unwrap_or(0);
        out.push(verdict(
            &format!("Scale: {n} sessions with live backend sockets, memory per idle session"),
            "< 16 KiB (16384 bytes)",
            format!(
                "{per:.0} bytes ({:.1} KiB); {conns} backend connections reported",
                per / 1024.0
            ),
            Some(per < 16384.0 && conns == n),
            format!("{:+.0} bytes", 16384.0 - per),
        ));
        let p50 = f(&s["create_session"]["p50_us"]);
        out.push(verdict(
            "Scale: create_session p50 including the backend connect",
            "< 100 µs",
            format!(
                "{p50:.1} µs (p99 {:.1} µs)",
                f(&s["create_session"]["p99_us"])
            ),
            Some(p50 < 100.0),
            format!("{:+.1} µs", 100.0 - p50),
        ));
    }
    if r["sweep"].is_object() {
        let s = &r["sweep"];
        let best = f(&s["scan_only_best_ms"]);
        let med = f(&s["scan_only_median_ms"]);
        out.push(verdict(
            &format!(
                "Scale: reaper sweep over {} sessions",
                s["sessions"].as_u64().unwrap_or(0)
            ),
            "< 20 ms",
            format!(
                "{med:.2} ms median, {best:.2} ms best (nothing to reap); {:.2} ms reaping 1%",
                f(&s["reap_1pct_ms"])
            ),
            Some(med < 20.0),
            format!("{:+.2} ms", 20.0 - med),
        ));
    }
    if r["blender"].is_array() {
        latency_goals(&r["blender"], "Real Blender get_scene_info", &mut out);
    }
    Value::Array(out)
}

fn mb(bytes: &Value) -> String {
    format!("{:.1}", f(bytes) / 1024.0 / 1024.0)
}

fn latency_table(out: &mut String, title: &str, list: &Value) {
    let Some(rows) = list.as_array() else { return };
    let direct = find(list, "direct").map(|d| (f(&d["best"]["p50_us"]), f(&d["best"]["p99_us"])));
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "| path | p50 µs | p99 µs | p999 µs | p99/p50 | adds at p50 µs | adds at p99 µs | p50 per round: median (min–max) µs |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let b = &r["best"];
        let per_round: Vec<f64> = r["rounds"]
            .as_array()
            .map(|rs| rs.iter().map(|x| f(&x["p50_us"])).collect())
            .unwrap_or_default();
        let spread = if per_round.is_empty() {
            String::new()
        } else {
            format!(
                "{:.1} ({:.1}–{:.1})",
                crate::stats::median(&per_round),
                per_round.iter().copied().fold(f64::INFINITY, f64::min),
                per_round.iter().copied().fold(0.0, f64::max)
            )
        };
        let (p50, p99) = (f(&b["p50_us"]), f(&b["p99_us"]));
        let (a50, a99) = match direct {
            Some((d50, d99)) if r["name"] != "direct" => {
                (format!("{:+.1}", p50 - d50), format!("{:+.1}", p99 - d99))
            }
            _ => ("".into(), "".into()),
        };
        let errors = r["errors"].as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {}{} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} |",
            r["name"].as_str().unwrap_or(""),
            if errors > 0 {
                format!(" ({errors} errors)")
            } else {
                String::new()
            },
            p50,
            p99,
            f(&b["p999_us"]),
            if p50 > 0.0 { p99 / p50 } else { 0.0 },
            a50,
            a99,
            spread
        );
    }
}

pub fn tables(doc: &Value) -> String {
    let mut out = String::new();
    let m = &doc["meta"];
    let _ = writeln!(
        out,
        "Blender Session Manager benchmark — {} run, {} (commit {}{})",
        m["mode"].as_str().unwrap_or(""),
        m["date_utc"].as_str().unwrap_or(""),
        m["commit"].as_str().unwrap_or("?"),
        match m["dirty_paths"].as_u64() {
            Some(0) | None => String::new(),
            Some(n) => format!(", {n} modified tracked files"),
        }
    );
    if let Some(env) = m["manager_env"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(
            out,
            "Experiment: managers ran with {}",
            env.iter()
                .filter_map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let mach = &m["machine"];
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {} GiB RAM, kernel {}; load average {} at start, {} at end; {}",
        mach["nproc"],
        mach["cpu_model"].as_str().unwrap_or(""),
        mach["mem_total_gib"],
        mach["kernel"].as_str().unwrap_or(""),
        m["loadavg_start"].as_str().unwrap_or(""),
        m["loadavg_end"].as_str().unwrap_or(""),
        m["haproxy"].as_str().unwrap_or("no HAProxy"),
    );
    let r = &doc["results"];
    if r["latency"].is_array() {
        latency_table(
            &mut out,
            &format!(
                "Latency, one session, small command ({} B reply) against the instant mock; best of N interleaved rounds",
                m["reply_bytes"]
            ),
            &r["latency"],
        );
    }
    if let Some(rows) = r["throughput"].as_array() {
        let _ = writeln!(
            out,
            "\nThroughput, closed loop, one connection per session; best round of N (CPU: 100% = one core)"
        );
        let _ = writeln!(
            out,
            "| path | sessions | cmd/s | × HAProxy | p50 µs | p99 µs | proxy CPU % | proxy CPU µs/cmd | proxy RSS MiB | mock CPU % | client CPU % |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in rows {
            let b = &row["best"];
            let n = row["sessions"].as_u64().unwrap_or(0);
            let hap = find_tp(&r["throughput"], "haproxy", n)
                .map(|h| f(&h["best"]["commands_per_s"]))
                .unwrap_or(f64::NAN);
            let opt = |v: &Value, p: usize| {
                if v.is_null() {
                    "–".to_string()
                } else {
                    format!("{:.*}", p, f(v))
                }
            };
            let errors = b["errors"].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "| {}{} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {} | {} | {} | {:.0} | {:.0} |",
                row["name"].as_str().unwrap_or(""),
                if errors > 0 {
                    format!(" ({errors} errors)")
                } else {
                    String::new()
                },
                n,
                f(&b["commands_per_s"]),
                f(&b["commands_per_s"]) / hap,
                f(&b["latency"]["p50_us"]),
                f(&b["latency"]["p99_us"]),
                opt(&b["proxy_cpu_pct"], 0),
                opt(&b["proxy_cpu_us_per_cmd"], 1),
                if b["proxy_rss_bytes"].is_null() {
                    "–".into()
                } else {
                    mb(&b["proxy_rss_bytes"])
                },
                f(&b["mock_cpu_pct"]),
                f(&b["client_cpu_pct"]),
            );
        }
    }
    if let Some(rows) = r["big"].as_array() {
        let direct = rows
            .iter()
            .find(|b| b["name"] == "direct")
            .map(|d| f(&d["best_mb_s"]))
            .unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "\nBig reply ({} bytes), one request at a time; best of N (MB = 10^6 bytes)",
            m["big_reply_bytes"]
        );
        let _ = writeln!(
            out,
            "| path | time per reply ms (best) | median ms | MB/s | × direct |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for b in rows {
            let _ = writeln!(
                out,
                "| {}{} | {:.1} | {:.1} | {:.0} | {:.2} |",
                b["name"].as_str().unwrap_or(""),
                match b["reads"].as_u64() {
                    Some(n) => format!(" ({n} reads of ≤ 8 KiB)"),
                    None => String::new(),
                },
                f(&b["best_s"]) * 1e3,
                f(&b["median_s"]) * 1e3,
                f(&b["best_mb_s"]),
                f(&b["best_mb_s"]) / direct
            );
        }
    }
    if let Some(mem) = r["manager_memory"].as_object() {
        let _ = writeln!(out, "\nManager RSS / peak (MiB) after each scenario");
        let _ = writeln!(
            out,
            "| after | :memory: RSS | :memory: peak | file db RSS | file db peak |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for (k, v) in mem {
            let _ = writeln!(
                out,
                "| {k} | {} | {} | {} | {} |",
                mb(&v["mem_rss_bytes"]),
                mb(&v["mem_hwm_bytes"]),
                mb(&v["file_rss_bytes"]),
                mb(&v["file_hwm_bytes"])
            );
        }
    }
    if r["scale"].is_object() {
        let s = &r["scale"];
        let _ = writeln!(
            out,
            "\nScale: sessions with live backend sockets (fresh manager, --db :memory:)"
        );
        let _ = writeln!(
            out,
            "| sessions | RSS before MiB | RSS after MiB | bytes per idle session | create_session p50 µs | p99 µs | p999 µs | p50 first / last tenth µs | backend connections | idle CPU % |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {} | {:.1} |",
            s["sessions"],
            mb(&s["baseline_rss_bytes"]),
            mb(&s["after_rss_bytes"]),
            f(&s["per_session_bytes"]),
            f(&s["create_session"]["p50_us"]),
            f(&s["create_session"]["p99_us"]),
            f(&s["create_session"]["p999_us"]),
            f(&s["create_p50_first_tenth_us"]),
            f(&s["create_p50_last_tenth_us"]),
            s["reported_backend_connections"],
            f(&s["idle_cpu_pct"])
        );
    }
    if r["sweep"].is_object() {
        let s = &r["sweep"];
        let _ = writeln!(
            out,
            "\nReaper sweep (Manager::cleanup_idle_sessions, in process)"
        );
        let _ = writeln!(
            out,
            "| sessions | nothing to reap: median ms | best ms | reaping 1% ms (closed) | reaping all ms (closed) |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} ({}) | {:.1} ({}) |",
            s["sessions"],
            f(&s["scan_only_median_ms"]),
            f(&s["scan_only_best_ms"]),
            f(&s["reap_1pct_ms"]),
            s["reap_1pct_closed"],
            f(&s["reap_all_ms"]),
            s["reap_all_closed"]
        );
    }
    if r["blender"].is_array() {
        latency_table(
            &mut out,
            "Real headless Blender, get_scene_info, one session; best of N interleaved rounds",
            &r["blender"],
        );
    }
    if let Some(goals) = doc["goals"].as_array() {
        let _ = writeln!(out, "\nGoals");
        let _ = writeln!(out, "| goal | target | measured | holds | margin |");
        let _ = writeln!(out, "|---|---|---|---|---:|");
        for g in goals {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                g["goal"].as_str().unwrap_or(""),
                g["target"].as_str().unwrap_or(""),
                g["measured"].as_str().unwrap_or(""),
                match g["holds"].as_bool() {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "n/a",
                },
                g["margin"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(notes) = m["notes"].as_array() {
        for n in notes {
            let _ = writeln!(out, "\nNote: {}", n.as_str().unwrap_or(""));
        }
    }
    out
}

/// One row per figure: scenario, path, sessions, metric, value.
pub fn csv(doc: &Value) -> String {
    let mut out = String::from("scenario,path,sessions,metric,value\n");
    let r = &doc["results"];
    let mut row = |scenario: &str, path: &str, sessions: String, metric: &str, v: &Value| {
        if let Some(x) = v.as_f64() {
            let _ = writeln!(out, "{scenario},{path},{sessions},{metric},{x}");
        }
    };
    for (scenario, key) in [("latency", "latency"), ("blender", "blender")] {
        if let Some(rows) = r[key].as_array() {
            for e in rows {
                let name = e["name"].as_str().unwrap_or("");
                for m in ["p50_us", "p99_us", "p999_us", "mean_us"] {
                    row(scenario, name, "1".into(), m, &e["best"][m]);
                }
            }
        }
    }
    if let Some(rows) = r["throughput"].as_array() {
        for e in rows {
            let name = e["name"].as_str().unwrap_or("");
            let n = e["sessions"].to_string();
            for m in [
                "commands_per_s",
                "proxy_cpu_pct",
                "proxy_cpu_us_per_cmd",
                "proxy_rss_bytes",
                "mock_cpu_pct",
                "client_cpu_pct",
            ] {
                row("throughput", name, n.clone(), m, &e["best"][m]);
            }
            row(
                "throughput",
                name,
                n.clone(),
                "p50_us",
                &e["best"]["latency"]["p50_us"],
            );
            row(
                "throughput",
                name,
                n,
                "p99_us",
                &e["best"]["latency"]["p99_us"],
            );
        }
    }
    if let Some(rows) = r["big"].as_array() {
        for e in rows {
            let name = e["name"].as_str().unwrap_or("");
            row("big", name, "1".into(), "best_s", &e["best_s"]);
            row("big", name, "1".into(), "best_mb_s", &e["best_mb_s"]);
        }
    }
    let s = &r["scale"];
    if s.is_object() {
        let n = s["sessions"].to_string();
        row(
            "scale",
            "manager",
            n.clone(),
            "per_session_bytes",
            &s["per_session_bytes"],
        );
        row(
            "scale",
            "manager",
            n.clone(),
            "create_p50_us",
            &s["create_session"]["p50_us"],
        );
        row(
            "scale",
            "manager",
            n,
            "create_p99_us",
            &s["create_session"]["p99_us"],
        );
    }
    let s = &r["sweep"];
    if s.is_object() {
        let n = s["sessions"].to_string();
        row(
            "sweep",
            "manager",
            n.clone(),
            "scan_only_median_ms",
            &s["scan_only_median_ms"],
        );
        row(
            "sweep",
            "manager",
            n.clone(),
            "scan_only_best_ms",
            &s["scan_only_best_ms"],
        );
        row(
            "sweep",
            "manager",
            n.clone(),
            "reap_1pct_ms",
            &s["reap_1pct_ms"],
        );
        row("sweep", "manager", n, "reap_all_ms", &s["reap_all_ms"]);
    }
    out
}
