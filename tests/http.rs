//! The HTTP port: REST routes over the JSON-RPC methods, error mapping, the bearer
//! token, seed 000's queue routes, /healthz and /metrics.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use blender_session_manager::api::http;
use blender_session_manager::mock_blender::MockAction;
use blender_session_manager::server;
use serde_json::{json, Value};
use support::{eventually, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// A small HTTP/1.1 client over raw TCP (one request per connection).

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The error object of an error reply, checked against its status.
    fn error(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        let e = v["error"].clone();
        assert!(e["code"].is_i64(), "{v}");
        assert!(e["message"].is_string(), "{v}");
        assert!(e["data"]["kind"].is_string(), "{v}");
        e
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&body[..end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    token: Option<String>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, token: None }
    }

    fn with_token(addr: SocketAddr, token: &str) -> Client {
        Client {
            addr,
            token: Some(token.to_string()),
        }
    }

    async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
            .await
            .expect("a reply within 60 s")
            .unwrap();
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&buf)));
        let head = std::str::from_utf8(&buf[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let rest = &buf[split + 4..];
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            match headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                Some((_, n)) => rest[..n.parse::<usize>().unwrap()].to_vec(),
                None => rest.to_vec(),
            }
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.raw("GET", path, &[], b"").await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.raw("DELETE", path, &[], b"").await
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> Reply {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.raw(
            method,
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, body).await
    }

    /// A 2xx reply's JSON body (panics with the body otherwise).
    async fn ok(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let r = match body {
            Some(b) => self.send(method, path, b).await,
            None => self.raw(method, path, &[], b"").await,
        };
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    }

    async fn create(&self) -> String {
        let v = self.ok("POST", "/v1/sessions", None, 201).await;
        v["session_id"].as_str().unwrap().to_string()
    }
}

fn client(h: &Harness) -> Client {
    Client::new(h.server.http_addr)
}

fn is_iso(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.contains('T')
}

// ---------------------------------------------------------------------------
// The Prometheus text exposition, parsed.

#[derive(Debug, Default)]
struct Exposition {
    /// family name → type
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("closing quote");
            match c {
                '\\' => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(name.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

fn parse_exposition(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            e.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("closing brace"))),
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| e.types.get(*f).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(
            e.types.contains_key(family),
            "sample {name} has no # TYPE line before it"
        );
        e.samples.push((name.to_string(), labels, value));
    }
    e
}

impl Exposition {
    /// The value of the sample `name` whose labels include all of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    /// A histogram's buckets `(le, count)` in order, for one label set.
    fn buckets(&self, family: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let name = format!("{family}_bucket");
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| {
                let le = match l["le"].as_str() {
                    "+Inf" => f64::INFINITY,
                    s => s.parse().unwrap(),
                };
                (le, *v)
            })
            .collect()
    }
}

async fn scrape(c: &Client) -> Exposition {
    let r = c.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_exposition(&r.text())
}

const LATENCY: &str = "session_manager_command_duration_seconds";

// ---------------------------------------------------------------------------
// Health, status, tools, queue.

#[tokio::test]
async fn healthz_answers_ok_with_a_little_status() {
    let h = Harness::start().await;
    let c = client(&h);
    c.create().await;
    let v = c.ok("GET", "/healthz", None, 200).await;
    assert_eq!(v["status"], "ok");
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["jobs_pending"], 0);
    assert_eq!(v["queue_capacity"], 100);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn healthz_answers_503_draining_once_shutdown_began_and_the_port_then_closes() {
    use tower::ServiceExt;
    let h = Harness::start().await;
    let router = http::router(h.server.manager.clone());
    h.server.manager.shutdown_token().cancel();
    let req = axum::http::Request::get("/healthz")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"status": "draining"})
    );
    // The server stops accepting with the other listeners.
    let Harness {
        mock: _mock,
        server,
    } = h;
    let addr = server.http_addr;
    tokio::time::timeout(
        Duration::from_secs(30),
        server.shutdown(Duration::from_secs(5)),
    )
    .await
    .expect("shutdown finishes");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the HTTP port still accepts after shutdown"
    );
}

