//! Leasing due deliveries, giving leases back, and the next due time.

use super::conn::{Request, col, sqlite_err};
use super::{SqliteStore, db_err};
use crate::delivery::store::codec::{corrupt, headers_from_json, to_u32};
use crate::delivery::store::{DeliveryId, LeaseRequest, LeaseToken, LeasedDelivery, StoreError};
use rusqlite::Connection;

// Leasing runs as a few simple statements, each compiled once and each reading an index range
// only as far as it is stepped (see `conn`). One statement doing it all (room per destination,
// ranked candidates, an UPDATE over the picked ids with RETURNING) cost about seven times
// what these cost together: its ranking built temporary B-trees on every call.
//
// Per destination (enabled, breaker not open, not excluded by the caller): its room under the
// cap counts every live lease of the destination, whichever worker holds it (one write
// transaction at a time sees them all), and a half-open breaker (open_until passed but not
// reset by a success) admits one probe; then its earliest due rows, as many as the room and
// the batch allow, read from the per-destination due index, so one destination's backlog
// never hides another's work. The candidates of all destinations are ranked by due time and
// the earliest `limit` leased. Only pending rows hold a lease token, so live leases are
// counted from the lease index alone.
const LEASE_DESTINATIONS: &str =
    "SELECT key, open_until FROM outbox_destinations WHERE disabled = 0 AND open_until <= ?1";

const LIVE_LEASES: &str = "SELECT COUNT(*) FROM outbox_deliveries WHERE destination = ?1 \
     AND lease_token IS NOT NULL AND lease_expires_at > ?2";

// Stepped only as far as the destination's share: an index-only read of the due index.
const DUE: &str = "SELECT id, next_attempt_at FROM outbox_deliveries WHERE destination = ?1 \
     AND state = 'pending' AND next_attempt_at <= ?2 ORDER BY next_attempt_at, id";

// The lease of one picked row. Pushing next_attempt_at to the lease expiry is what returns a
// crashed worker's work.
const LEASE_ROW: &str = "UPDATE outbox_deliveries SET lease_token = ?1, lease_expires_at = ?2, next_attempt_at = ?2 \
     WHERE id = ?3 AND state = 'pending'";

// A leased delivery with its body (bodies have a table of their own so that the lease and the
// outcome do not rewrite them: see migration 0007); no body reads as NULL.
const LEASED_ROW: &str = "SELECT d.url, d.destination, d.idempotency_key, d.kind, d.extra_headers, d.attempts, \
     d.created_at, d.deadline_at, b.body FROM outbox_deliveries d \
     LEFT JOIN outbox_bodies b ON b.id = d.id WHERE d.id = ?1";

impl SqliteStore {
    pub(super) async fn lease_batch(
        &self,
        req: LeaseRequest,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        self.conn.call(|reply| Request::Lease(req, reply)).await
    }

    pub(super) async fn release_leases(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        self.conn
            .call(|reply| Request::Release(leases, at_ms, reply))
            .await
    }

    pub(super) async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            // One probe of the per-destination due index per destination (see migration 0007).
            "SELECT MIN((SELECT d.next_attempt_at FROM outbox_deliveries d \
               WHERE d.destination = t.key AND d.state = 'pending' \
               ORDER BY d.next_attempt_at LIMIT 1)) FROM outbox_destinations t",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }
}

