//! Enqueueing: a batch of webhooks in one transaction, on the store's own connection or on
//! one the caller owns.

use super::{SqliteStore, WriteGate, db_err};
use crate::delivery::store::codec::headers_to_json;
use crate::delivery::store::group::{GroupResults, for_each_caller};
use crate::delivery::store::{DeliveryId, Enqueued, NewDelivery, StoreError};
use sqlx::{Connection, SqliteConnection, SqlitePool};

impl SqliteStore {
    /// Through the group commit: concurrent callers share transactions (see `group`).
    pub(super) async fn enqueue_batch(
        &self,
        batch: Vec<NewDelivery>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.group.enqueue(batch).await
    }
}

/// Write a group of callers' batches in one `BEGIN IMMEDIATE` transaction: a lone batch
/// directly, several each inside a savepoint, so a conflict undoes only its own caller's rows.
/// Every caller whose rows were written shares the commit's outcome.
pub(crate) async fn write_group(
    pool: SqlitePool,
    gate: WriteGate,
    mut batches: Vec<Vec<NewDelivery>>,
) -> GroupResults {
    let n = batches.len();
    let _turn = gate.lock().await;
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            let e = db_err(e);
            return (0..n).map(|_| Err(for_each_caller(&e))).collect();
        }
    };
    let mut results: GroupResults = Vec::with_capacity(n);
    if n == 1 {
        let batch = batches.pop().unwrap_or_default();
        match insert_batch(&mut tx, batch).await {
            Ok(out) => results.push(Ok(out)),
            // Dropping the transaction rolls it back.
            Err(e) => return vec![Err(e)],
        }
    } else {
        for batch in batches {
            results.push(
                async {
                    let mut savepoint = tx.begin().await.map_err(db_err)?;
                    match insert_batch(&mut savepoint, batch).await {
                        Ok(out) => {
                            savepoint.commit().await.map_err(db_err)?;
                            Ok(out)
                        }
                        Err(e) => {
                            savepoint.rollback().await.map_err(db_err)?;
                            Err(e)
                        }
                    }
                }
                .await,
            );
        }
    }
    if results.iter().all(Result::is_err) {
        return results;
    }
    if let Err(e) = tx.commit().await {
        let e = db_err(e);
        for r in &mut results {
            if r.is_ok() {
                *r = Err(for_each_caller(&e));
            }
        }
    }
    results
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

/// Two statements per webhook (three for a repeat): the destination row, the delivery, and
/// for a key already stored, the stored row's id and digest. The caller commits or rolls
/// back; on a conflict the rows inserted so far are left for that rollback.
async fn insert_batch(
    conn: &mut SqliteConnection,
    batch: Vec<NewDelivery>,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        let digest = d.digest();
        sqlx::query(
            "INSERT INTO outbox_destinations (key) VALUES (?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(&d.destination)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, extra_headers, state, \
             created_at, deadline_at, next_attempt_at, content_digest) \
             VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) \
             ON CONFLICT (url, idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(&d.destination)
        .bind(&d.url)
        .bind(&d.idempotency_key)
        .bind(&d.kind)
        .bind(d.body.as_ref())
        .bind(headers_to_json(&d.extra_headers))
        .bind(d.created_at_ms)
        .bind(d.deadline_ms)
        .bind(d.first_attempt_at_ms)
        .bind(&digest[..])
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        if let Some(id) = inserted {
            out.push(Enqueued {
                id: DeliveryId(id),
                created: true,
            });
            continue;
        }
        let (id, stored): (i64, Option<Vec<u8>>) = sqlx::query_as(
            "SELECT id, content_digest FROM outbox_deliveries WHERE url = ? AND idempotency_key = ?",
        )
        .bind(&d.url)
        .bind(&d.idempotency_key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        // Rows stored before digests were recorded have none: they count as repeats.
        if stored.is_some_and(|s| s.as_slice() != digest.as_slice()) {
            return Err(StoreError::IdempotencyConflict {
                url: crate::redact::redact_url(&d.url),
                idempotency_key: d.idempotency_key,
            });
        }
        out.push(Enqueued {
            id: DeliveryId(id),
            created: false,
        });
    }
    Ok(out)
}
