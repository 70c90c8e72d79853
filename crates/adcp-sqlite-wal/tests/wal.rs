//! The VFS against SQLite's own default: what other connections see after each commit, what
//! a rollback leaves, what the file holds after checkpoints and a reopen, and how many write
//! calls the log costs.

use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};

/// A database path of its own, removed (with its log and index) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "adcp-sqlite-wal-{name}-{}-{:x}.db",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
}

/// A writer through the VFS (or SQLite's default), in WAL mode, checkpointing every
/// `checkpoint` pages.
fn writer(path: &Path, batched: bool, synchronous: &str, checkpoint: u32) -> Connection {
    let conn = if batched {
        let vfs = adcp_sqlite_wal::register().expect("a default VFS to wrap");
        Connection::open_with_flags_and_vfs(path, flags(), vfs)
    } else {
        Connection::open_with_flags(path, flags())
    }
    .expect("open");
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA wal_autocheckpoint = {checkpoint}; \
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, v BLOB NOT NULL); \
         CREATE INDEX IF NOT EXISTS t_tx ON t (tx);"
    ))
    .expect("schema");
    conn
}

/// Transaction `tx`'s rows: mostly one or a few small rows, sometimes a hundred rows of 1 KiB,
/// and every 97th one 6 MiB (more than the VFS gathers before writing, and many times the
/// most the default VFS writes in one call).
fn rows_of(tx: i64) -> Vec<Vec<u8>> {
    let (n, size) = match tx {
        t if t % 97 == 96 => (6, 1 << 20),
        t if t % 10 == 9 => (100, 1024),
        t => (1 + (t % 3) as usize, 200),
    };
    (0..n)
        .map(|i| {
            (0..size)
                .map(|b| (tx as usize * 31 + i * 7 + b) as u8)
                .collect()
        })
        .collect()
}

fn commit(conn: &Connection, tx: i64) {
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    for v in rows_of(tx) {
        conn.execute("INSERT INTO t (tx, v) VALUES (?, ?)", params![tx, v])
            .expect("insert");
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// What a reader finds of transaction `tx`: its row count and whether every byte is right.
fn check(reader: &Connection, tx: i64) {
    let mut statement = reader
        .prepare("SELECT v FROM t WHERE tx = ? ORDER BY id")
        .expect("prepare");
    let found: Vec<Vec<u8>> = statement
        .query_map([tx], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(found == rows_of(tx), "transaction {tx} read back wrong");
}

fn run(synchronous: &str) {
    let scratch = Scratch::new(&format!("visible-{synchronous}"));
    let conn = writer(&scratch.0, true, synchronous, 64);
    // Another connection on SQLite's default VFS, as another process would be.
    let reader = Connection::open_with_flags(&scratch.0, flags()).expect("reader");
    for tx in 0..300 {
        commit(&conn, tx);
        check(&reader, tx);
        let total: i64 = reader
            .query_row("SELECT COUNT(DISTINCT tx) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(total, tx + 1, "after transaction {tx}");
    }
    // A rolled-back transaction leaves nothing, and the next commit is whole.
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    for v in rows_of(96) {
        conn.execute("INSERT INTO t (tx, v) VALUES (-1, ?)", [v])
            .expect("insert");
    }
    conn.execute_batch("ROLLBACK").expect("rollback");
    commit(&conn, 300);
    let undone: i64 = reader
        .query_row("SELECT COUNT(*) FROM t WHERE tx = -1", [], |r| r.get(0))
        .expect("count");
    assert_eq!(undone, 0);
    check(&reader, 300);
    let integrity: String = reader
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(integrity, "ok");
    drop(reader);
    drop(conn);
    // Everything is in the file once the last connection has closed (and checkpointed).
    let reopened = Connection::open_with_flags(&scratch.0, flags()).expect("reopen");
    for tx in 0..=300 {
        check(&reopened, tx);
    }
}

#[test]
fn every_commit_is_visible_to_other_connections_at_once_and_survives_a_reopen() {
    run("NORMAL");
}

/// `synchronous = FULL` syncs the log inside each commit (and pads it to a sector): the
/// gathered frames reach the file before that sync.
#[test]
fn the_same_holds_when_every_commit_syncs_the_log() {
    run("FULL");
}

/// Write system calls of this process so far (Linux's per-process I/O accounting).
fn write_calls() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The point of the VFS: a transaction's log frames go to the file in one call, not two per
/// frame. The same workload through SQLite's default VFS is the baseline, counted the same
/// way in the same process.
#[test]
fn the_log_costs_a_fraction_of_the_write_calls() {
    if cfg!(not(target_os = "linux")) {
        // No per-process I/O accounting to count with.
        return;
    }
    let mut calls = Vec::new();
    for batched in [false, true] {
        let scratch = Scratch::new(&format!("calls-{batched}"));
        // No checkpoint while counting: only the log's writes.
        let conn = writer(&scratch.0, batched, "NORMAL", 0);
        let before = write_calls().expect("syscw");
        for tx in 0..200 {
            // Ten rows of 1 KiB: a few pages per transaction.
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for i in 0..10 {
                conn.execute(
                    "INSERT INTO t (tx, v) VALUES (?, ?)",
                    params![tx, vec![i as u8; 1024]],
                )
                .expect("insert");
            }
            conn.execute_batch("COMMIT").expect("commit");
        }
        calls.push(write_calls().expect("syscw") - before);
    }
    let (default, batched) = (calls[0], calls[1]);
    assert!(
        batched * 3 < default,
        "write calls for 200 transactions: {batched} through the VFS, {default} without"
    );
    // One per transaction at least: nothing is left unwritten.
    assert!(batched >= 200, "{batched} write calls for 200 commits");
}
