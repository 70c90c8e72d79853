//! Encodings, row readers and reads shared by the SQL stores; each engine keeps its own SQL.

use super::StoreError;

/// A [`StoreError::Corrupt`] saying what could not be read.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        detail: what.to_string(),
    }
}

/// Whether a database not migrated on open (PostgreSQL always, SQLite read-only) holds the
/// schema version this version needs: `found` is its newest applied migration, `what` names
/// it in the error, `hint` says how to migrate.
pub(crate) fn check_schema_version(
    found: i64,
    latest: i64,
    what: &str,
    hint: &str,
) -> Result<(), StoreError> {
    if found == latest {
        return Ok(());
    }
    let detail = if found > latest {
        format!(
            "{what} is at schema version {found}, newer than this version knows ({latest}); \
             upgrade adcp-webhooks"
        )
    } else {
        format!("{what} is at schema version {found}, this version needs {latest}; {hint}")
    };
    Err(StoreError::Migrate { detail })
}

/// Extra headers as stored: a JSON array of `[name, value]` pairs.
pub(crate) fn headers_to_json(headers: &[(String, String)]) -> String {
    serde_json::Value::Array(
        headers
            .iter()
            .map(|(k, v)| serde_json::Value::Array(vec![k.clone().into(), v.clone().into()]))
            .collect(),
    )
    .to_string()
}

/// The inverse of [`headers_to_json`].
pub(crate) fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("extra headers: {e}")))
}

/// An attempt's recorded headers as stored (a JSON array of `[name, value]` pairs, bounded
/// and masked by [`recorded_headers`](super::recorded_headers)); `None` when not recorded.
pub(crate) fn recorded_headers_text(headers: Option<&Vec<(String, String)>>) -> Option<String> {
    headers.map(|h| headers_to_json(&super::recorded_headers(h)))
}

/// The inverse of [`recorded_headers_text`].
pub(crate) fn recorded_headers_from_text(
    column: &str,
    text: Option<String>,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(format!("column {column}: {e}"))))
        .transpose()
}

/// A stored count or number that must fit a `u32`.
pub(crate) fn to_u32(column: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(format!("column {column} holds {v}")))
}

/// A stored HTTP status.
pub(crate) fn to_status(column: &str, v: Option<i64>) -> Result<Option<u16>, StoreError> {
    v.map(|v| u16::try_from(v).map_err(|_| corrupt(format!("column {column} holds {v}"))))
        .transpose()
}

/// A stored error class name.
pub(crate) fn to_class(
    name: Option<String>,
) -> Result<Option<crate::delivery::classify::ErrorClass>, StoreError> {
    name.map(|name| {
        crate::delivery::classify::ErrorClass::from_name(&name)
            .ok_or_else(|| corrupt(format!("unknown error class {name:?}")))
    })
    .transpose()
}

/// The recorded prefix of a response body.
pub(crate) fn recorded_response(body: Option<&bytes::Bytes>) -> Option<Vec<u8>> {
    body.map(|b| {
        b.get(..super::MAX_RECORDED_RESPONSE_BYTES)
            .unwrap_or(b)
            .to_vec()
    })
}