/// Lease due deliveries (on the connection thread, inside its transaction).
pub(super) fn lease_rows(
    conn: &Connection,
    req: &LeaseRequest,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let cap = i64::from(req.per_destination.max(1));
    let limit = req.limit as usize;
    let mut destinations: Vec<(String, i64)> = Vec::new();
    {
        let mut statement = conn
            .prepare_cached(LEASE_DESTINATIONS)
            .map_err(sqlite_err)?;
        let mut rows = statement.query([req.now_ms]).map_err(sqlite_err)?;
        while let Some(row) = rows.next().map_err(sqlite_err)? {
            let key: String = col(row, 0)?;
            if !req.exclude.contains(&key) {
                destinations.push((key, col(row, 1)?));
            }
        }
    }
    // Each destination's share of the due rows (see `due_row`).
    let mut candidates: Vec<(i64, i64)> = Vec::new();
    let mut live = conn.prepare_cached(LIVE_LEASES).map_err(sqlite_err)?;
    let mut due = conn.prepare_cached(DUE).map_err(sqlite_err)?;
    for (key, open_until) in &destinations {
        let mut rows = due
            .query(rusqlite::params![key, req.now_ms])
            .map_err(sqlite_err)?;
        // Nothing due: no need to count its leases.
        let Some(first) = rows.next().map_err(sqlite_err)? else {
            continue;
        };
        let first = due_row(first)?;
        let room = if *open_until > 0 { 1 } else { cap };
        let held: i64 = live
            .query_row(rusqlite::params![key, req.now_ms], |row| row.get(0))
            .map_err(sqlite_err)?;
        let share = usize::try_from(room - held).unwrap_or(0).min(limit);
        if share == 0 {
            continue;
        }
        candidates.push(first);
        for _ in 1..share {
            let Some(row) = rows.next().map_err(sqlite_err)? else {
                break;
            };
            candidates.push(due_row(row)?);
        }
    }
    drop((live, due));
    candidates.sort_unstable();
    candidates.truncate(limit);
    let token = LeaseToken::random();
    let expires = req.now_ms.saturating_add(req.lease_ms.max(1));
    let mut lease = conn.prepare_cached(LEASE_ROW).map_err(sqlite_err)?;
    let mut read = conn.prepare_cached(LEASED_ROW).map_err(sqlite_err)?;
    let mut leased = Vec::with_capacity(candidates.len());
    for (_, id) in candidates {
        let changed = lease
            .execute(rusqlite::params![token.0, expires, id])
            .map_err(sqlite_err)?;
        if changed != 1 {
            return Err(corrupt(format!(
                "delivery {id} was due for a lease but could not be leased"
            )));
        }
        let mut rows = read.query([id]).map_err(sqlite_err)?;
        let row = rows
            .next()
            .map_err(sqlite_err)?
            .ok_or_else(|| corrupt(format!("delivery {id} vanished while being leased")))?;
        // A delivery without its body (its row deleted by hand) fails the whole lease, which
        // the thread rolls back: nothing is leased without its body.
        let body: Option<Vec<u8>> = col(row, 8)?;
        let body =
            body.ok_or_else(|| corrupt(format!("delivery {id} has no row in outbox_bodies")))?;
        let headers: String = col(row, 4)?;
        leased.push(LeasedDelivery {
            id: DeliveryId(id),
            token,
            lease_expires_ms: expires,
            url: col(row, 0)?,
            destination: col(row, 1)?,
            idempotency_key: col(row, 2)?,
            kind: col(row, 3)?,
            body: bytes::Bytes::from(body),
            extra_headers: headers_from_json(&headers)?,
            attempts: to_u32("attempts", col(row, 5)?)?,
            created_at_ms: col(row, 6)?,
            deadline_ms: col(row, 7)?,
        });
    }
    leased.sort_by_key(|d| d.id);
    Ok(leased)
}

/// A row of `DUE` as a candidate: (next_attempt_at, id), the order leases are given in.
fn due_row(row: &rusqlite::Row<'_>) -> Result<(i64, i64), StoreError> {
    Ok((col(row, 1)?, col(row, 0)?))
}

