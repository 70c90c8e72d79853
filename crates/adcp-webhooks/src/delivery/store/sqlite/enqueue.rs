//! Enqueueing: a batch of webhooks in one transaction.

use super::{SqliteStore, db_err};
use crate::delivery::store::codec::headers_to_json;
use crate::delivery::store::{DeliveryId, Enqueued, NewDelivery, StoreError};

impl SqliteStore {
    pub(super) async fn enqueue_batch(
        &self,
        batch: Vec<NewDelivery>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let mut out = Vec::with_capacity(batch.len());
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for d in batch {
            sqlx::query(
                "INSERT INTO outbox_destinations (key) VALUES (?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&d.destination)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, extra_headers, state, \
                 created_at, deadline_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) \
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
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            match inserted {
                Some(id) => out.push(Enqueued {
                    id: DeliveryId(id),
                    created: true,
                }),
                None => {
                    // The first stored webhook wins, whatever this one's body: typed payloads
                    // fill timestamps when serialized, so a retried enqueue rarely matches
                    // byte for byte, and a second delivery is exactly what the key prevents.
                    let id: i64 = sqlx::query_scalar(
                        "SELECT id FROM outbox_deliveries WHERE url = ? AND idempotency_key = ?",
                    )
                    .bind(&d.url)
                    .bind(&d.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    out.push(Enqueued {
                        id: DeliveryId(id),
                        created: false,
                    });
                }
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }
}