/// Row readers for one SQL engine's row type: `get`, `get_u32`, `get_status`,
/// `summary_from_row`, `counts_from_row`, `detail_from_rows`,
/// `destination_from_row` and `attempt_from_row`. Both SQL stores keep the same
/// column names and 64-bit integer columns, so one definition reads both.
macro_rules! row_codecs {
    ($row:ty, $db:ty) => {
        fn get<'r, T>(row: &'r $row, column: &str) -> Result<T, StoreError>
        where
            T: sqlx::Decode<'r, $db> + sqlx::Type<$db>,
        {
            sqlx::Row::try_get(row, column).map_err(|e| {
                $crate::delivery::store::codec::corrupt(format!("column {column}: {e}"))
            })
        }

        fn get_u32(row: &$row, column: &str) -> Result<u32, StoreError> {
            $crate::delivery::store::codec::to_u32(column, get(row, column)?)
        }

        fn get_status(row: &$row, column: &str) -> Result<Option<u16>, StoreError> {
            $crate::delivery::store::codec::to_status(column, get(row, column)?)
        }

        /// Reads the columns of `SUMMARY_COLUMNS`.
        fn summary_from_row(row: &$row) -> Result<DeliverySummary, StoreError> {
            let state_name: String = get(row, "state")?;
            let state = DeliveryState::from_name(&state_name).ok_or_else(|| {
                $crate::delivery::store::codec::corrupt(format!("unknown state {state_name:?}"))
            })?;
            Ok(DeliverySummary {
                id: DeliveryId(get(row, "id")?),
                state,
                url: get(row, "url")?,
                destination: get(row, "destination")?,
                idempotency_key: get(row, "idempotency_key")?,
                kind: get(row, "kind")?,
                created_at_ms: get(row, "created_at")?,
                deadline_ms: get(row, "deadline_at")?,
                next_attempt_at_ms: if state == DeliveryState::Pending {
                    Some(get(row, "next_attempt_at")?)
                } else {
                    None
                },
                attempts: get_u32(row, "attempts")?,
                total_attempts: get_u32(row, "total_attempts")?,
                last_status: get_status(row, "last_status")?,
                last_error_class: $crate::delivery::store::codec::to_class(get(
                    row,
                    "last_error_class",
                )?)?,
                last_attempt_at_ms: get(row, "last_attempt_at")?,
                delivered_at_ms: get(row, "delivered_at")?,
                dead_at_ms: get(row, "dead_at")?,
                dead_reason_code: get(row, "dead_reason_code")?,
                dead_reason: get(row, "dead_reason")?,
            })
        }

        /// Reads the `pending`, `in_flight`, `retrying`, `paused`, `delivered` and `dead`
        /// counts of a state-count query.
        fn counts_from_row(row: &$row) -> Result<StateCounts, StoreError> {
            let n = |c: &str| -> Result<u64, StoreError> {
                let v: i64 = get(row, c)?;
                u64::try_from(v).map_err(|_| {
                    $crate::delivery::store::codec::corrupt(format!("count {c} is {v}"))
                })
            };
            Ok(StateCounts {
                pending: n("pending")?,
                in_flight: n("in_flight")?,
                retrying: n("retrying")?,
                paused: n("paused")?,
                delivered: n("delivered")?,
                dead: n("dead")?,
            })
        }

        /// A delivery from its row (`SUMMARY_COLUMNS`, `body`, `extra_headers`) and the rows
        /// of its attempt log.
        fn detail_from_rows(
            row: &$row,
            attempt_rows: &[$row],
        ) -> Result<DeliveryDetail, StoreError> {
            let body: Vec<u8> = get(row, "body")?;
            let headers: String = get(row, "extra_headers")?;
            Ok(DeliveryDetail {
                summary: summary_from_row(row)?,
                body: bytes::Bytes::from(body),
                extra_headers: $crate::delivery::store::codec::headers_from_json(&headers)?,
                attempts: attempt_rows
                    .iter()
                    .map(attempt_from_row)
                    .collect::<Result<Vec<_>, _>>()?,
            })
        }

        /// Reads a destination row (`outbox_destinations.*`) with its `pending` count.
        fn destination_from_row(row: &$row) -> Result<DestinationInfo, StoreError> {
            let pending: i64 = get(row, "pending")?;
            Ok(DestinationInfo {
                key: get(row, "key")?,
                // SQLite stores the flag as an integer; sqlx reads any non-zero one as true.
                disabled: get(row, "disabled")?,
                disabled_reason: get(row, "disabled_reason")?,
                disabled_at_ms: get(row, "disabled_at")?,
                consecutive_failures: get_u32(row, "consecutive_failures")?,
                failing_since_ms: get(row, "failing_since")?,
                open_until_ms: get(row, "open_until")?,
                pending: u64::try_from(pending).unwrap_or(0),
            })
        }

        /// Reads a row of the attempt log.
        fn attempt_from_row(row: &$row) -> Result<AttemptInfo, StoreError> {
            let class_name: String = get(row, "error_class")?;
            let body: Option<Vec<u8>> = get(row, "response_body")?;
            Ok(AttemptInfo {
                number: get_u32(row, "attempt")?,
                record: AttemptRecord {
                    started_at_ms: get(row, "started_at")?,
                    latency_ms: get(row, "latency_ms")?,
                    status: get_status(row, "status")?,
                    class: $crate::delivery::classify::ErrorClass::from_name(&class_name)
                        .ok_or_else(|| {
                            $crate::delivery::store::codec::corrupt(format!(
                                "unknown error class {class_name:?}"
                            ))
                        })?,
                    error: get(row, "error")?,
                    response_body: body.map(bytes::Bytes::from),
                    request_headers: $crate::delivery::store::codec::recorded_headers_from_text(
                        "request_headers",
                        get(row, "request_headers")?,
                    )?,
                    response_headers: $crate::delivery::store::codec::recorded_headers_from_text(
                        "response_headers",
                        get(row, "response_headers")?,
                    )?,
                },
            })
        }
    };
}

