//! Several backends behind one manager: placement, health probes, single-flight
//! reconnects, reload, drain, pause/resume and kill — against in-process mocks.

mod support;

use std::sync::Arc;
use std::time::Duration;

use blender_session_manager::config::{BackendSpec, Config, ConfigError};
use blender_session_manager::mock_blender::{MockAction, MockBlender};
use blender_session_manager::server::{self, Server};
use blender_session_manager::session::DisconnectReason;
use serde_json::{json, Value};
use support::{eventually, Rpc};
use tokio::time::Instant;

/// Three (or `n`) mocks named a, b, c… with the given weights.
async fn mocks(n: usize) -> Vec<MockBlender> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(MockBlender::start().await);
    }
    out
}

fn specs(mocks: &[MockBlender], weights: &[u32]) -> Vec<BackendSpec> {
    mocks
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (m, w))| BackendSpec {
            name: ((b'a' + i as u8) as char).to_string(),
            address: m.backend(),
            weight: *w,
        })
        .collect()
}

async fn start(backends: Vec<BackendSpec>, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = support::config(backends[0].address.clone());
    cfg.backends = backends;
    tweak(&mut cfg);
    server::start(cfg).await.expect("manager starts")
}

fn backend_status(status: &Value, name: &str) -> Value {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {status}"))
        .clone()
}

async fn status_of(rpc: &mut Rpc, name: &str) -> Value {
    let s = rpc.ok("get_manager_status", json!({})).await;
    backend_status(&s, name)
}

async fn send(rpc: &mut Rpc, id: &str, command: &str, params: Value) -> Result<Value, Value> {
    rpc.call(
        "send_command",
        json!({"session_id": id, "command_type": command, "params": params}),
    )
    .await
}

