//! Leasing due deliveries, giving leases back, and the next due time.

use super::conn::{Request, col, sqlite_err};
use super::{SqliteStore, db_err};
use crate::delivery::store::codec::{headers_from_json, to_u32};
use crate::delivery::store::{DeliveryId, LeaseRequest, LeaseToken, LeasedDelivery, StoreError};
use rusqlite::Connection;

// Per destination: its earliest due rows, at most its room under the cap, read from
// the per-destination due index, so one destination's backlog never hides another's
// work and the cost follows the rows leased. The cap counts every live lease of the
// destination, whichever worker holds it (one write transaction at a time sees them
// all); a half-open breaker (open_until passed but not reset by a success) admits one
// probe. Pushing next_attempt_at to the lease expiry is what returns a crashed
// worker's work. Only pending rows hold a lease token, so live leases are counted
// from the lease index alone; the CROSS JOIN keeps the destinations as the outer loop
// (a plain JOIN lets the planner scan every delivery).
const LEASE_SQL: &str = "UPDATE outbox_deliveries SET lease_token = ?1, lease_expires_at = ?2, next_attempt_at = ?2 \
             WHERE id IN ( \
               WITH room AS ( \
                   SELECT t.key, (CASE WHEN t.open_until > 0 THEN 1 ELSE ?5 END) - ( \
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
                     ORDER BY x.next_attempt_at, x.id LIMIT ?5) \
                   WHERE r.free > 0 \
               ), ranked AS ( \
                   SELECT c.id, c.next_attempt_at, r.free, ROW_NUMBER() OVER ( \
                     PARTITION BY c.destination ORDER BY c.next_attempt_at, c.id) AS rn \
                   FROM c JOIN room r ON r.key = c.destination \
               ) \
               SELECT id FROM ranked WHERE rn <= free ORDER BY next_attempt_at, id LIMIT ?6) \
             RETURNING id, url, destination, idempotency_key, kind, body, extra_headers, attempts, created_at, \
               deadline_at";

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
            "SELECT next_attempt_at FROM outbox_deliveries WHERE state = 'pending' ORDER BY next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
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
    let mut statement = conn.prepare_cached(LEASE_SQL).map_err(sqlite_err)?;
    let mut rows = statement
        .query(rusqlite::params![
            token.0,
            expires,
            req.now_ms,
            exclude,
            i64::from(req.per_destination.max(1)),
            i64::from(req.limit),
        ])
        .map_err(sqlite_err)?;
    let mut leased = Vec::with_capacity(req.limit as usize);
    while let Some(row) = rows.next().map_err(sqlite_err)? {
        let body: Vec<u8> = col(row, 5)?;
        let headers: String = col(row, 6)?;
        leased.push(LeasedDelivery {
            id: DeliveryId(col(row, 0)?),
            token,
            lease_expires_ms: expires,
            url: col(row, 1)?,
            destination: col(row, 2)?,
            idempotency_key: col(row, 3)?,
            kind: col(row, 4)?,
            body: bytes::Bytes::from(body),
            extra_headers: headers_from_json(&headers)?,
            attempts: to_u32("attempts", col(row, 7)?)?,
            created_at_ms: col(row, 8)?,
            deadline_ms: col(row, 9)?,
        });
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
