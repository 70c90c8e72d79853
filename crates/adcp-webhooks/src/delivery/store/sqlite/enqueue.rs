//! Enqueueing: a batch of webhooks in one transaction, on the store's connection thread or
//! on a connection the caller owns (its own transaction).

use super::conn::{Request, sqlite_err};
use super::{SqliteStore, db_err};
use crate::delivery::store::codec::headers_to_json;
use crate::delivery::store::{DeliveryId, Enqueued, NewDelivery, StoreError};
use sqlx::{Connection, SqliteConnection};

const INSERT_DESTINATION: &str =
    "INSERT INTO outbox_destinations (key) VALUES (?) ON CONFLICT (key) DO NOTHING";

// No RETURNING (see `conn`): the new id is the connection's last inserted rowid, and no change
// means the key was already stored.
const INSERT_DELIVERY: &str = "INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, extra_headers, state, \
     created_at, deadline_at, next_attempt_at, content_digest) \
     VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) \
     ON CONFLICT (url, idempotency_key) DO NOTHING";

// The body of a delivery just inserted, under its id (bodies have a table of their own: see
// migration 0007).
const INSERT_BODY: &str = "INSERT INTO outbox_bodies (id, body) VALUES (?, ?)";

const STORED_DIGEST: &str =
    "SELECT id, content_digest FROM outbox_deliveries WHERE url = ? AND idempotency_key = ?";

impl SqliteStore {
    /// On the connection thread, which writes concurrent callers' batches in one transaction
    /// (see `conn`).
    pub(super) async fn enqueue_batch(
        &self,
        batch: Vec<NewDelivery>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.conn.call(|reply| Request::Enqueue(batch, reply)).await
    }
}

/// A repeat of a stored key: its id, or the conflict when its digest differs. Rows stored
/// before digests were recorded have none: they count as repeats.
fn repeat(
    d: &NewDelivery,
    digest: &[u8; 32],
    id: i64,
    stored: Option<Vec<u8>>,
) -> Result<Enqueued, StoreError> {
    if stored.is_some_and(|s| s.as_slice() != digest.as_slice()) {
        return Err(StoreError::IdempotencyConflict {
            url: crate::redact::redact_url(&d.url),
            idempotency_key: d.idempotency_key.clone(),
        });
    }
    Ok(Enqueued {
        id: DeliveryId(id),
        created: false,
    })
}

/// Three statements per webhook (two when it goes to the same destination as the previous
/// one; for a repeat, the refused insert and the stored digest), on the connection thread
/// inside its transaction. On a conflict the rows inserted so far are left for the thread's
/// rollback.
pub(super) fn insert_rows(
    conn: &rusqlite::Connection,
    batch: &[NewDelivery],
) -> Result<Vec<Enqueued>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    let mut last_destination: Option<&str> = None;
    for d in batch {
        let digest = d.digest();
        if last_destination != Some(d.destination.as_str()) {
            conn.prepare_cached(INSERT_DESTINATION)
                .and_then(|mut s| s.execute([&d.destination]))
                .map_err(sqlite_err)?;
            last_destination = Some(&d.destination);
        }
        let changed = conn
            .prepare_cached(INSERT_DELIVERY)
            .and_then(|mut s| {
                s.execute(rusqlite::params![
                    d.destination,
                    d.url,
                    d.idempotency_key,
                    d.kind,
                    headers_to_json(&d.extra_headers),
                    d.created_at_ms,
                    d.deadline_ms,
                    d.first_attempt_at_ms,
                    &digest[..],
                ])
            })
            .map_err(sqlite_err)?;
        if changed == 1 {
            let id = conn.last_insert_rowid();
            conn.prepare_cached(INSERT_BODY)
                .and_then(|mut s| s.execute(rusqlite::params![id, d.body.as_ref()]))
                .map_err(sqlite_err)?;
            out.push(Enqueued {
                id: DeliveryId(id),
                created: true,
            });
            continue;
        }
        let (id, stored) = conn
            .prepare_cached(STORED_DIGEST)
            .and_then(|mut s| {
                s.query_row(rusqlite::params![d.url, d.idempotency_key], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
                })
            })
            .map_err(sqlite_err)?;
        out.push(repeat(d, &digest, id, stored)?);
    }
    Ok(out)
}

/// Store `batch` through `conn`, all or none: inside a savepoint when `conn` is already in a
/// transaction (the caller's), else in a transaction of its own. On an error (a conflict
/// included) none of the batch's rows are kept and the caller's transaction stays usable.
pub(crate) async fn enqueue_on(
    conn: &mut SqliteConnection,
    batch: Vec<NewDelivery>,
) -> Result<Vec<Enqueued>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await.map_err(db_err)?;
    let out = insert_batch(&mut tx, batch).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(out)
}

/// The same on a connection the caller owns, through sqlx: three statements per webhook. The
/// caller commits or rolls back; on a conflict the rows inserted so far are left for that
/// rollback.
async fn insert_batch(
    conn: &mut SqliteConnection,
    batch: Vec<NewDelivery>,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        let digest = d.digest();
        sqlx::query(INSERT_DESTINATION)
            .bind(&d.destination)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let inserted = sqlx::query(INSERT_DELIVERY)
            .bind(&d.destination)
            .bind(&d.url)
            .bind(&d.idempotency_key)
            .bind(&d.kind)
            .bind(headers_to_json(&d.extra_headers))
            .bind(d.created_at_ms)
            .bind(d.deadline_ms)
            .bind(d.first_attempt_at_ms)
            .bind(&digest[..])
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        if inserted.rows_affected() == 1 {
            let id = inserted.last_insert_rowid();
            sqlx::query(INSERT_BODY)
                .bind(id)
                .bind(d.body.as_ref())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            out.push(Enqueued {
                id: DeliveryId(id),
                created: true,
            });
            continue;
        }
        let (id, stored): (i64, Option<Vec<u8>>) = sqlx::query_as(STORED_DIGEST)
            .bind(&d.url)
            .bind(&d.idempotency_key)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        out.push(repeat(&d, &digest, id, stored)?);
    }
    Ok(out)
}