async fn create_on(rpc: &mut Rpc, backend: &str) -> String {
    let info = rpc.ok("create_session", json!({"backend": backend})).await;
    assert_eq!(info["backend"], backend, "{info}");
    info["session_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn placement_balances_by_weight_pins_sessions_and_names_unknown_backends() {
    let m = mocks(3).await;
    let server = start(specs(&m, &[1, 2, 1]), |_| {}).await;
    let mut rpc = Rpc::connect(server.rpc_addr).await;
    let mut placed = Vec::new();
    for _ in 0..8 {
        let info = rpc.ok("create_session", json!({})).await;
        placed.push((
            info["session_id"].as_str().unwrap().to_string(),
            info["backend"].as_str().unwrap().to_string(),
        ));
    }
    let status = rpc.ok("get_manager_status", json!({})).await;
    let counts: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|n| backend_status(&status, n)["sessions"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        [2, 4, 2],
        "weight 2 takes twice the sessions: {status}"
    );
    // Each session's commands reach its own backend, and only that one.
    for (id, backend) in &placed {
        send(&mut rpc, id, "execute_code", json!({"code": "print x"}))
            .await
            .unwrap();
        let i = (backend.as_bytes()[0] - b'a') as usize;
        for (j, mock) in m.iter().enumerate() {
            let seen = mock
                .requests_of("execute_code")
                .iter()
                .any(|r| r["session_id"] == id.as_str());
            assert_eq!(seen, i == j, "session {id} on {backend}, mock {j}");
        }
    }
    // A named backend wins over balance; by name or by address.
    create_on(&mut rpc, "c").await;
    let by_addr = rpc
        .ok(
            "create_session",
            json!({"backend": m[0].backend().to_string()}),
        )
        .await;
    assert_eq!(by_addr["backend"], "a");
    let e = rpc.err("create_session", json!({"backend": "nope"})).await;
    assert_eq!(e["code"], -32602);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("\"nope\"") && msg.contains("a, b, c"), "{msg}");
    // A session refused for capacity takes no place.
    let full = server.manager.registry().max_sessions();
    server
        .manager
        .registry()
        .set_max_sessions(server.manager.registry().len());
    assert_eq!(rpc.err("create_session", json!({})).await["code"], -32008);
    let s = rpc.ok("get_manager_status", json!({})).await;
    let total: u64 = ["a", "b", "c"]
        .iter()
        .map(|n| backend_status(&s, n)["sessions"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 10, "{s}");
    server.manager.registry().set_max_sessions(full);
    // Closing sessions gives their places back.
    for (id, _) in &placed {
        rpc.ok("close_session", json!({"session_id": id})).await;
    }
    eventually("the sessions' places to be given back", async || {
        let s = rpc.ok("get_manager_status", json!({})).await;
        (backend_status(&s, "b")["sessions"] == 0).then_some(())
    })
    .await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_backend_is_marked_down_within_the_probe_window_fails_fast_and_recovers() {
    let m = mocks(2).await;
    let interval = Duration::from_secs(2);
    let failures = 3;
    let timeout = Duration::from_secs(1);
    let server = start(specs(&m, &[1, 1]), |c| {
        c.health_interval = interval;
        c.health_failures = failures;
        c.health_timeout = timeout;
    })
    .await;
    let mut rpc = Rpc::connect(server.rpc_addr).await;
    let id = create_on(&mut rpc, "a").await;
    send(&mut rpc, &id, "get_scene_info", json!({}))
        .await
        .unwrap();
    // The probe uses a connection of its own and `ping`, which the mock lists.
    eventually("a first probe", async || {
        (!m[0].requests_of("ping").is_empty()).then_some(())
    })
    .await;
    assert!(m[0]
        .requests_of("ping")
        .iter()
        .all(|r| r.get("session_id").is_none()));
    let history = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "probes are not history"
    );

    let addr = m[0].addr();
    let mut m = m;
    let dead = m.remove(0);
    let killed_at = Instant::now();
    dead.kill().await;
    drop(dead);
    // Virtual time: poll every 100 ms for up to a minute.
    for _ in 0..600 {
        if status_of(&mut rpc, "a").await["state"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of(&mut rpc, "a").await["state"], "down");
    let took = killed_at.elapsed();
    let window = interval * (failures + 1) + timeout;
    assert!(took <= window, "down after {took:?}, window {window:?}");

    // Its sessions fail at once with -32002, without dialling.
    let attempts = status_of(&mut rpc, "a").await["connect_attempts"].clone();
    let e = send(&mut rpc, &id, "get_scene_info", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], -32002, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("backend a is down"),
        "{e}"
    );
    assert_eq!(status_of(&mut rpc, "a").await["connect_attempts"], attempts);
    // New sessions avoid it; naming it is refused with the reason.
    let info = rpc.ok("create_session", json!({})).await;
    assert_eq!(info["backend"], "b");
    let e = rpc.err("create_session", json!({"backend": "a"})).await;
    assert_eq!(e["code"], -32002);

    // Blender comes back on the same port: the next probe marks it up and the
    // session's next command reconnects.
    let back = MockBlender::start_on(addr).await.unwrap();
    for _ in 0..600 {
        if status_of(&mut rpc, "a").await["state"] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of(&mut rpc, "a").await["state"], "up");
    let r = send(&mut rpc, &id, "get_scene_info", json!({}))
        .await
        .unwrap();
    assert_eq!(r["status"], "success");
    assert_eq!(back.requests_of("get_scene_info").len(), 1);
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn reconnects_are_single_flight_one_attempt_per_backoff_step() {
    let m = mocks(1).await;
    let addr = m[0].addr();
    let server = start(specs(&m, &[1]), |_| {}).await;
    let mut admin = Rpc::connect(server.rpc_addr).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(admin.create().await);
    }
    assert_eq!(status_of(&mut admin, "a").await["connect_attempts"], 20);
    let mut m = m;
    m.remove(0).kill().await;
    eventually("every idle socket to notice", async || {
        let s = admin.ok("get_manager_status", json!({})).await;
        (s["counts"]["backend_connections"] == 0).then_some(())
    })
    .await;

    // Twenty commands at once against a dead Blender: one connect attempt between them.
    let fire = |ids: Vec<String>| {
        let addr = server.rpc_addr;
        async move {
            let calls = ids.into_iter().map(|id| async move {
                let mut rpc = Rpc::connect(addr).await;
                send(&mut rpc, &id, "get_scene_info", json!({})).await
            });
            futures::future::join_all(calls).await
        }
    };
    let outcomes = fire(ids.clone()).await;
    for o in &outcomes {
        assert_eq!(o.as_ref().unwrap_err()["code"], -32002, "{o:?}");
    }
    assert_eq!(status_of(&mut admin, "a").await["connect_attempts"], 21);
    let e = outcomes[19].as_ref().unwrap_err()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("next attempt in"), "{e}");

    // Blender is back; once the backoff has run out, one leads and the rest follow.
    let back = MockBlender::start_on(addr).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    let outcomes = fire(ids.clone()).await;
    for o in &outcomes {
        assert_eq!(o.as_ref().unwrap()["status"], "success", "{o:?}");
    }
    assert_eq!(status_of(&mut admin, "a").await["connect_attempts"], 41);
    assert_eq!(back.connections_accepted(), 20);
    server.shutdown(Duration::from_secs(5)).await;
}