#[tokio::test]
async fn status_tools_and_queue_bodies_are_the_json_rpc_results() {
    let h = Harness::start().await;
    let c = client(&h);
    let mut rpc = h.rpc().await;
    let tools = c.ok("GET", "/v1/tools", None, 200).await;
    assert_eq!(tools, rpc.ok("list_tools", json!({})).await);
    assert!(tools.as_array().unwrap().len() >= 4);
    let queue = c.ok("GET", "/v1/queue", None, 200).await;
    assert_eq!(queue, rpc.ok("get_queue_status", json!({})).await);
    assert_eq!(queue["capacity"], 100);
    let status = c.ok("GET", "/v1/status", None, 200).await;
    assert_eq!(
        status["listeners"]["http"],
        h.server.http_addr.to_string(),
        "{status}"
    );
    assert_eq!(
        status["listeners"]["jsonrpc"],
        h.server.rpc_addr.to_string()
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
}

// ---------------------------------------------------------------------------
// Sessions.

#[tokio::test]
async fn sessions_are_created_listed_shown_and_closed() {
    let h = Harness::start().await;
    let c = client(&h);
    let created = c
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"metadata": {"user": "ada"}})),
            201,
        )
        .await;
    let id = created["session_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("scene-") && id.len() == 30, "{id}");
    assert_eq!(created["metadata"]["user"], "ada");
    assert_eq!(created["blender"]["connected"], true);
    assert!(
        created["created_at"].is_f64(),
        "Unix floats off the seed routes"
    );
    // No body at all is fine too.
    let other = c.create().await;

    let listed = c.ok("GET", "/v1/sessions", None, 200).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str(), other.as_str()]);

    let mut rpc = h.rpc().await;
    let mut via_http = c.ok("GET", &format!("/v1/sessions/{id}"), None, 200).await;
    let mut via_rpc = rpc.ok("get_session_info", json!({"session_id": id})).await;
    for v in [&mut via_http, &mut via_rpc] {
        v.as_object_mut().unwrap().remove("idle_seconds");
    }
    assert_eq!(via_http, via_rpc);

    let closed = c
        .ok("DELETE", &format!("/v1/sessions/{id}"), None, 200)
        .await;
    assert_eq!(closed, json!({"closed": true}));
    let e = c.get(&format!("/v1/sessions/{id}")).await.error(404);
    assert_eq!(e["code"], -32001);
    assert_eq!(e["data"]["kind"], "session_not_found");
    assert_eq!(e["data"]["session_id"], id);
    assert_eq!(e["message"], format!("Session not found: {id}"));
    c.delete(&format!("/v1/sessions/{id}")).await.error(404);
    // History stays readable after the close.
    c.ok("GET", &format!("/v1/sessions/{id}/history"), None, 200)
        .await;
}

#[tokio::test]
async fn commands_run_and_blender_errors_are_results() {
    let h = Harness::start().await;
    let c = client(&h);
    let id = c.create().await;
    let path = format!("/v1/sessions/{id}/commands");
    let v = c
        .ok(
            "POST",
            &path,
            Some(json!({"command_type": "execute_code", "params": {"code": "print hi"}})),
            200,
        )
        .await;
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["result"], json!({"executed": true, "result": "hi\n"}));
    assert_eq!(v["seq"], 1);
    assert!(v["duration"].is_f64());
    assert!(v["job_id"].as_str().unwrap().starts_with("job-"));
    let v = c
        .ok(
            "POST",
            &path,
            Some(json!({"command_type": "get_object_info", "params": {"name": "Nope"}, "session_id": id})),
            200,
        )
        .await;
    assert_eq!(v["status"], "error");
    assert_eq!(v["message"], "Object not found: Nope");
    let sent = h.mock.requests_of("execute_code");
    assert_eq!(sent[0]["session_id"], id.as_str());

    // A body naming another session is refused, not silently rerouted.
    let e = c
        .post(
            &path,
            json!({"command_type": "ping", "session_id": "scene-other"}),
        )
        .await
        .error(400);
    assert_eq!(e["data"]["param"], "session_id");
    // The unknown-param rule of JSON-RPC applies to bodies too.
    let e = c
        .post(&path, json!({"command_type": "ping", "wiat": 1}))
        .await
        .error(400);
    assert_eq!(e["message"], "Invalid params: wiat: unknown parameter");
    let e = c.post(&path, json!({"params": {}})).await.error(400);
    assert_eq!(e["message"], "Invalid params: command_type: missing");
    let e = c
        .post(
            "/v1/sessions/scene-20200101-000000-00000000/commands",
            json!({"command_type": "ping"}),
        )
        .await
        .error(404);
    assert_eq!(e["data"]["kind"], "session_not_found");
}

