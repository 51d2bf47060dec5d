//! The SQLite store against real files: round trips through a reopen, trimming,
//! queries, pruning, group commit, durability of acknowledged writes under
//! SIGKILL, the disabled `:memory:` store, and the start-up errors.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use blender_session_manager::store::{
    Committed, HistoryRow, JobRow, Restored, RestoredSession, SessionRow, SnapshotRow, Store,
    StoreError, WriteOp, SCHEMA_VERSION,
};
use futures::future::join_all;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "bsm-store-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> String {
        self.path("manager.db")
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Make read-only subdirectories removable again.
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn session(id: &str, created_at: f64) -> SessionRow {
    SessionRow {
        id: id.into(),
        created_at,
        backend: "127.0.0.1:9876".into(),
        owner: "rpc".into(),
        metadata: r#"{"project":  "robot", "tags":["a","b"]}"#.into(),
        state: r#"{"objects":["Cube"],"selection":"Cube","selected":[],"mood":"blue"}"#.into(),
        command_count: 3,
        next_seq: 3,
        next_snapshot: 1,
        last_activity: created_at + 0.123456789,
    }
}

fn history(session_id: &str, seq: i64) -> HistoryRow {
    HistoryRow {
        session_id: session_id.into(),
        seq,
        command: "get_scene_info".into(),
        params: r#"{ "detail" : true }"#.into(),
        status: if seq % 2 == 0 { "success" } else { "error" }.into(),
        result: (seq % 2 == 0).then(|| format!(r#"{{"n":{seq},"name":"Scène ✓"}}"#)),
        error: (seq % 2 != 0).then(|| r#"{"kind":"blender_error","message":"no"}"#.into()),
        timestamp: 1_715_000_000.0 + seq as f64 / 3.0,
        duration: 0.25,
        job_id: (seq % 3 == 0).then(|| format!("job-{seq}")),
    }
}

fn snapshot(session_id: &str, snapshot_id: i64) -> SnapshotRow {
    SnapshotRow {
        session_id: session_id.into(),
        snapshot_id,
        timestamp: 1_715_000_100.5 + snapshot_id as f64,
        scene: format!(r#"{{"objects":[{{"name":"Cube{snapshot_id}"}}]}}"#),
        state: r#"{"objects":["Cube"]}"#.into(),
    }
}

fn job(id: &str, ord: i64, status: &str) -> JobRow {
    let finished = matches!(status, "completed" | "failed" | "cancelled");
    JobRow {
        id: id.into(),
        ord,
        session_id: "s1".into(),
        status: status.into(),
        job_type: if ord % 2 == 0 { "batch" } else { "command" }.into(),
        params: r#"{"commands":[{"type":"ping"}]}"#.into(),
        created_at: 1_715_000_200.0 + ord as f64,
        started_at: (status != "pending").then_some(1_715_000_201.0 + ord as f64),
        finished_at: finished.then_some(1_715_000_202.0 + ord as f64),
        progress: r#"{"current":1,"total":1,"message":null}"#.into(),
        result: (status == "completed").then(|| r#"{"ok":true}"#.into()),
        error: (status == "failed").then(|| r#"{"kind":"blender_error"}"#.into()),
        results: (ord % 2 == 0).then(|| r#"[{"ok":true}]"#.into()),
        metadata: "{}".into(),
    }
}

#[test]
fn handles_and_futures_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<Store>();
    send_sync::<StoreError>();
    send::<Committed>();
    send::<WriteOp>();
}

fn open(path: &str) -> (Store, Restored) {
    Store::open(path, 100, 10).unwrap()
}

fn seqs(rows: &[HistoryRow]) -> Vec<i64> {
    rows.iter().map(|r| r.seq).collect()
}

#[tokio::test]
async fn every_row_type_survives_a_reopen_exactly() {
    let dir = TempDir::new("roundtrip");
    let db = dir.db();
    let (store, restored) = open(&db);
    assert!(store.is_persistent());
    assert_eq!(restored, Restored::default());

    let s1 = session("s1", 1_715_000_000.25);
    let s2 = session("s2", 1_715_000_001.5);
    let hist: Vec<HistoryRow> = (1..=4).map(|i| history("s1", i)).collect();
    let snaps = vec![snapshot("s1", 1), snapshot("s1", 2)];
    // Jobs written out of order come back in submission order.
    let jobs = vec![
        job("j3", 3, "pending"),
        job("j1", 1, "completed"),
        job("j2", 2, "processing"),
        job("j4", 4, "failed"),
    ];
    let mut ops = vec![
        WriteOp::UpsertSession(s2.clone()),
        WriteOp::UpsertSession(s1.clone()),
    ];
    ops.extend(hist.iter().cloned().map(WriteOp::History));
    ops.extend(snaps.iter().cloned().map(WriteOp::Snapshot));
    ops.extend(jobs.iter().cloned().map(WriteOp::UpsertJob));
    store.write_all(ops).await.unwrap();
    // An upsert replaces every column.
    let mut s2b = s2.clone();
    s2b.command_count = 9;
    s2b.state = r#"{"objects":[]}"#.into();
    s2b.last_activity += 10.0;
    store
        .write(WriteOp::UpsertSession(s2b.clone()))
        .await
        .unwrap();
    drop(store);

    let (store, restored) = open(&db);
    let mut sorted_jobs = jobs.clone();
    sorted_jobs.sort_by_key(|j| j.ord);
    let expected = Restored {
        sessions: vec![
            RestoredSession {
                row: s1.clone(),
                history: hist.clone(),
                snapshots: snaps.clone(),
            },
            RestoredSession {
                row: s2b.clone(),
                history: vec![],
                snapshots: vec![],
            },
        ],
        jobs: sorted_jobs,
    };
    assert_eq!(restored, expected);

    // Again through an explicit close.
    store
        .write(WriteOp::UpsertJob(job("j5", 5, "cancelled")))
        .await
        .unwrap();
    let h = store.session_history("s1", None, None).await.unwrap();
    assert_eq!(h.as_deref(), Some(&hist[..]));
    store.close().await;
    // A clean close leaves no write-ahead log behind.
    assert!(!Path::new(&format!("{db}-wal")).exists());
    let (_store, restored) = open(&db);
    assert_eq!(restored.jobs.len(), 5);
    assert_eq!(restored.jobs[4], job("j5", 5, "cancelled"));
    assert_eq!(restored.sessions, expected.sessions);
}

#[tokio::test]
async fn history_and_snapshots_are_trimmed_to_their_limits() {
    let dir = TempDir::new("trim");
    let db = dir.db();
    let (store, _) = Store::open(&db, 3, 2).unwrap();
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    store
        .write(WriteOp::UpsertSession(session("s2", 2.0)))
        .await
        .unwrap();
    for seq in 1..=10 {
        store
            .write(WriteOp::History(history("s1", seq)))
            .await
            .unwrap();
    }
    store
        .write(WriteOp::History(history("s2", 1)))
        .await
        .unwrap();
    for id in 1..=5 {
        store
            .write(WriteOp::Snapshot(snapshot("s1", id)))
            .await
            .unwrap();
    }
    let h = store
        .session_history("s1", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seqs(&h),
        vec![8, 9, 10],
        "the file keeps history_limit rows"
    );
    let h2 = store
        .session_history("s2", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&h2), vec![1], "trimming is per session");
    let s = store.snapshots("s1").await.unwrap().unwrap();
    assert_eq!(
        s.iter().map(|s| s.snapshot_id).collect::<Vec<_>>(),
        vec![4, 5]
    );
    store.close().await;

    // A smaller limit at the next start restores only the last rows.
    let (_store, restored) = Store::open(&db, 2, 1).unwrap();
    let s1 = &restored.sessions[0];
    assert_eq!(seqs(&s1.history), vec![9, 10]);
    assert_eq!(s1.snapshots, vec![snapshot("s1", 5)]);
}

#[tokio::test]
async fn session_history_queries() {
    let dir = TempDir::new("query");
    let (store, _) = open(&dir.db());
    let mut ops = vec![
        WriteOp::UpsertSession(session("s1", 1.0)),
        WriteOp::UpsertSession(session("empty", 2.0)),
    ];
    ops.extend((1..=10).map(|i| WriteOp::History(history("s1", i))));
    store.write_all(ops).await.unwrap();

    let q = |limit, since| {
        let store = store.clone();
        async move {
            store
                .session_history("s1", limit, since)
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(seqs(&q(None, None).await), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(&q(Some(3), None).await), vec![8, 9, 10]);
    assert_eq!(seqs(&q(None, Some(7)).await), vec![8, 9, 10]);
    assert_eq!(seqs(&q(Some(2), Some(4)).await), vec![5, 6]);
    assert_eq!(seqs(&q(Some(0), None).await), Vec::<i64>::new());
    assert_eq!(seqs(&q(None, Some(10)).await), Vec::<i64>::new());
    assert_eq!(q(Some(1), Some(5)).await, vec![history("s1", 6)]);
    assert_eq!(
        store.session_history("empty", None, None).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(
        store.session_history("nope", None, None).await.unwrap(),
        None
    );
    assert_eq!(store.snapshots("empty").await.unwrap(), Some(vec![]));
    assert_eq!(store.snapshots("nope").await.unwrap(), None);
}

#[tokio::test]
async fn a_closed_session_is_not_restored_but_its_history_stays_queryable() {
    let dir = TempDir::new("close");
    let db = dir.db();
    let (store, _) = open(&db);
    store
        .write_all(vec![
            WriteOp::UpsertSession(session("gone", 1.0)),
            WriteOp::UpsertSession(session("kept", 2.0)),
            WriteOp::History(history("gone", 1)),
            WriteOp::History(history("gone", 2)),
            WriteOp::Snapshot(snapshot("gone", 1)),
        ])
        .await
        .unwrap();
    store
        .write(WriteOp::CloseSession {
            id: "gone".into(),
            closed_at: 50.0,
            reason: "closed_by_caller".into(),
        })
        .await
        .unwrap();
    // A late update of the closed session does not reopen it.
    store
        .write(WriteOp::UpsertSession(session("gone", 1.0)))
        .await
        .unwrap();
    // Closing an unknown session is a no-op, not an error.
    store
        .write(WriteOp::CloseSession {
            id: "unknown".into(),
            closed_at: 50.0,
            reason: "idle".into(),
        })
        .await
        .unwrap();
    drop(store);

    let (store, restored) = open(&db);
    let ids: Vec<_> = restored
        .sessions
        .iter()
        .map(|s| s.row.id.as_str())
        .collect();
    assert_eq!(ids, vec!["kept"]);
    let h = store
        .session_history("gone", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h, vec![history("gone", 1), history("gone", 2)]);
    assert_eq!(
        store.snapshots("gone").await.unwrap(),
        Some(vec![snapshot("gone", 1)])
    );
}

#[tokio::test]
async fn pruning_removes_sessions_closed_before_the_cutoff_with_their_rows() {
    let dir = TempDir::new("prune");
    let db = dir.db();
    let (store, _) = open(&db);
    let mut ops = Vec::new();
    for id in ["old", "recent", "open"] {
        ops.push(WriteOp::UpsertSession(session(id, 1.0)));
        ops.push(WriteOp::History(history(id, 1)));
        ops.push(WriteOp::Snapshot(snapshot(id, 1)));
    }
    ops.push(WriteOp::CloseSession {
        id: "old".into(),
        closed_at: 100.0,
        reason: "idle".into(),
    });
    ops.push(WriteOp::CloseSession {
        id: "recent".into(),
        closed_at: 200.0,
        reason: "idle".into(),
    });
    store.write_all(ops).await.unwrap();
    store
        .write(WriteOp::PruneClosedSessions {
            closed_before: 150.0,
        })
        .await
        .unwrap();
    assert_eq!(
        store.session_history("old", None, None).await.unwrap(),
        None
    );
    assert_eq!(store.snapshots("old").await.unwrap(), None);
    assert_eq!(
        store
            .session_history("recent", None, None)
            .await
            .unwrap()
            .map(|h| h.len()),
        Some(1)
    );
    assert_eq!(
        store
            .session_history("open", None, None)
            .await
            .unwrap()
            .map(|h| h.len()),
        Some(1)
    );
    // A session recreated under a pruned id starts without the old rows.
    store
        .write(WriteOp::UpsertSession(session("old", 300.0)))
        .await
        .unwrap();
    assert_eq!(
        store.session_history("old", None, None).await.unwrap(),
        Some(vec![])
    );
    drop(store);
    let (_s, restored) = open(&db);
    let ids: Vec<_> = restored
        .sessions
        .iter()
        .map(|s| s.row.id.as_str())
        .collect();
    assert_eq!(ids, vec!["open", "old"]);
}

#[tokio::test]
async fn delete_jobs_removes_only_the_named_jobs() {
    let dir = TempDir::new("deljobs");
    let db = dir.db();
    let (store, _) = open(&db);
    let jobs: Vec<JobRow> = (1..=5)
        .map(|i| job(&format!("j{i}"), i, "completed"))
        .collect();
    store
        .write_all(jobs.iter().cloned().map(WriteOp::UpsertJob).collect())
        .await
        .unwrap();
    store
        .write(WriteOp::DeleteJobs(vec![
            "j2".into(),
            "j4".into(),
            "never-existed".into(),
        ]))
        .await
        .unwrap();
    // Replacing a job keeps one row per id.
    let mut j1 = jobs[0].clone();
    j1.status = "failed".into();
    store.write(WriteOp::UpsertJob(j1.clone())).await.unwrap();
    drop(store);
    let (_s, restored) = open(&db);
    assert_eq!(restored.jobs, vec![j1, jobs[2].clone(), jobs[4].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_queued_together_share_transactions() {
    let dir = TempDir::new("group");
    let (store, _) = Store::open(&dir.db(), 10_000, 10).unwrap();
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    let before = store.transactions_committed();
    let pending: Vec<_> = (1..=1000)
        .map(|i| store.write(WriteOp::History(history("s1", i))))
        .collect();
    for r in join_all(pending).await {
        r.unwrap();
    }
    let used = store.transactions_committed() - before;
    println!("1000 writes queued at once committed in {used} transactions");
    assert!(used <= 100, "{used} transactions for 1000 queued writes");
    let h = store
        .session_history("s1", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&h), (1..=1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_write_whose_future_was_dropped_still_commits() {
    let dir = TempDir::new("dropped");
    let db = dir.db();
    let (store, _) = open(&db);
    drop(store.write(WriteOp::UpsertSession(session("s1", 1.0))));
    drop(store.write(WriteOp::History(history("s1", 1))));
    store.flush().await.unwrap();
    assert_eq!(
        store.session_history("s1", None, None).await.unwrap(),
        Some(vec![history("s1", 1)])
    );
    // Not even flushed: dropping the last handle still commits what was queued.
    drop(store.write(WriteOp::History(history("s1", 2))));
    drop(store.write(WriteOp::UpsertJob(job("j1", 1, "pending"))));
    drop(store);
    let (_s, restored) = open(&db);
    assert_eq!(seqs(&restored.sessions[0].history), vec![1, 2]);
    assert_eq!(restored.jobs, vec![job("j1", 1, "pending")]);
}

#[tokio::test]
async fn a_failing_request_is_rolled_back_alone() {
    let dir = TempDir::new("failing");
    let db = dir.db();
    let (store, _) = open(&db);
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    // SQLite stores NaN as NULL, which the NOT NULL column refuses.
    let mut bad = history("s1", 2);
    bad.timestamp = f64::NAN;
    let good_before = store.write(WriteOp::History(history("s1", 1)));
    let failing = store.write_all(vec![
        WriteOp::UpsertJob(job("j-with-bad-history", 1, "completed")),
        WriteOp::History(bad),
    ]);
    let good_after = store.write(WriteOp::History(history("s1", 3)));
    let (a, b, c) = tokio::join!(good_before, failing, good_after);
    a.unwrap();
    c.unwrap();
    let e = b.unwrap_err();
    assert!(matches!(e, StoreError::Write { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("--db {db}: write failed: ")),
        "{msg}"
    );
    assert!(msg.contains("NOT NULL"), "{msg}");
    // The writer keeps going.
    store
        .write(WriteOp::History(history("s1", 4)))
        .await
        .unwrap();
    drop(store);
    let (_s, restored) = open(&db);
    assert_eq!(seqs(&restored.sessions[0].history), vec![1, 3, 4]);
    assert!(
        restored.jobs.is_empty(),
        "the whole failing request rolled back"
    );
}

#[tokio::test]
async fn after_close_writes_fail_and_flush_has_nothing_to_wait_for() {
    let dir = TempDir::new("closed");
    let db = dir.db();
    let (store, _) = open(&db);
    let other = store.clone();
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    store.close().await;
    other.close().await; // twice is fine
    let e = other
        .write(WriteOp::History(history("s1", 1)))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), format!("--db {db}: the store is closed"));
    other.flush().await.unwrap();
    drop((store, other));
    let (_s, restored) = open(&db);
    assert_eq!(restored.sessions.len(), 1);
    assert!(restored.sessions[0].history.is_empty());
}

#[tokio::test]
async fn the_memory_store_is_disabled() {
    let (store, restored) = Store::open(":memory:", 100, 10).unwrap();
    assert!(!store.is_persistent());
    assert_eq!(restored, Restored::default());
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    store
        .write_all(vec![WriteOp::History(history("s1", 1))])
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.session_history("s1", None, None).await.unwrap(), None);
    assert_eq!(store.snapshots("s1").await.unwrap(), None);
    assert_eq!(store.transactions_committed(), 0);
    store.close().await;
    let (_s, restored) = Store::open(":memory:", 100, 10).unwrap();
    assert_eq!(restored, Restored::default());
}

#[tokio::test]
async fn open_creates_missing_parent_directories() {
    let dir = TempDir::new("parents");
    let db = dir.path("a/b/c/manager.db");
    let (store, _) = open(&db);
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    drop(store);
    assert!(Path::new(&db).is_file());
    let (_s, restored) = open(&db);
    assert_eq!(restored.sessions.len(), 1);
}

fn open_err(path: &str) -> String {
    match Store::open(path, 100, 10) {
        Ok(_) => panic!("{path} opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_file_of_garbage_is_not_a_database() {
    let dir = TempDir::new("garbage");
    let db = dir.db();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    assert_eq!(
        open_err(&db),
        format!("--db {db}: not a SQLite database (file is not a database)")
    );
    let short = dir.path("short.db");
    std::fs::write(&short, b"hello\n").unwrap();
    assert_eq!(
        open_err(&short),
        format!("--db {short}: not a SQLite database (file is not a database)")
    );
    // The file is left as it was.
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
    // A valid header over a damaged body is caught by SQLite itself.
    let mut damaged = b"SQLite format 3\0".to_vec();
    damaged.extend(std::iter::repeat_n(0xA5u8, 4096));
    let damaged_path = dir.path("damaged.db");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let msg = open_err(&damaged_path);
    assert!(
        msg.starts_with(&format!("--db {damaged_path}: not a SQLite database (")),
        "{msg}"
    );
}

#[test]
fn an_empty_file_is_an_empty_database() {
    let dir = TempDir::new("empty");
    let db = dir.db();
    std::fs::write(&db, b"").unwrap();
    let (_s, restored) = open(&db);
    assert_eq!(restored, Restored::default());
}

#[test]
fn a_directory_cannot_be_the_database() {
    let dir = TempDir::new("isdir");
    let db = dir.path("adir.db");
    std::fs::create_dir(&db).unwrap();
    assert_eq!(
        open_err(&db),
        format!("--db {db}: cannot open: is a directory")
    );
}

#[test]
fn a_path_under_a_regular_file_cannot_be_created() {
    let dir = TempDir::new("underfile");
    let file = dir.path("plain");
    std::fs::write(&file, b"x").unwrap();
    let db = format!("{file}/manager.db");
    let msg = open_err(&db);
    assert!(
        msg.starts_with(&format!(
            "--db {db}: cannot open: cannot create directory {file}: "
        )),
        "{msg}"
    );
    let deeper = format!("{file}/sub/manager.db");
    assert!(open_err(&deeper).starts_with(&format!("--db {deeper}: cannot open: ")));
}

#[test]
fn a_path_in_a_read_only_directory_cannot_be_created() {
    let dir = TempDir::new("readonly");
    let ro = dir.path("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes through permission bits; then there is nothing to test here (the
    // regular-file parent above covers an unwritable path root cannot bypass).
    let probe = Path::new(&ro).join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        let _ = std::fs::remove_file(&probe);
        eprintln!("skipped: this user can write into a 0o555 directory");
        return;
    }
    let db = format!("{ro}/manager.db");
    assert_eq!(
        open_err(&db),
        format!(
            "--db {db}: cannot open: unable to open database file (is the directory writable?)"
        )
    );
    // A database whose directory became read-only: the WAL cannot be created.
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(&db));
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let msg = open_err(&db);
    assert!(
        msg.starts_with(&format!("--db {db}: cannot open: ")),
        "{msg}"
    );
    eprintln!("{msg}");
    // A read-only database file (SQLite would silently open it read-only).
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let msg = open_err(&db);
    eprintln!("{msg}");
    assert!(
        msg.starts_with(&format!("--db {db}: cannot open: the file is read-only")),
        "{msg}"
    );
}

#[test]
fn a_file_from_a_newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    let db = dir.db();
    drop(open(&db));
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 6))
            .unwrap();
    }
    assert_eq!(
        open_err(&db),
        format!(
            "--db {db}: written by a newer version (schema {}, this build knows {SCHEMA_VERSION})",
            SCHEMA_VERSION + 6
        )
    );
}

#[test]
fn a_foreign_sqlite_database_fails_to_migrate_clearly() {
    let dir = TempDir::new("foreign");
    let db = dir.db();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE sessions (x INTEGER);")
            .unwrap();
    }
    let msg = open_err(&db);
    assert!(
        msg.starts_with(&format!("--db {db}: cannot migrate to schema 1: ")),
        "{msg}"
    );
    assert!(msg.contains("already exists"), "{msg}");
}

/// Acknowledged writes per second from many concurrent tasks (run with
/// `--nocapture` to see the figure; nothing is asserted on time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_of_acknowledged_writes() {
    const TASKS: i64 = 100;
    const PER_TASK: i64 = 100;
    let dir = TempDir::new("throughput");
    let (store, _) = Store::open(&dir.db(), 1000, 10).unwrap();
    let sessions: Vec<_> = (0..TASKS)
        .map(|t| WriteOp::UpsertSession(session(&format!("s{t}"), t as f64)))
        .collect();
    store.write_all(sessions).await.unwrap();
    let before = store.transactions_committed();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("s{t}");
                for seq in 1..=PER_TASK {
                    store
                        .write(WriteOp::History(history(&id, seq)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in join_all(tasks).await {
        t.unwrap();
    }
    let elapsed = started.elapsed();
    let n = TASKS * PER_TASK;
    let txns = store.transactions_committed() - before;
    println!(
        "{n} acknowledged history writes from {TASKS} tasks in {:.3}s: {:.0} writes/s, {txns} transactions",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    let h = store
        .session_history("s7", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.len() as i64, PER_TASK);
}

const CHILD_DB: &str = "BSM_STORE_CHILD_DB";

/// The child half of the SIGKILL test: writes forever, printing each acknowledged seq.
#[tokio::test]
#[ignore = "run by acknowledged_writes_survive_sigkill in a child process"]
async fn child_writes_until_killed() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let (store, _) = Store::open(&db, 1_000_000, 10).unwrap();
    store
        .write(WriteOp::UpsertSession(session("s1", 1.0)))
        .await
        .unwrap();
    let mut out = std::io::stdout();
    for seq in 1.. {
        store
            .write(WriteOp::History(history("s1", seq)))
            .await
            .unwrap();
        writeln!(out, "acked {seq}").unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = TempDir::new("sigkill");
    let db = dir.db();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0i64;
    while acked < 300 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
        }
    }
    // SIGKILL: no destructor, no checkpoint, the log is all there is.
    child.kill().unwrap();
    child.wait().unwrap();
    let (store, restored) = Store::open(&db, 1_000_000, 10).unwrap();
    assert_eq!(restored.sessions.len(), 1);
    let h = store
        .session_history("s1", None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.len() as i64 >= acked,
        "{} rows in the file, {acked} were acknowledged",
        h.len()
    );
    assert_eq!(
        h[..acked as usize],
        (1..=acked).map(|s| history("s1", s)).collect::<Vec<_>>()[..]
    );
}