/// The columns [`row_codecs!`]'s `summary_from_row` reads, as a literal for `concat!`.
macro_rules! summary_columns {
    () => {
        "id, state, url, destination, idempotency_key, kind, created_at, deadline_at, \
         next_attempt_at, attempts, total_attempts, last_status, last_error_class, \
         last_attempt_at, delivered_at, dead_at, dead_reason_code, dead_reason"
    };
}

/// The reads both SQL stores share, as inherent methods of `$store` (`state_counts`,
/// `list_deliveries`, `get_delivery`, `list_destinations`). The SQL is the engine's own, in
/// constants of the invoking module: `COUNTS_SQL` (binds now), `LIST_SQL` (binds state,
/// destination, after-id, limit), `DETAIL_SQL` and `ATTEMPTS_SQL` (bind the id),
/// `DESTINATIONS_SQL`. Needs the [`row_codecs!`] readers and the engine's `db_err` in scope.
macro_rules! shared_reads {
    ($store:ty) => {
        impl $store {
            pub(super) async fn state_counts(&self, now: i64) -> Result<StateCounts, StoreError> {
                let row = sqlx::query(COUNTS_SQL)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)?;
                counts_from_row(&row)
            }

            pub(super) async fn list_deliveries(
                &self,
                q: ListQuery,
            ) -> Result<Vec<DeliverySummary>, StoreError> {
                let rows = sqlx::query(LIST_SQL)
                    .bind(q.state.map(DeliveryState::as_str))
                    .bind(q.destination)
                    .bind(q.after.map_or(0, |id| id.0))
                    .bind(i64::from(q.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(summary_from_row).collect()
            }

            pub(super) async fn get_delivery(
                &self,
                id: DeliveryId,
            ) -> Result<Option<DeliveryDetail>, StoreError> {
                let Some(row) = sqlx::query(DETAIL_SQL)
                    .bind(id.0)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
                else {
                    return Ok(None);
                };
                let attempt_rows = sqlx::query(ATTEMPTS_SQL)
                    .bind(id.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                detail_from_rows(&row, &attempt_rows).map(Some)
            }

            pub(super) async fn list_destinations(
                &self,
            ) -> Result<Vec<DestinationInfo>, StoreError> {
                let rows = sqlx::query(DESTINATIONS_SQL)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(destination_from_row).collect()
            }
        }
    };
}

pub(crate) use {row_codecs, shared_reads, summary_columns};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_version_other_than_this_versions_is_refused_with_what_to_do() {
        assert!(check_schema_version(7, 7, "the database", "migrate it").is_ok());
        let older = check_schema_version(6, 7, "the database", "run `outbox migrate`")
            .expect_err("older")
            .to_string();
        assert!(
            older.contains("the database is at schema version 6, this version needs 7")
                && older.contains("run `outbox migrate`"),
            "{older}"
        );
        let newer = check_schema_version(8, 7, "/srv/outbox.db", "migrate it")
            .expect_err("newer")
            .to_string();
        assert!(
            newer.contains(
                "/srv/outbox.db is at schema version 8, newer than this version knows (7)"
            ) && newer.contains("upgrade adcp-webhooks")
                && !newer.contains("migrate it"),
            "{newer}"
        );
    }
}