#[tokio::test]
async fn a_command_past_its_wait_answers_pending_and_its_job_finishes() {
    let h = Harness::start().await;
    h.mock.once(
        "slow",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let c = client(&h);
    let id = c.create().await;
    let v = c
        .ok(
            "POST",
            &format!("/v1/sessions/{id}/commands"),
            Some(json!({"command_type": "slow", "wait": 0})),
            200,
        )
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    let job = v["job_id"].as_str().unwrap();
    let r = c
        .ok("GET", &format!("/v1/jobs/{job}/result?wait=10"), None, 200)
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"]["status"], "success");
    assert_eq!(r["result"]["result"]["command"], "slow");
}

#[tokio::test]
async fn history_state_and_snapshots() {
    let h = Harness::start().await;
    let c = client(&h);
    let id = c.create().await;
    for code in ["print a", "print b", "print c"] {
        c.ok(
            "POST",
            &format!("/v1/sessions/{id}/commands"),
            Some(json!({"command_type": "execute_code", "params": {"code": code}})),
            200,
        )
        .await;
    }
    let all = c
        .ok("GET", &format!("/v1/sessions/{id}/history"), None, 200)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let mut rpc = h.rpc().await;
    assert_eq!(
        all,
        rpc.ok("get_session_history", json!({"session_id": id}))
            .await
    );
    let last = c
        .ok(
            "GET",
            &format!("/v1/sessions/{id}/history?limit=1"),
            None,
            200,
        )
        .await;
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0]["seq"], 3);
    assert_eq!(last[0]["params"]["code"], "print c");
    let since = c
        .ok(
            "GET",
            &format!("/v1/sessions/{id}/history?since_seq=1&limit=10"),
            None,
            200,
        )
        .await;
    let seqs: Vec<u64> = since
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let e = c
        .get(&format!("/v1/sessions/{id}/history?limit=lots"))
        .await
        .error(400);
    assert_eq!(
        e["message"],
        "Invalid params: limit: expected a non-negative integer"
    );
    let e = c
        .get(&format!("/v1/sessions/{id}/history?limt=1"))
        .await
        .error(400);
    assert_eq!(e["data"]["kind"], "invalid_params");

    let state = c
        .ok(
            "PATCH",
            &format!("/v1/sessions/{id}/state"),
            Some(json!({"state": {"mood": "calm"}})),
            200,
        )
        .await;
    assert_eq!(state["mood"], "calm");
    assert_eq!(state["last_command"], "execute_code");

    let snap = c
        .ok("POST", &format!("/v1/sessions/{id}/snapshots"), None, 201)
        .await;
    assert_eq!(snap["session_id"], id.as_str());
    let snaps = c
        .ok("GET", &format!("/v1/sessions/{id}/snapshots"), None, 200)
        .await;
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["snapshot_id"], snap["snapshot_id"]);
}

// ---------------------------------------------------------------------------
// Jobs.

#[tokio::test]
async fn jobs_are_submitted_read_waited_on_listed_and_cancelled() {
    let h = Harness::start().await;
    let c = client(&h);
    let id = c.create().await;
    let sub = c
        .ok(
            "POST",
            "/v1/jobs",
            Some(
                json!({"session_id": id, "command_type": "get_scene_info", "metadata": {"tag": 7}}),
            ),
            202,
        )
        .await;
    assert_eq!(sub["status"], "pending");
    let job = sub["job_id"].as_str().unwrap().to_string();
    assert_eq!(sub, json!({"job_id": job, "status": "pending"}));
    let result = c
        .ok("GET", &format!("/v1/jobs/{job}/result?wait=10"), None, 200)
        .await;
    assert_eq!(result["status"], "completed");
    assert_eq!(result["result"]["result"]["name"], "Scene");
    let record = c.ok("GET", &format!("/v1/jobs/{job}"), None, 200).await;
    let mut rpc = h.rpc().await;
    assert_eq!(record, rpc.ok("get_job", json!({"job_id": job})).await);
    assert_eq!(record["type"], "get_scene_info");
    assert_eq!(record["metadata"]["tag"], 7);
    assert!(record["finished_at"].is_f64());

    // A batch.
    let sub = c
        .ok(
            "POST",
            "/v1/jobs",
            Some(json!({"session_id": id, "commands": [
                {"command_type": "execute_code", "params": {"code": "print one"}},
                {"command_type": "get_scene_info"}
            ]})),
            202,
        )
        .await;
    let batch = sub["job_id"].as_str().unwrap().to_string();
    let result = c
        .ok(
            "GET",
            &format!("/v1/jobs/{batch}/result?wait=10"),
            None,
            200,
        )
        .await;
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["results"].as_array().unwrap().len(), 2);
    assert_eq!(result["results"][0]["result"]["result"], "one\n");

    let listed = c
        .ok("GET", &format!("/v1/jobs?session_id={id}"), None, 200)
        .await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![batch.as_str(), job.as_str()], "newest first");
    let e = c.get("/v1/jobs?status=lost").await.error(400);
    assert_eq!(e["data"]["param"], "status");

    // Cancel a pending job: hold the session with a command that does not answer.
    h.mock.once("hold", MockAction::NoReply);
    c.ok(
        "POST",
        "/v1/jobs",
        Some(json!({"session_id": id, "command_type": "hold"})),
        202,
    )
    .await;
    let queued = c
        .ok(
            "POST",
            "/v1/jobs",
            Some(json!({"session_id": id, "command_type": "ping"})),
            202,
        )
        .await;
    let queued = queued["job_id"].as_str().unwrap();
    let cancelled = c
        .ok("DELETE", &format!("/v1/jobs/{queued}"), None, 200)
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel"], "removed");
    assert_eq!(cancelled["id"], queued);

    let e = c.get("/v1/jobs/job-nope").await.error(404);
    assert_eq!(e["code"], -32005);
    assert_eq!(e["data"]["kind"], "job_not_found");
    c.get("/v1/jobs/job-nope/result").await.error(404);
    c.delete("/v1/jobs/job-nope").await.error(404);
    let e = c
        .post(
            "/v1/jobs",
            json!({"session_id": "scene-gone", "command_type": "ping"}),
        )
        .await
        .error(404);
    assert_eq!(e["data"]["kind"], "session_not_found");
}

