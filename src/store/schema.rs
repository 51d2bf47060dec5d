//! Opening the file: checks, connection settings and schema migrations.
//!
//! The schema version lives in `PRAGMA user_version`; migration `n` (1-based)
//! brings a file from version `n - 1` to `n` inside one immediate transaction.
//! A file stamped with a version above [`SCHEMA_VERSION`] was written by a newer
//! build and is refused rather than guessed at.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StoreError;

/// The schema this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// After a checkpoint, the write-ahead log is truncated back to this size.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

const MIGRATIONS: &[&str] = &[
    // 1: the four tables.
    r#"
    CREATE TABLE sessions (
        id            TEXT PRIMARY KEY NOT NULL,
        created_at    REAL NOT NULL,
        backend       TEXT NOT NULL,
        owner         TEXT NOT NULL,
        metadata      TEXT NOT NULL,
        state         TEXT NOT NULL,
        command_count INTEGER NOT NULL,
        next_seq      INTEGER NOT NULL,
        next_snapshot INTEGER NOT NULL,
        last_activity REAL NOT NULL,
        closed_at     REAL,
        close_reason  TEXT
    );
    CREATE INDEX sessions_closed_at ON sessions (closed_at);

    CREATE TABLE history (
        session_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        command    TEXT NOT NULL,
        params     TEXT NOT NULL,
        status     TEXT NOT NULL,
        result     TEXT,
        error      TEXT,
        timestamp  REAL NOT NULL,
        duration   REAL NOT NULL,
        job_id     TEXT,
        PRIMARY KEY (session_id, seq)
    );

    CREATE TABLE snapshots (
        session_id  TEXT NOT NULL,
        snapshot_id INTEGER NOT NULL,
        timestamp   REAL NOT NULL,
        scene       TEXT NOT NULL,
        state       TEXT NOT NULL,
        PRIMARY KEY (session_id, snapshot_id)
    );

    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY NOT NULL,
        ord         INTEGER NOT NULL,
        session_id  TEXT NOT NULL,
        status      TEXT NOT NULL,
        job_type    TEXT NOT NULL,
        params      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        started_at  REAL,
        finished_at REAL,
        progress    TEXT NOT NULL,
        result      TEXT,
        error       TEXT,
        results     TEXT,
        metadata    TEXT NOT NULL
    );
    CREATE INDEX jobs_ord ON jobs (ord);
    "#,
];

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

fn cannot_open(path: &str, reason: impl Into<String>) -> StoreError {
    StoreError::CannotOpen {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Sorts an SQLite error met while opening into the errors a user can act on.
fn open_error(path: &str, e: rusqlite::Error) -> StoreError {
    // rusqlite appends the path to open errors; the message names it already.
    let text = e.to_string();
    let text = text
        .strip_suffix(&format!(": {path}"))
        .unwrap_or(&text)
        .to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotDatabase {
            path: path.to_string(),
            detail: text,
        },
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            cannot_open(path, format!("{text} (is the directory writable?)"))
        }
        _ => cannot_open(path, text),
    }
}

/// Checks what is at `path` before SQLite touches it: a directory, a special
/// file or a file without the SQLite header is refused with a clear reason.
fn check_path(path: &str) -> Result<(), StoreError> {
    if path.is_empty() {
        return Err(cannot_open(path, "empty path"));
    }
    let p = Path::new(path);
    if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| {
            cannot_open(
                path,
                format!("cannot create directory {}: {e}", parent.display()),
            )
        })?;
    }
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(cannot_open(path, e.to_string())),
    };
    if meta.is_dir() {
        return Err(cannot_open(path, "is a directory"));
    }
    if !meta.is_file() {
        return Err(cannot_open(path, "not a regular file"));
    }
    if meta.len() == 0 {
        // SQLite treats an empty file as an empty database.
        return Ok(());
    }
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    fs::File::open(p)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut head))
        .map_err(|e| cannot_open(path, e.to_string()))?;
    if head != SQLITE_HEADER {
        return Err(StoreError::NotDatabase {
            path: path.to_string(),
            detail: "file is not a database".to_string(),
        });
    }
    Ok(())
}

fn connect(path: &str) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens (creating if needed) the write connection: checks the file, sets WAL and
/// `synchronous=NORMAL`, and migrates the schema to [`SCHEMA_VERSION`].
pub(crate) fn open_writer(path: &str) -> Result<Connection, StoreError> {
    check_path(path)?;
    let mut conn = connect(path)?;
    // SQLite opens an unwritable file read-only without saying so; refuse it here
    // rather than failing on the first write.
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| open_error(path, e))?
    {
        return Err(cannot_open(
            path,
            "the file is read-only (is it writable by this user?)",
        ));
    }
    // The first read: this is where SQLite notices a file that is not a database.
    let version = user_version(&conn).map_err(|e| open_error(path, e))?;
    check_version(path, version)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(cannot_open(
            path,
            format!("cannot use write-ahead logging (journal mode stays {mode})"),
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
    ))
    .map_err(|e| open_error(path, e))?;
    migrate(path, &mut conn)?;
    Ok(conn)
}

/// Opens a connection for queries; it never writes.
pub(crate) fn open_reader(path: &str) -> Result<Connection, StoreError> {
    let conn = connect(path)?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

fn check_version(path: &str, version: i64) -> Result<(), StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_string(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version < 0 {
        return Err(cannot_open(
            path,
            format!("unknown schema version {version}"),
        ));
    }
    Ok(())
}

fn migrate(path: &str, conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| open_error(path, e))?;
        // Read again under the write lock: another process may have migrated meanwhile.
        let version = user_version(&tx).map_err(|e| open_error(path, e))?;
        check_version(path, version)?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let next = version + 1;
        let failed = |e: rusqlite::Error| StoreError::Migration {
            path: path.to_string(),
            version: next,
            reason: e.to_string(),
        };
        tx.execute_batch(MIGRATIONS[version as usize])
            .map_err(failed)?;
        tx.execute_batch(&format!("PRAGMA user_version = {next};"))
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(path, version = next, "database schema migrated");
    }
}
