//! Leasing due deliveries, giving leases back, and the next due time.

use super::{PostgresStore, db_err, get, get_u32};
use crate::delivery::store::codec::headers_from_json;
use crate::delivery::store::{
    DeliveryId, LeaseRequest, LeaseToken, Leased, LeasedDelivery, StoreError,
};
use sqlx::postgres::PgRow;

/// The CTE `ended` that takes leases off their lease call's live count (migration 10):
/// `rows` names a CTE with one row per lease ended, its `destination` and `token`.
pub(super) fn ended_leases(rows: &str) -> String {
    format!(
        "ended AS ( \
             UPDATE outbox_leases l SET live = l.live - e.n \
             FROM (SELECT destination, token, count(*)::integer AS n FROM {rows} \
                   GROUP BY destination, token) e \
             WHERE l.destination = e.destination AND l.token = e.token \
         )"
    )
}

/// Giving leases back: each delivery still leased under its token is due at `$1`, and its
/// lease comes off the count.
static RELEASE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH rel AS ( \
             UPDATE outbox_deliveries d SET next_attempt_at = $1, lease_token = NULL, lease_expires_at = NULL \
             FROM unnest($2::bigint[], $3::bigint[]) AS r(id, token) \
             WHERE d.id = r.id AND d.lease_token = r.token AND d.state = 'pending' \
             RETURNING d.destination, r.token \
         ), {} SELECT count(*) FROM rel",
        ended_leases("rel")
    )
});

impl PostgresStore {
    pub(super) async fn lease_batch(
        &self,
        req: LeaseRequest,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        Ok(match self.lease_or_idle(req).await? {
            Leased::Deliveries(leased) => leased,
            Leased::Nothing { .. } => Vec::new(),
        })
    }

    /// One call of `outbox_lease_next` (migration 9): the leased rows, or when there are none,
    /// one row without an id that carries the next due time.
    pub(super) async fn lease_or_idle(&self, req: LeaseRequest) -> Result<Leased, StoreError> {
        if req.limit == 0 {
            return Ok(Leased::Deliveries(Vec::new()));
        }
        let token = LeaseToken::random();
        let lease_ms = req.lease_ms.max(1);
        let expires = req.now_ms.saturating_add(lease_ms);
        let rows = sqlx::query("SELECT * FROM outbox_lease_next($1, $2, $3, $4, $5, $6)")
            .bind(req.now_ms)
            .bind(i32::try_from(req.limit).unwrap_or(i32::MAX))
            .bind(lease_ms)
            .bind(i32::try_from(req.per_destination.max(1)).unwrap_or(i32::MAX))
            .bind(&req.exclude)
            .bind(token.0)
            .fetch_all(&self.work)
            .await
            .map_err(db_err)?;
        if let [row] = rows.as_slice()
            && get::<Option<i64>>(row, "id")?.is_none()
        {
            return Ok(Leased::Nothing {
                next_due: get(row, "next_due")?,
            });
        }
        leased_from_rows(&rows, token, expires).map(Leased::Deliveries)
    }

    pub(super) async fn release_leases(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().map(|(i, t)| (i.0, t.0)).unzip();
        let released: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(RELEASE_SQL.as_str()))
            .bind(at_ms)
            .bind(&ids)
            .bind(&tokens)
            .fetch_one(&self.work)
            .await
            .map_err(db_err)?;
        let released = u64::try_from(released).unwrap_or(0);
        if released > 0 {
            // Another worker may take them at once.
            let _ = self.notify().await;
        }
        Ok(released)
    }

    pub(super) async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        // Per destination, the deliveries in flight and its first one not leased (migration 10).
        sqlx::query_scalar("SELECT outbox_next_due()")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }
}

/// Reads a row the lease returned.
fn leased_from_row(
    row: &PgRow,
    token: LeaseToken,
    lease_expires_ms: i64,
) -> Result<LeasedDelivery, StoreError> {
    let body: Vec<u8> = get(row, "body")?;
    let headers: String = get(row, "extra_headers")?;
    Ok(LeasedDelivery {
        id: DeliveryId(get(row, "id")?),
        token,
        lease_expires_ms,
        url: get(row, "url")?,
        destination: get(row, "destination")?,
        body: bytes::Bytes::from(body),
        idempotency_key: get(row, "idempotency_key")?,
        kind: get(row, "kind")?,
        extra_headers: headers_from_json(&headers)?,
        attempts: get_u32(row, "attempts")?,
        created_at_ms: get(row, "created_at")?,
        deadline_ms: get(row, "deadline_at")?,
    })
}

/// Reads the rows a lease returned, in id order.
fn leased_from_rows(
    rows: &[PgRow],
    token: LeaseToken,
    lease_expires_ms: i64,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let mut out = rows
        .iter()
        .map(|row| leased_from_row(row, token, lease_expires_ms))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|d| d.id);
    Ok(out)
}