// ---------------------------------------------------------------------------
// Errors.

#[tokio::test]
async fn malformed_bodies_unknown_routes_and_wrong_methods() {
    let h = Harness::start_with(|c| c.max_frame_bytes = 2048).await;
    let c = client(&h);
    let id = c.create().await;
    let path = format!("/v1/sessions/{id}/commands");
    let e = c
        .raw(
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            b"{\"command_type\":",
        )
        .await
        .error(400);
    assert_eq!(e["code"], -32700);
    assert_eq!(e["data"]["kind"], "parse_error");
    assert!(e["message"].as_str().unwrap().starts_with("Parse error: "));
    let e = c.raw("POST", &path, &[], b"[1, 2]").await.error(400);
    assert_eq!(e["data"]["kind"], "invalid_request");
    let e = c.raw("POST", &path, &[], b"").await.error(400);
    assert_eq!(e["data"]["kind"], "invalid_request");
    let e = c.raw("POST", "/mcp", &[], b"nope").await.error(400);
    assert_eq!(e["data"]["kind"], "parse_error");

    // Bodies are limited to --max-frame-bytes.
    let big = json!({"command_type": "execute_code", "params": {"code": "x".repeat(4096)}});
    let e = c.post(&path, big).await.error(413);
    assert_eq!(e["code"], -32006);
    assert_eq!(e["message"], "Message exceeds 2048 bytes");
    assert_eq!(e["data"]["kind"], "too_large");

    let e = c.get("/v2/nothing").await.error(404);
    assert_eq!(e["data"]["kind"], "method_not_found");
    assert_eq!(e["message"], "Method not found: GET /v2/nothing");
    let e = c.raw("PUT", "/v1/sessions", &[], b"").await.error(405);
    assert_eq!(e["data"]["kind"], "method_not_found");
    // The session still works after all that.
    c.ok("POST", &path, Some(json!({"command_type": "ping"})), 200)
        .await;
}

