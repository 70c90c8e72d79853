//! Enqueueing: a batch of webhooks in one statement.

use super::{PostgresStore, db_err, get};
use crate::delivery::store::codec::{corrupt, headers_to_json};
use crate::delivery::store::{DeliveryId, Enqueued, NewDelivery, StoreError};
use std::collections::HashSet;

/// Inserts a batch: the destination rows and the deliveries from arrays, in one statement.
/// Rows whose URL and key exist come back with `new_id` NULL and, when their first copy was
/// committed before this statement began, `old_id` set.
const ENQUEUE_SQL: &str = "\
WITH input AS ( \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], \
                         $7::bigint[], $8::bigint[], $9::bigint[]) WITH ORDINALITY \
        AS i(url, destination, idempotency_key, kind, body, extra_headers, created_at, deadline_at, \
             first_attempt_at, ord) \
), dest AS ( \
    INSERT INTO outbox_destinations (key) SELECT DISTINCT destination FROM input \
    ON CONFLICT (key) DO NOTHING \
), ins AS ( \
    INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, extra_headers, state, \
                                   created_at, deadline_at, next_attempt_at) \
    SELECT destination, url, idempotency_key, kind, body, extra_headers, 'pending', created_at, deadline_at, \
           first_attempt_at FROM input ORDER BY ord \
    ON CONFLICT (url, idempotency_key) DO NOTHING \
    RETURNING id, url, idempotency_key \
) \
SELECT i.ord, ins.id AS new_id, \
       (SELECT e.id FROM outbox_deliveries e WHERE e.url = i.url AND e.idempotency_key = i.idempotency_key) \
         AS old_id \
FROM input i LEFT JOIN ins ON ins.url = i.url AND ins.idempotency_key = i.idempotency_key \
ORDER BY i.ord";

impl PostgresStore {
    pub(super) async fn enqueue_batch(
        &self,
        batch: Vec<NewDelivery>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        let mut urls = Vec::with_capacity(n);
        let mut destinations = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut bodies = Vec::with_capacity(n);
        let mut headers = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(n);
        let mut deadlines = Vec::with_capacity(n);
        let mut firsts = Vec::with_capacity(n);
        for d in batch {
            urls.push(d.url);
            destinations.push(d.destination);
            keys.push(d.idempotency_key);
            kinds.push(d.kind);
            bodies.push(d.body.to_vec());
            headers.push(headers_to_json(&d.extra_headers));
            created.push(d.created_at_ms);
            deadlines.push(d.deadline_ms);
            firsts.push(d.first_attempt_at_ms);
        }
        let rows = sqlx::query(ENQUEUE_SQL)
            .bind(&urls)
            .bind(&destinations)
            .bind(&keys)
            .bind(&kinds)
            .bind(&bodies)
            .bind(&headers)
            .bind(&created)
            .bind(&deadlines)
            .bind(&firsts)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        if rows.len() != n {
            return Err(corrupt(format!(
                "enqueue of {n} webhooks returned {} rows",
                rows.len()
            )));
        }
        let mut out = Vec::with_capacity(n);
        let mut seen = HashSet::with_capacity(n);
        let mut missing = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let new_id: Option<i64> = get(row, "new_id")?;
            let old_id: Option<i64> = get(row, "old_id")?;
            // The same URL and key twice in one batch: the first is stored, the rest are not.
            let first_in_batch = seen.insert((&urls[i], &keys[i]));
            match (new_id, old_id) {
                (Some(id), _) => out.push(Enqueued {
                    id: DeliveryId(id),
                    created: first_in_batch,
                }),
                (None, Some(id)) => out.push(Enqueued {
                    id: DeliveryId(id),
                    created: false,
                }),
                (None, None) => {
                    // Stored by a transaction that committed while this statement ran.
                    missing.push(i);
                    out.push(Enqueued {
                        id: DeliveryId(0),
                        created: false,
                    });
                }
            }
        }
        for i in missing {
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM outbox_deliveries WHERE url = $1 AND idempotency_key = $2",
            )
            .bind(&urls[i])
            .bind(&keys[i])
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            let id = id.ok_or_else(|| {
                corrupt("a webhook was refused as a duplicate, but its first copy is not in the outbox (purged at the same moment?); enqueue it again")
            })?;
            out[i].id = DeliveryId(id);
        }
        Ok(out)
    }
}
