//! Enqueueing: a batch of webhooks in one call of `outbox_enqueue_batch`, one round trip,
//! on the store's pool or on a connection the caller owns.

use super::{PostgresStore, db_err, get};
use crate::delivery::store::codec::{corrupt, headers_to_json};
use crate::delivery::store::group::GroupResults;
use crate::delivery::store::{DeliveryId, Enqueued, NewDelivery, StoreError};
use sqlx::PgPool;

/// One statement: the function inserts the destinations and the deliveries, reads every row
/// back, and raises (undoing the statement) on a conflict.
const ENQUEUE_SQL: &str = "SELECT ord, id, created FROM outbox_enqueue_batch(\
    $1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::bytea[], \
    $8::bigint[], $9::bigint[], $10::bigint[])";

/// The SQLSTATE `outbox_enqueue_batch` raises on a conflict (DETAIL: `batch row N`).
const CONFLICT_STATE: &str = "AC409";

impl PostgresStore {
    /// Through the group commit: concurrent callers share statements and commits (see
    /// `group`).
    pub(super) async fn enqueue_batch(
        &self,
        batch: Vec<NewDelivery>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.group.enqueue(batch).await
    }
}

/// Write a group of callers' batches: a lone batch as one statement, as always; several as
/// one statement over all their rows (one round trip, one commit and one `NOTIFY` for the
/// group), each caller given its own slice of the rows. If that statement fails (a conflict
/// in one caller's rows, say), nothing of it was stored, and each batch is written again on
/// its own, so the failure is only its own caller's.
pub(crate) async fn write_group(pool: PgPool, mut batches: Vec<Vec<NewDelivery>>) -> GroupResults {
    if batches.len() == 1 {
        let batch = batches.pop().unwrap_or_default();
        return vec![enqueue_with(&pool, batch).await];
    }
    let all: Vec<NewDelivery> = batches.iter().flatten().cloned().collect();
    if let Ok(mut rows) = enqueue_with(&pool, all).await {
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches.iter().rev() {
            results.push(Ok(rows.split_off(rows.len() - batch.len())));
        }
        results.reverse();
        return results;
    }
    let mut results = Vec::with_capacity(batches.len());
    for batch in batches {
        results.push(enqueue_with(&pool, batch).await);
    }
    results
}

/// Store `batch` with exactly one statement on `executor` (a pool, or the caller's
/// connection, inside its transaction). An error aborts the statement, so none of the batch
/// is stored; inside a transaction PostgreSQL then refuses further statements until it is
/// rolled back (or rolled back to a savepoint).
pub(crate) async fn enqueue_with<'c, E>(
    executor: E,
    batch: Vec<NewDelivery>,
) -> Result<Vec<Enqueued>, StoreError>
where
    E: sqlx::PgExecutor<'c>,
{
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
    let mut digests = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut deadlines = Vec::with_capacity(n);
    let mut firsts = Vec::with_capacity(n);
    for d in batch {
        digests.push(d.digest().to_vec());
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
        .bind(&digests)
        .bind(&created)
        .bind(&deadlines)
        .bind(&firsts)
        .fetch_all(executor)
        .await
        .map_err(|e| enqueue_err(e, &urls, &keys))?;
    if rows.len() != n {
        return Err(corrupt(format!(
            "enqueue of {n} webhooks returned {} rows",
            rows.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    for (i, row) in rows.iter().enumerate() {
        let ord: i64 = get(row, "ord")?;
        if usize::try_from(ord).ok() != Some(i + 1) {
            return Err(corrupt(format!(
                "enqueue returned row {ord} in place {}",
                i + 1
            )));
        }
        out.push(Enqueued {
            id: DeliveryId(get(row, "id")?),
            created: get(row, "created")?,
        });
    }
    Ok(out)
}

/// A conflict names the row's URL and key (never its body); anything else maps as usual.
fn enqueue_err(e: sqlx::Error, urls: &[String], keys: &[String]) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some(CONFLICT_STATE)
    {
        let detail = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.detail())
            .and_then(|d| d.strip_prefix("batch row "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| Some((urls.get(i)?, keys.get(i)?)));
        if let Some((url, key)) = detail {
            return StoreError::IdempotencyConflict {
                url: crate::redact::redact_url(url),
                idempotency_key: key.clone(),
            };
        }
    }
    db_err(e)
}