#[tokio::test]
async fn a_full_queue_is_429_with_retry_after() {
    let h = Harness::start_with(|c| c.max_queue = 1).await;
    h.mock.always("hold", MockAction::NoReply);
    let c = client(&h);
    let id = c.create().await;
    let first = c
        .ok(
            "POST",
            "/v1/jobs",
            Some(json!({"session_id": id, "command_type": "hold"})),
            202,
        )
        .await;
    let first = first["job_id"].as_str().unwrap().to_string();
    // Once it runs, it no longer counts against the queue.
    eventually("the first job to start", async || {
        let r = c.get(&format!("/v1/jobs/{first}")).await.json();
        (r["status"] == "processing").then_some(())
    })
    .await;
    c.ok(
        "POST",
        "/v1/jobs",
        Some(json!({"session_id": id, "command_type": "ping"})),
        202,
    )
    .await;
    let r = c
        .post(
            "/v1/jobs",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    let e = r.error(429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(e["code"], -32004);
    assert_eq!(e["data"]["kind"], "queue_full");
    assert_eq!(e["message"], "Queue full (1/1)");
    assert_eq!(e["data"]["capacity"], 1);
    // send_command and POST /mcp are refused the same way.
    let r = c
        .post(
            &format!("/v1/sessions/{id}/commands"),
            json!({"command_type": "ping"}),
        )
        .await;
    r.error(429);
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = c
        .post(
            "/mcp",
            json!({"command": "print x", "metadata": {"session_id": id}}),
        )
        .await;
    r.error(429);
    // A session POST /mcp created for a refused task is closed again.
    let before = c.ok("GET", "/v1/sessions", None, 200).await;
    c.post("/mcp", json!({"command": "print x", "async": true}))
        .await
        .error(429);
    let after = c.ok("GET", "/v1/sessions", None, 200).await;
    assert_eq!(
        before.as_array().unwrap().len(),
        after.as_array().unwrap().len()
    );
}

#[tokio::test]
async fn blender_unreachable_is_502_and_session_limit_503() {
    let h = Harness::start_with(|c| c.max_sessions = 1).await;
    let c = client(&h);
    let id = c.create().await;
    let e = c.post("/v1/sessions", json!({})).await.error(503);
    assert_eq!(e["data"]["kind"], "capacity");
    h.mock.kill().await;
    let r = c
        .post(
            &format!("/v1/sessions/{id}/commands"),
            json!({"command_type": "ping"}),
        )
        .await;
    let e = r.error(r.status);
    assert!(
        [502, 504].contains(&r.status),
        "a dead backend is a gateway error: {} {e}",
        r.status
    );
    assert!(
        ["blender_unavailable", "blender_disconnected"]
            .contains(&e["data"]["kind"].as_str().unwrap()),
        "{e}"
    );
}

#[tokio::test]
async fn the_token_guards_every_route_but_healthz() {
    let h = Harness::start_with(|c| c.token = Some("s3cret".into())).await;
    let anon = client(&h);
    let wrong = Client::with_token(h.server.http_addr, "guess");
    let right = Client::with_token(h.server.http_addr, "s3cret");

    let r = anon.get("/v1/sessions").await;
    let e = r.error(401);
    assert_eq!(e["code"], -32007);
    assert_eq!(e["data"]["kind"], "unauthorized");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let e = wrong.get("/v1/sessions").await.error(401);
    assert_eq!(e["message"], "Unauthorized: wrong token");
    anon.post("/mcp", json!({"command": "print x"}))
        .await
        .error(401);
    anon.raw("POST", "/mcp/status", &[], b"").await.error(401);
    anon.get("/metrics").await.error(401);
    anon.get("/no/such/route").await.error(401);
    let basic = anon
        .raw(
            "GET",
            "/v1/sessions",
            &[("Authorization", "Basic czNjcmV0")],
            b"",
        )
        .await;
    basic.error(401);
    assert!(
        h.server.manager.list_sessions().is_empty(),
        "nothing ran unauthenticated"
    );

    assert_eq!(anon.get("/healthz").await.status, 200);
    assert_eq!(right.get("/v1/sessions").await.status, 200);
    right.create().await;
    assert_eq!(right.get("/metrics").await.status, 200);
    let lower = anon
        .raw(
            "GET",
            "/v1/sessions",
            &[("Authorization", "bearer s3cret")],
            b"",
        )
        .await;
    assert_eq!(lower.status, 200);
    assert_eq!(lower.json().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_http_listen_that_cannot_bind_names_the_flag_and_address() {
    let mock = blender_session_manager::mock_blender::MockBlender::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut cfg = support::config(mock.backend());
    cfg.http_listen = addr;
    let e = server::start(cfg).await.err().expect("refused").to_string();
    assert!(
        e.starts_with(&format!("--http-listen {addr}: cannot listen")),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Seed 000's routes.

#[tokio::test]
async fn seed_async_task_is_queued_then_polled_to_completed() {
    let h = Harness::start().await;
    let c = client(&h);
    let v = c
        .ok(
            "POST",
            "/mcp",
            Some(
                json!({"command": "print hello", "type": "execute", "async": true, "metadata": {}}),
            ),
            200,
        )
        .await;
    assert_eq!(v["status"], "queued");
    let task_id = v["task_id"].as_str().unwrap().to_string();
    let session = v["session_id"].as_str().unwrap().to_string();
    assert!(
        h.server.manager.session(&session).is_ok(),
        "a session was made"
    );
    let task = eventually("the task to complete", async || {
        let t = c
            .ok("GET", &format!("/mcp/task/{task_id}"), None, 200)
            .await;
        let s = t["status"].as_str().unwrap().to_string();
        assert!(
            ["pending", "processing", "completed"].contains(&s.as_str()),
            "{t}"
        );
        (s == "completed").then_some(t)
    })
    .await;
    assert_eq!(task["id"], task_id.as_str());
    assert_eq!(task["type"], "execute");
    assert!(is_iso(&task["created_at"]), "{task}");
    assert!(is_iso(&task["started_at"]), "{task}");
    assert!(is_iso(&task["finished_at"]), "{task}");
    assert_eq!(
        task["result"],
        json!({"status": "success", "result": {"executed": true, "result": "hello\n"}})
    );
    assert_eq!(task["session_id"], session.as_str());
    assert_eq!(task["error"], Value::Null);
    let e = c.get("/mcp/task/job-unknown").await.error(404);
    assert_eq!(e["data"]["kind"], "job_not_found");
}

#[tokio::test]
async fn seed_sync_execute_and_other_types() {
    let h = Harness::start().await;
    let c = client(&h);
    let id = c.create().await;
    // No `type` means execute; no `async` means wait for the result.
    let t = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"command": "add Sphere", "metadata": {"session_id": id, "who": "me"}})),
            200,
        )
        .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["type"], "execute");
    assert!(is_iso(&t["created_at"]), "{t}");
    assert_eq!(t["session_id"], id.as_str());
    assert_eq!(t["metadata"], json!({"who": "me"}));
    assert!(h
        .mock
        .requests_of("execute_code")
        .iter()
        .any(|r| r["params"]["code"] == "add Sphere" && r["session_id"] == id.as_str()));

    // Any other type is a command type with metadata.params as its params.
    let t = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"type": "get_object_info", "metadata": {"session_id": id, "params": {"name": "Sphere"}}})),
            200,
        )
        .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["type"], "get_object_info");
    assert_eq!(t["result"]["result"]["name"], "Sphere");
    // A Blender error fails the task.
    let t = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"type": "get_object_info", "metadata": {"session_id": id, "params": {"name": "Nope"}}})),
            200,
        )
        .await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["kind"], "blender_error");

    let e = c.post("/mcp", json!({"type": "execute"})).await.error(400);
    assert_eq!(e["data"]["param"], "command");
    let e = c
        .post("/mcp", json!({"command": "print x", "asnyc": true}))
        .await
        .error(400);
    assert_eq!(e["message"], "Invalid params: asnyc: unknown parameter");
    let e = c
        .post(
            "/mcp",
            json!({"command": "print x", "metadata": {"session_id": "scene-none"}}),
        )
        .await
        .error(404);
    assert_eq!(e["data"]["kind"], "session_not_found");
}