/// Hand leases back, each due again at `at_ms` (on the connection thread).
pub(super) fn release_rows(
    conn: &Connection,
    leases: &[(DeliveryId, LeaseToken)],
    at_ms: i64,
) -> Result<u64, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "UPDATE outbox_deliveries SET next_attempt_at = ?, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = ? AND lease_token = ? AND state = 'pending'",
        )
        .map_err(sqlite_err)?;
    let mut released = 0;
    for (id, token) in leases {
        released += statement
            .execute(rusqlite::params![at_ms, id.0, token.0])
            .map_err(sqlite_err)? as u64;
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::store::group::tests::new;
    use crate::delivery::store::sqlite::{SqliteOptions, SqliteStore};
    use std::path::PathBuf;

    /// A new store in a directory of its own: (the directory, the database file, the store).
    async fn fresh(name: &str) -> (PathBuf, PathBuf, SqliteStore) {
        let dir = super::super::scratch(name);
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        (dir, path, store)
    }

    /// Compiling a lease statement again on every call was once the largest single cost of a
    /// lease (a bound LIMIT makes SQLite recompile after each bind): leasing again with a new
    /// time and a new limit reuses the compiled statements, and each call still leases what
    /// it should, earliest due first, up to the cap.
    #[tokio::test]
    async fn the_lease_statements_are_compiled_once_and_lease_in_due_order() {
        let (dir, path, store) = fresh("lease").await;
        drop(store);
        let conn = Connection::open(&path).expect("connection");
        let batch = (0..10)
            .map(|i| {
                let mut d = new(&format!("lease-compiled-{i:04}-key"), "{}");
                d.first_attempt_at_ms += 10 - i; // the last enqueued is due first
                d
            })
            .collect::<Vec<_>>();
        // A second destination with nothing due yet: its due index is read, its leases are
        // not counted.
        let mut later = new("lease-compiled-later-key", "{}");
        later.url = "https://later.example/hook".into();
        later.destination = "https://later.example".into();
        later.first_attempt_at_ms += 3_600_000;
        super::super::enqueue::insert_rows(&conn, &[later]).expect("enqueue");
        let ids: Vec<i64> = super::super::enqueue::insert_rows(&conn, &batch)
            .expect("enqueue")
            .iter()
            .map(|e| e.id.0)
            .collect();
        let mut leased = Vec::new();
        // The last call asks for 4 but the cap (8 live leases) leaves room for 2.
        for (i, (limit, room)) in [(1u32, 1), (2, 2), (3, 3), (4, 2)].into_iter().enumerate() {
            let req = LeaseRequest {
                now_ms: 1_800_000_001_000 + i as i64,
                limit,
                lease_ms: 60_000,
                per_destination: 8,
                exclude: Vec::new(),
            };
            let got = lease_rows(&conn, &req).expect("lease");
            assert_eq!(got.len(), room, "call {i}");
            leased.extend(got.iter().map(|d| d.id.0));
        }
        // The 8 earliest due, each once.
        let mut expected: Vec<i64> = ids.iter().rev().copied().take(8).collect();
        let mut got = leased.clone();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
        for (sql, runs) in [
            (LEASE_DESTINATIONS, 4),
            (LIVE_LEASES, 4),
            (DUE, 8),
            (LEASE_ROW, 8),
            (LEASED_ROW, 8),
        ] {
            let statement = conn.prepare_cached(sql).expect("cached");
            assert_eq!(
                statement.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "compiled again: {sql}"
            );
            assert_eq!(
                statement.get_status(rusqlite::StatementStatus::Run),
                runs,
                "{sql}"
            );
        }
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A delivery whose body is missing (its row deleted by hand) fails the lease with an
    /// error naming it, and nothing of that lease is kept: no delivery is leased without its
    /// body, and the others stay due.
    #[tokio::test]
    async fn a_missing_body_fails_the_lease_and_leases_nothing() {
        use crate::delivery::store::{OutboxStore, StoreError};
        let (dir, path, store) = fresh("lease-body").await;
        let ids = store
            .enqueue(vec![
                new("missing-body-key-0001", "{}"),
                new("missing-body-key-0002", "{}"),
            ])
            .await
            .expect("enqueue");
        let conn = Connection::open(&path).expect("connection");
        conn.execute("DELETE FROM outbox_bodies WHERE id = ?", [ids[1].id.0])
            .expect("delete a body");
        let request = LeaseRequest {
            now_ms: 1_800_000_001_000,
            limit: 10,
            lease_ms: 60_000,
            per_destination: 10,
            exclude: Vec::new(),
        };
        let err = store.lease(request).await.expect_err("a body is missing");
        assert!(
            matches!(&err, StoreError::Corrupt { detail } if detail.contains(&ids[1].id.0.to_string())),
            "{err:?}"
        );
        let counts = store.counts(1_800_000_001_000).await.expect("counts");
        assert_eq!((counts.pending, counts.in_flight), (2, 0));
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
