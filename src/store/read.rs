//! Queries: what a restarting manager restores, and history/snapshots on demand.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::rows::{HistoryRow, JobRow, SessionRow, SnapshotRow};
use super::{Restored, RestoredSession};

const SESSION_COLUMNS: &str = "id, created_at, backend, owner, metadata, state, command_count, \
     next_seq, next_snapshot, last_activity";
const HISTORY_COLUMNS: &str =
    "session_id, seq, command, params, status, result, error, timestamp, duration, job_id";
const SNAPSHOT_COLUMNS: &str = "session_id, snapshot_id, timestamp, scene, state";
const JOB_COLUMNS: &str = "id, ord, session_id, status, job_type, params, created_at, \
     started_at, finished_at, progress, result, error, results, metadata";

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        created_at: r.get(1)?,
        backend: r.get(2)?,
        owner: r.get(3)?,
        metadata: r.get(4)?,
        state: r.get(5)?,
        command_count: r.get(6)?,
        next_seq: r.get(7)?,
        next_snapshot: r.get(8)?,
        last_activity: r.get(9)?,
    })
}

fn history_row(r: &Row<'_>) -> rusqlite::Result<HistoryRow> {
    Ok(HistoryRow {
        session_id: r.get(0)?,
        seq: r.get(1)?,
        command: r.get(2)?,
        params: r.get(3)?,
        status: r.get(4)?,
        result: r.get(5)?,
        error: r.get(6)?,
        timestamp: r.get(7)?,
        duration: r.get(8)?,
        job_id: r.get(9)?,
    })
}

fn snapshot_row(r: &Row<'_>) -> rusqlite::Result<SnapshotRow> {
    Ok(SnapshotRow {
        session_id: r.get(0)?,
        snapshot_id: r.get(1)?,
        timestamp: r.get(2)?,
        scene: r.get(3)?,
        state: r.get(4)?,
    })
}

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        ord: r.get(1)?,
        session_id: r.get(2)?,
        status: r.get(3)?,
        job_type: r.get(4)?,
        params: r.get(5)?,
        created_at: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        progress: r.get(9)?,
        result: r.get(10)?,
        error: r.get(11)?,
        results: r.get(12)?,
        metadata: r.get(13)?,
    })
}

/// SQLite's LIMIT takes an i64; -1 means none.
fn sql_limit(limit: Option<usize>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// Open sessions (oldest first) with their recent history and snapshots, and all jobs.
pub(crate) fn load_restored(
    conn: &Connection,
    history_limit: usize,
    snapshot_limit: usize,
) -> rusqlite::Result<Restored> {
    let tx = conn.unchecked_transaction()?;
    let rows = tx
        .prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE closed_at IS NULL \
             ORDER BY created_at, rowid"
        ))?
        .query_map([], session_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in rows {
        let history = last_history(&tx, &row.id, Some(history_limit))?;
        let snapshots = last_snapshots(&tx, &row.id, Some(snapshot_limit))?;
        sessions.push(RestoredSession {
            row,
            history,
            snapshots,
        });
    }
    let jobs = tx
        .prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY ord, rowid"
        ))?
        .query_map([], job_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(Restored { sessions, jobs })
}

fn last_history(
    conn: &Connection,
    session_id: &str,
    limit: Option<usize>,
) -> rusqlite::Result<Vec<HistoryRow>> {
    let mut rows = conn
        .prepare_cached(&format!(
            "SELECT {HISTORY_COLUMNS} FROM history WHERE session_id = ?1 \
             ORDER BY seq DESC LIMIT ?2"
        ))?
        .query_map(params![session_id, sql_limit(limit)], history_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

fn last_snapshots(
    conn: &Connection,
    session_id: &str,
    limit: Option<usize>,
) -> rusqlite::Result<Vec<SnapshotRow>> {
    let mut rows = conn
        .prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE session_id = ?1 \
             ORDER BY snapshot_id DESC LIMIT ?2"
        ))?
        .query_map(params![session_id, sql_limit(limit)], snapshot_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

fn session_exists(conn: &Connection, session_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
        .query_row([session_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// History of a session, oldest first: with `since_seq`, the first `limit` rows after
/// it; otherwise the last `limit`. `None` when the file has no such session.
pub(crate) fn session_history(
    conn: &Connection,
    session_id: &str,
    limit: Option<usize>,
    since_seq: Option<u64>,
) -> rusqlite::Result<Option<Vec<HistoryRow>>> {
    let tx = conn.unchecked_transaction()?;
    if !session_exists(&tx, session_id)? {
        return Ok(None);
    }
    let rows = match since_seq {
        Some(since) => tx
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM history WHERE session_id = ?1 AND seq > ?2 \
                 ORDER BY seq LIMIT ?3"
            ))?
            .query_map(
                params![
                    session_id,
                    i64::try_from(since).unwrap_or(i64::MAX),
                    sql_limit(limit)
                ],
                history_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => last_history(&tx, session_id, limit)?,
    };
    tx.commit()?;
    Ok(Some(rows))
}

/// Snapshots of a session, oldest first. `None` when the file has no such session.
pub(crate) fn snapshots(
    conn: &Connection,
    session_id: &str,
) -> rusqlite::Result<Option<Vec<SnapshotRow>>> {
    let tx = conn.unchecked_transaction()?;
    if !session_exists(&tx, session_id)? {
        return Ok(None);
    }
    let rows = last_snapshots(&tx, session_id, None)?;
    tx.commit()?;
    Ok(Some(rows))
}