#[tokio::test]
async fn seed_sync_call_past_the_sync_wait_answers_the_task_to_poll() {
    let h = Harness::start_with(|c| c.sync_wait = Duration::from_millis(100)).await;
    h.mock.once(
        "slow",
        MockAction::Delay(Duration::from_millis(600), Box::new(MockAction::Default)),
    );
    let c = client(&h);
    let t = c
        .ok("POST", "/mcp", Some(json!({"type": "slow"})), 200)
        .await;
    assert_eq!(t["status"], "processing", "{t}");
    assert_eq!(t["finished_at"], Value::Null);
    let id = t["id"].as_str().unwrap().to_string();
    eventually("the slow task to complete", async || {
        let t = c.ok("GET", &format!("/mcp/task/{id}"), None, 200).await;
        (t["status"] == "completed").then_some(())
    })
    .await;
}

#[tokio::test]
async fn seed_batch_runs_code_strings_and_command_objects() {
    let h = Harness::start().await;
    let c = client(&h);
    let t = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"type": "batch", "metadata": {"commands": [
                "add Cylinder",
                "print two",
                {"command_type": "get_object_info", "params": {"name": "Cylinder"}}
            ]}})),
            200,
        )
        .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["type"], "batch");
    let results = t["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["result"]["result"], "two\n");
    assert_eq!(results[2]["result"]["name"], "Cylinder");
    let session = t["session_id"].as_str().unwrap();
    let history = c
        .ok("GET", &format!("/v1/sessions/{session}/history"), None, 200)
        .await;
    let commands: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        ["execute_code", "execute_code", "get_object_info"]
    );
    assert!(history
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["job_id"] == t["id"]));
    let e = c
        .post(
            "/mcp",
            json!({"type": "batch", "metadata": {"commands": [1]}}),
        )
        .await
        .error(400);
    assert_eq!(e["data"]["param"], "metadata.commands[0]");
    c.post("/mcp", json!({"type": "batch"})).await.error(400);
}

