//! Leasing due deliveries, giving leases back, and the next due time.

use super::conn::{Request, col, sqlite_err};
use super::{SqliteStore, db_err};
use crate::delivery::store::codec::{corrupt, headers_from_json, to_u32};
use crate::delivery::store::{DeliveryId, LeaseRequest, LeaseToken, LeasedDelivery, StoreError};
use rusqlite::{Connection, OptionalExtension};

// Per destination: its earliest due rows, at most its room under the cap, read from
// the per-destination due index, so one destination's backlog never hides another's
// work and the cost follows the rows leased. The cap counts every live lease of the
// destination, whichever worker holds it (one write transaction at a time sees them
// all); a half-open breaker (open_until passed but not reset by a success) admits one
// probe. Pushing next_attempt_at to the lease expiry is what returns a crashed
// worker's work. Only pending rows hold a lease token, so live leases are counted
// from the lease index alone; the CROSS JOIN keeps the destinations as the outer loop
// (a plain JOIN lets the planner scan every delivery).
//
// The cap is written into the statement, not bound, and the batch's limit is a row number,
// not a LIMIT: SQLite recompiles a statement on the next step after any parameter used in a
// LIMIT is bound again (every call), which made compiling this statement the largest single
// cost of a lease. Each destination's due rows are read up to `reach`: the cap, or less when
// the batch is smaller (no destination can give more than either), rounded up to a power of
// two so that a store caches a handful of statements, not one per batch size.
fn lease_sql(cap: u32, limit: u32) -> String {
    let cap = cap.max(1);
    let reach = limit
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(cap)
        .min(cap);
    LEASE_SQL
        .replace("{cap}", &cap.to_string())
        .replace("{reach}", &reach.to_string())
}

const LEASE_SQL: &str = "UPDATE outbox_deliveries SET lease_token = ?1, lease_expires_at = ?2, next_attempt_at = ?2 \
             WHERE id IN ( \
               WITH room AS ( \
                   SELECT t.key, (CASE WHEN t.open_until > 0 THEN 1 ELSE {cap} END) - ( \
                       SELECT COUNT(*) FROM outbox_deliveries l WHERE l.destination = t.key \
                         AND l.lease_token IS NOT NULL AND l.lease_expires_at > ?3 \
                     ) AS free \
                   FROM outbox_destinations t \
                   WHERE t.disabled = 0 AND t.open_until <= ?3 \
                     AND t.key NOT IN (SELECT value FROM json_each(?4)) \
                     AND EXISTS (SELECT 1 FROM outbox_deliveries e WHERE e.destination = t.key \
                       AND e.state = 'pending' AND e.next_attempt_at <= ?3) \
               ), c AS ( \
                   SELECT d.id, d.destination, d.next_attempt_at FROM room r \
                   CROSS JOIN outbox_deliveries d ON d.id IN ( \
                     SELECT x.id FROM outbox_deliveries x WHERE x.destination = r.key \
                       AND x.state = 'pending' AND x.next_attempt_at <= ?3 \
                     ORDER BY x.next_attempt_at, x.id LIMIT {reach}) \
                   WHERE r.free > 0 \
               ), ranked AS ( \
                   SELECT c.id, c.next_attempt_at, r.free, ROW_NUMBER() OVER ( \
                     PARTITION BY c.destination ORDER BY c.next_attempt_at, c.id) AS rn \
                   FROM c JOIN room r ON r.key = c.destination \
               ) \
               SELECT id FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY next_attempt_at, id) AS k \
                 FROM ranked WHERE rn <= free) WHERE k <= ?5) \
             RETURNING id, url, destination, idempotency_key, kind, extra_headers, attempts, created_at, \
               deadline_at";

// A leased delivery's body, by primary key (bodies have a table of their own so that the
// lease and the outcome do not rewrite them: see migration 0007).
const BODY_SQL: &str = "SELECT body FROM outbox_bodies WHERE id = ?";

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
    let token = LeaseToken::random();
    let expires = req.now_ms.saturating_add(req.lease_ms.max(1));
    let exclude = serde_json::Value::Array(req.exclude.iter().map(|k| k.clone().into()).collect())
        .to_string();
    let mut statement = conn
        .prepare_cached(&lease_sql(req.per_destination, req.limit))
        .map_err(sqlite_err)?;
    let mut rows = statement
        .query(rusqlite::params![
            token.0,
            expires,
            req.now_ms,
            exclude,
            i64::from(req.limit),
        ])
        .map_err(sqlite_err)?;
    let mut leased = Vec::with_capacity(req.limit as usize);
    while let Some(row) = rows.next().map_err(sqlite_err)? {
        let headers: String = col(row, 5)?;
        leased.push(LeasedDelivery {
            id: DeliveryId(col(row, 0)?),
            token,
            lease_expires_ms: expires,
            url: col(row, 1)?,
            destination: col(row, 2)?,
            idempotency_key: col(row, 3)?,
            kind: col(row, 4)?,
            body: bytes::Bytes::new(),
            extra_headers: headers_from_json(&headers)?,
            attempts: to_u32("attempts", col(row, 6)?)?,
            created_at_ms: col(row, 7)?,
            deadline_ms: col(row, 8)?,
        });
    }
    drop(rows);
    // The bodies, by primary key. A delivery without one (its row deleted by hand) fails the
    // whole lease, which the thread rolls back: nothing is leased without its body.
    let mut body = conn.prepare_cached(BODY_SQL).map_err(sqlite_err)?;
    for d in &mut leased {
        let bytes: Vec<u8> = body
            .query_row([d.id.0], |row| row.get(0))
            .optional()
            .map_err(sqlite_err)?
            .ok_or_else(|| corrupt(format!("delivery {} has no row in outbox_bodies", d.id.0)))?;
        d.body = bytes::Bytes::from(bytes);
    }
    leased.sort_by_key(|d| d.id);
    Ok(leased)
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

    /// Compiling the lease statement again on every call was the largest single cost of a
    /// lease (a bound LIMIT makes SQLite recompile after each bind): leasing again with a new
    /// time and a new limit reuses the compiled statement, and each call still leases what it
    /// should, earliest due first.
    #[tokio::test]
    async fn the_lease_statement_is_compiled_once_and_leases_in_due_order() {
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
        for limit in [2, 4] {
            // Limits 3 and 4 share one statement, which ran twice.
            let statement = conn.prepare_cached(&lease_sql(8, limit)).expect("cached");
            assert_eq!(
                statement.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "the lease statement was compiled again"
            );
            assert_eq!(
                statement.get_status(rusqlite::StatementStatus::Run),
                if limit == 4 { 2 } else { 1 }
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