fn loader_returning(
    result: Arc<parking_lot::Mutex<Result<Config, String>>>,
) -> blender_session_manager::manager::ConfigLoader {
    Arc::new(move || result.lock().clone().map_err(ConfigError))
}

#[tokio::test(start_paused = true)]
async fn reload_under_load_changes_the_timeout_for_new_commands_only() {
    let m = mocks(2).await;
    let server = start(specs(&m, &[1, 1]), |c| {
        c.command_timeout = Duration::from_secs(100);
        c.sync_wait = Duration::from_secs(1000);
    })
    .await;
    let running = server.manager.config();
    let mut next = (*running).clone();
    next.command_timeout = Duration::from_secs(5);
    next.max_queue = 7;
    next.backends[1].weight = 3;
    next.listen = "127.0.0.1:1".parse().unwrap();
    let wanted = Arc::new(parking_lot::Mutex::new(Ok(next)));
    server
        .manager
        .set_config_loader(loader_returning(wanted.clone()));

    let mut rpc = Rpc::connect(server.rpc_addr).await;
    let slow = create_on(&mut rpc, "a").await;
    let busy = create_on(&mut rpc, "b").await;
    m[0].always(
        "render",
        MockAction::Delay(Duration::from_secs(50), Box::new(MockAction::Default)),
    );
    // Load: a stream of quick commands on another session throughout.
    let addr = server.rpc_addr;
    let load = tokio::spawn(async move {
        let mut rpc = Rpc::connect(addr).await;
        for i in 0..50 {
            let r = send(&mut rpc, &busy, "get_scene_info", json!({"i": i})).await;
            assert_eq!(r.unwrap()["status"], "success");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let in_flight = {
        let slow = slow.clone();
        tokio::spawn(async move {
            let mut rpc = Rpc::connect(addr).await;
            send(&mut rpc, &slow, "render", json!({})).await
        })
    };
    m[0].wait_for_request("render").await;
    let report = rpc.ok("reload_config", json!({})).await;
    let applied: Vec<&str> = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["setting"].as_str().unwrap())
        .collect();
    assert!(
        applied.contains(&"command_timeout") && applied.contains(&"max_queue"),
        "{report}"
    );
    assert_eq!(report["needs_restart"][0]["setting"], "listen", "{report}");
    assert_eq!(report["backends"]["reweighted"], json!(["b"]));
    assert_eq!(
        server.manager.config().listen,
        running.listen,
        "listen is kept"
    );
    assert_eq!(
        server.manager.config().command_timeout,
        Duration::from_secs(5)
    );
    let s = rpc.ok("get_manager_status", json!({})).await;
    assert_eq!(s["counts"]["queue_capacity"], 7);
    assert_eq!(backend_status(&s, "b")["weight"], 3);

    // The command sent before the reload keeps its 100 s: it finishes at 50 s.
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r["status"], "success", "{r}");
    // One sent after it gets the new 5 s.
    let e = send(&mut rpc, &slow, "render", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], -32003, "{e}");
    assert_eq!(e["data"]["timeout"], 5.0);
    load.await.unwrap();
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_invalid_reload_is_refused_and_the_old_configuration_kept() {
    let m = mocks(1).await;
    let server = start(specs(&m, &[1]), |c| {
        c.command_timeout = Duration::from_secs(77)
    })
    .await;
    let mut rpc = Rpc::connect(server.rpc_addr).await;
    // Without a loader (started in-process, not from `serve`) it says so.
    let e = rpc.err("reload_config", json!({})).await;
    assert_eq!(e["code"], -32600, "{e}");
    let wanted = Arc::new(parking_lot::Mutex::new(Err(
        "manager.toml: unknown key `comand_timeout`".to_string(),
    )));
    server.manager.set_config_loader(loader_returning(wanted));
    let e = rpc.err("reload_config", json!({})).await;
    assert_eq!(e["code"], -32602, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unknown key `comand_timeout`"),
        "{e}"
    );
    assert_eq!(
        server.manager.config().command_timeout,
        Duration::from_secs(77)
    );
    let id = rpc.create().await;
    assert_eq!(
        send(&mut rpc, &id, "get_scene_info", json!({}))
            .await
            .unwrap()["status"],
        "success"
    );
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn drain_refuses_new_sessions_at_once_while_in_flight_commands_complete() {
    let m = mocks(1).await;
    let server = start(specs(&m, &[1]), |c| c.sync_wait = Duration::from_secs(1000)).await;
    let addr = server.rpc_addr;
    let mut rpc = Rpc::connect(addr).await;
    let id = rpc.create().await;
    m[0].once(
        "render",
        MockAction::Delay(Duration::from_secs(20), Box::new(MockAction::Default)),
    );
    let in_flight = {
        let id = id.clone();
        tokio::spawn(async move {
            let mut rpc = Rpc::connect(addr).await;
            send(&mut rpc, &id, "render", json!({})).await
        })
    };
    m[0].wait_for_request("render").await;
    let manager = server.manager.clone();
    let drain_started = Instant::now();
    let drain = tokio::spawn(server.shutdown(Duration::from_secs(30)));
    let e = eventually("new sessions to be refused", async || {
        rpc.call("create_session", json!({})).await.err()
    })
    .await;
    assert_eq!(e["code"], -32009, "{e}");
    let took = drain_started.elapsed();
    assert!(took < Duration::from_millis(100), "refused after {took:?}");
    assert!(manager.status()["draining"].as_bool().unwrap());
    // The command that was running finishes and answers its caller.
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r["status"], "success", "{r}");
    drain.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pause_holds_commands_and_resume_releases_them_in_order() {
    let m = mocks(2).await;
    let server = start(specs(&m, &[1, 1]), |c| {
        c.sync_wait = Duration::from_secs(1000)
    })
    .await;
    let addr = server.rpc_addr;
    let mut admin = Rpc::connect(addr).await;
    let on_a = create_on(&mut admin, "a").await;
    let on_b = create_on(&mut admin, "b").await;

    // Pause one backend: its commands wait, the other's run.
    admin.ok("pause", json!({"backend": "a"})).await;
    assert_eq!(status_of(&mut admin, "a").await["paused"], true);
    let mut held = Vec::new();
    for i in 0..3 {
        let id = on_a.clone();
        held.push(tokio::spawn(async move {
            let mut rpc = Rpc::connect(addr).await;
            send(
                &mut rpc,
                &id,
                "execute_code",
                json!({"code": format!("print {i}")}),
            )
            .await
        }));
        // Queued in this order.
        let id = on_a.clone();
        eventually("the command to be queued", async || {
            let info = admin
                .ok("get_session_info", json!({"session_id": id}))
                .await;
            (info["queued"] == i + 1).then_some(())
        })
        .await;
    }
    let r = send(&mut admin, &on_b, "get_scene_info", json!({}))
        .await
        .unwrap();
    assert_eq!(r["status"], "success");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        m[0].requests_of("execute_code").is_empty(),
        "held while paused"
    );
    assert!(held.iter().all(|h| !h.is_finished()));
    admin.ok("resume", json!({"backend": "a"})).await;
    for h in held {
        assert_eq!(h.await.unwrap().unwrap()["status"], "success");
    }
    let order: Vec<String> = m[0]
        .requests_of("execute_code")
        .iter()
        .map(|r| r["params"]["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, ["print 0", "print 1", "print 2"]);

    // Pause the whole manager: both backends hold.
    admin.ok("pause", json!({})).await;
    assert_eq!(
        admin.ok("get_manager_status", json!({})).await["paused"],
        true
    );
    let waiting = {
        let id = on_b.clone();
        tokio::spawn(async move {
            let mut rpc = Rpc::connect(addr).await;
            send(&mut rpc, &id, "execute_code", json!({"code": "print b"})).await
        })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(m[1].requests_of("execute_code").is_empty());
    admin.ok("resume", json!({})).await;
    assert_eq!(waiting.await.unwrap().unwrap()["status"], "success");
    let e = admin.err("pause", json!({"backend": "zzz"})).await;
    assert_eq!(e["code"], -32602);
    server.shutdown(Duration::from_secs(5)).await;
}

/// The operator's restart: pause a backend, restart its Blender, resume. A command
/// that arrived during the pause must go out over a fresh socket to the new Blender,
/// not over the old one — the session was idle when the pause began, so its task had
/// already taken the command off its queue and was holding it.
#[tokio::test]
async fn a_command_held_by_a_pause_goes_to_the_restarted_blender() {
    let old = MockBlender::start().await;
    let addr = old.addr();
    let server = start(specs(std::slice::from_ref(&old), &[1]), |_| {}).await;
    let rpc_addr = server.rpc_addr;
    let mut admin = Rpc::connect(rpc_addr).await;
    let id = create_on(&mut admin, "a").await;

    admin.ok("pause", json!({"backend": "a"})).await;
    let held = {
        let id = id.clone();
        tokio::spawn(async move {
            let mut rpc = Rpc::connect(rpc_addr).await;
            send(&mut rpc, &id, "execute_code", json!({"code": "print(1)"})).await
        })
    };
    eventually("the command to be held", async || {
        let info = admin
            .ok("get_session_info", json!({"session_id": id}))
            .await;
        (info["queued"] == 1).then_some(())
    })
    .await;

    // Blender restarts on the same port while the command is held.
    old.kill().await;
    drop(old);
    let new = MockBlender::start_on(addr)
        .await
        .expect("the port is free again");
    // The session notices its socket died even though it holds a command.
    eventually("the dead socket to be dropped", async || {
        let info = admin
            .ok("get_session_info", json!({"session_id": id}))
            .await;
        (info["blender"]["connected"] == false).then_some(())
    })
    .await;

    admin.ok("resume", json!({"backend": "a"})).await;
    let r = held.await.unwrap().expect("the held command succeeds");
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(
        new.requests_of("execute_code").len(),
        1,
        "sent to the new Blender"
    );
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn drain_backend_sends_new_sessions_elsewhere_and_keeps_its_own() {
    let m = mocks(2).await;
    let server = start(specs(&m, &[1, 1]), |_| {}).await;
    let mut rpc = Rpc::connect(server.rpc_addr).await;
    let on_a = create_on(&mut rpc, "a").await;
    let st = rpc.ok("drain_backend", json!({"backend": "a"})).await;
    assert_eq!(st["state"], "draining");
    for _ in 0..3 {
        let info = rpc.ok("create_session", json!({})).await;
        assert_eq!(info["backend"], "b");
    }
    let e = rpc.err("create_session", json!({"backend": "a"})).await;
    assert!(e["message"].as_str().unwrap().contains("draining"), "{e}");
    // Its own session still works.
    assert_eq!(
        send(&mut rpc, &on_a, "get_scene_info", json!({}))
            .await
            .unwrap()["status"],
        "success"
    );
    let st = rpc
        .ok("drain_backend", json!({"backend": "a", "drain": false}))
        .await;
    assert_eq!(st["state"], "up");
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn kill_session_abandons_the_running_command_and_says_why_everywhere() {
    let m = mocks(1).await;
    let server = start(specs(&m, &[1]), |c| c.sync_wait = Duration::from_secs(1000)).await;
    let addr = server.rpc_addr;
    let mut rpc = Rpc::connect(addr).await;
    let id = rpc.create().await;
    m[0].once("hang", MockAction::NoReply);
    let waiting = {
        let id = id.clone();
        tokio::spawn(async move {
            let mut rpc = Rpc::connect(addr).await;
            send(&mut rpc, &id, "hang", json!({})).await
        })
    };
    m[0].wait_for_request("hang").await;
    let r = rpc.ok("kill_session", json!({"session_id": id})).await;
    assert_eq!(r["killed"], true);
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e["code"], -32001, "{e}");
    let history = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(history[0]["status"], "cancelled", "{history}");
    assert_eq!(history[0]["error"]["kind"], "killed");
    assert_eq!(
        rpc.err("get_session_info", json!({"session_id": id})).await["code"],
        -32001
    );
    assert_eq!(
        server
            .manager
            .metrics()
            .disconnects(DisconnectReason::Killed),
        2,
        "the session and its socket"
    );
    let e = rpc.err("kill_session", json!({"session_id": id})).await;
    assert_eq!(e["code"], -32001);
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn admin_methods_need_the_token_when_one_is_set() {
    let m = mocks(1).await;
    let server = start(specs(&m, &[1]), |c| c.token = Some("s3cret".into())).await;
    let mut rpc = Rpc::connect(server.rpc_addr).await;
    for (method, params) in [
        ("pause", json!({})),
        ("resume", json!({})),
        ("reload_config", json!({})),
        ("drain_backend", json!({"backend": "a"})),
        ("kill_session", json!({"session_id": "x"})),
    ] {
        let e = rpc.err(method, params).await;
        assert_eq!(e["code"], -32007, "{method}: {e}");
    }
    assert!(!server.manager.pool().pause.is_paused());
    rpc.ok("authenticate", json!({"token": "s3cret"})).await;
    rpc.ok("pause", json!({})).await;
    assert!(server.manager.pool().pause.is_paused());
    rpc.ok("resume", json!({})).await;
    server.shutdown(Duration::from_secs(5)).await;
}