#[tokio::test]
async fn seed_queue_status_has_the_seed_shape_with_iso_times() {
    let h = Harness::start().await;
    let c = client(&h);
    let id = c.create().await;
    let done = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"command": "print x", "metadata": {"session_id": id}})),
            200,
        )
        .await;
    assert_eq!(done["status"], "completed");
    let failed = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"type": "get_object_info", "metadata": {"session_id": id, "params": {"name": "Nope"}}})),
            200,
        )
        .await;
    assert_eq!(failed["status"], "failed");
    h.mock.once("hold", MockAction::NoReply);
    let running = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"type": "hold", "async": true, "metadata": {"session_id": id}})),
            200,
        )
        .await;
    let running = running["task_id"].as_str().unwrap().to_string();
    let queued = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"command": "print later", "async": true, "metadata": {"session_id": id}})),
            200,
        )
        .await;
    let queued = queued["task_id"].as_str().unwrap().to_string();
    let cancelled = c
        .ok(
            "POST",
            "/mcp",
            Some(json!({"command": "print never", "async": true, "metadata": {"session_id": id}})),
            200,
        )
        .await;
    let cancelled = cancelled["task_id"].as_str().unwrap().to_string();
    c.ok("DELETE", &format!("/v1/jobs/{cancelled}"), None, 200)
        .await;
    eventually("the held task to run", async || {
        let t = c
            .ok("GET", &format!("/mcp/task/{running}"), None, 200)
            .await;
        (t["status"] == "processing").then_some(())
    })
    .await;

    let s = c.ok("POST", "/mcp/status", None, 200).await;
    assert_eq!(s["queue_size"], 2, "{s}");
    assert_eq!(s["pending"], 1);
    assert_eq!(s["processing"], 1);
    assert_eq!(s["completed"], 1);
    assert_eq!(s["failed"], 2, "failed counts the cancelled task too: {s}");
    assert_eq!(s["cancelled"], 1);
    assert_eq!(s["capacity"], 100);
    assert_eq!(s["current_task"], running.as_str());
    let tasks = s["tasks"].as_object().unwrap();
    assert_eq!(tasks.len(), 5);
    for t in tasks.values() {
        assert!(is_iso(&t["created_at"]), "{t}");
        assert_eq!(t.as_object().unwrap().len(), 3, "{t}");
    }
    assert_eq!(tasks[&running]["status"], "processing");
    assert_eq!(tasks[&running]["type"], "hold");
    assert_eq!(tasks[&queued]["status"], "pending");
    assert_eq!(tasks[&queued]["type"], "execute");
    assert_eq!(tasks[&cancelled]["status"], "failed");
    let t = c
        .ok("GET", &format!("/mcp/task/{cancelled}"), None, 200)
        .await;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["job_status"], "cancelled");
    assert_eq!(t["error"]["kind"], "cancelled");
    // A seed client posts with no body, or with an empty object.
    let r = c.post("/mcp/status", json!({})).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------
// Metrics.

#[tokio::test]
async fn metrics_count_each_command_once_and_gauges_follow_the_manager() {
    let h = Harness::start_with(|c| c.max_queue = 42).await;
    let c = client(&h);
    let a = c.create().await;
    let b = c.create().await;

    let before = scrape(&c).await;
    let probe = [("command_type", "metric_probe")];
    let count_before = before
        .value(&format!("{LATENCY}_count"), &probe)
        .unwrap_or(0.0);
    let success_before = before
        .value("session_manager_commands_total", &[("status", "success")])
        .unwrap();
    let waits_before = before
        .value("session_manager_queue_wait_seconds_count", &[])
        .unwrap();
    assert_eq!(before.value("session_manager_sessions", &[]), Some(2.0));
    assert_eq!(
        before.value("session_manager_queue_capacity", &[]),
        Some(42.0)
    );
    assert_eq!(
        before.value("session_manager_backend_connections", &[]),
        Some(2.0)
    );
    assert_eq!(before.types[LATENCY], "histogram");
    assert_eq!(before.types["session_manager_commands_total"], "counter");
    assert_eq!(before.types["session_manager_sessions"], "gauge");
    assert_eq!(before.types["session_manager_jobs"], "gauge");

    let v = c
        .ok(
            "POST",
            &format!("/v1/sessions/{a}/commands"),
            Some(json!({"command_type": "metric_probe"})),
            200,
        )
        .await;
    assert_eq!(v["status"], "success");

    let after = scrape(&c).await;
    let count_after = after.value(&format!("{LATENCY}_count"), &probe).unwrap();
    assert_eq!(count_after, count_before + 1.0, "exactly one more command");
    let buckets = after.buckets(LATENCY, &probe);
    assert!(buckets.len() > 5, "{buckets:?}");
    for pair in buckets.windows(2) {
        assert!(pair[0].0 < pair[1].0, "le in increasing order: {buckets:?}");
        assert!(
            pair[0].1 <= pair[1].1,
            "bucket counts monotonic: {buckets:?}"
        );
    }
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count_after));
    let sum = after.value(&format!("{LATENCY}_sum"), &probe).unwrap();
    assert!(sum > 0.0 && sum < 60.0, "{sum}");
    assert_eq!(
        after.value("session_manager_commands_total", &[("status", "success")]),
        Some(success_before + 1.0)
    );
    assert_eq!(
        after.value("session_manager_queue_wait_seconds_count", &[]),
        Some(waits_before + 1.0)
    );
    assert_eq!(
        after.value("session_manager_jobs", &[("status", "completed")]),
        Some(1.0)
    );
    assert_eq!(
        after.value("session_manager_jobs", &[("status", "pending")]),
        Some(0.0)
    );
    assert_eq!(after.value("session_manager_backend_up", &[]), Some(1.0));

    // A Blender error reply counts as status error under its own command type.
    c.ok(
        "POST",
        &format!("/v1/sessions/{a}/commands"),
        Some(json!({"command_type": "get_object_info", "params": {"name": "Nope"}})),
        200,
    )
    .await;
    let m = scrape(&c).await;
    assert_eq!(
        m.value(
            &format!("{LATENCY}_count"),
            &[("command_type", "get_object_info")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("session_manager_commands_total", &[("status", "error")]),
        Some(1.0)
    );
    // A caller-chosen oddity does not become a label value of its own.
    c.ok(
        "POST",
        &format!("/v1/sessions/{a}/commands"),
        Some(json!({"command_type": "odd\"type\nwith newline"})),
        200,
    )
    .await;
    let m = scrape(&c).await;
    assert_eq!(
        m.value(&format!("{LATENCY}_count"), &[("command_type", "other")]),
        Some(1.0)
    );

    c.ok("DELETE", &format!("/v1/sessions/{b}"), None, 200)
        .await;
    let m = scrape(&c).await;
    assert_eq!(m.value("session_manager_sessions", &[]), Some(1.0));
    assert_eq!(
        m.value("session_manager_sessions", &[]),
        Some(h.server.manager.list_sessions().len() as f64)
    );
}

#[tokio::test]
async fn metrics_count_queue_waits_of_jobs_that_waited() {
    let h = Harness::start().await;
    h.mock.once(
        "slow",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let c = client(&h);
    let id = c.create().await;
    let submit = |command: &'static str| {
        let c = c.clone();
        let id = id.clone();
        async move {
            let v = c
                .ok(
                    "POST",
                    "/v1/jobs",
                    Some(json!({"session_id": id, "command_type": command})),
                    202,
                )
                .await;
            v["job_id"].as_str().unwrap().to_string()
        }
    };
    submit("slow").await;
    let behind = submit("ping").await;
    c.ok(
        "GET",
        &format!("/v1/jobs/{behind}/result?wait=10"),
        None,
        200,
    )
    .await;
    let m = scrape(&c).await;
    assert_eq!(
        m.value("session_manager_queue_wait_seconds_count", &[]),
        Some(2.0)
    );
    let waited = m
        .value("session_manager_queue_wait_seconds_sum", &[])
        .unwrap();
    assert!(
        waited >= 0.2,
        "the job behind the slow one waited: {waited}"
    );
    let buckets = m.buckets("session_manager_queue_wait_seconds", &[]);
    for pair in buckets.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "{buckets:?}");
    }
    // Under 0.1 s: only the first job.
    let fast = buckets.iter().find(|(le, _)| *le == 0.1).unwrap().1;
    assert_eq!(fast, 1.0, "{buckets:?}");
}
