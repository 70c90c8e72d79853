//! Encodings shared by the SQL stores.

use super::StoreError;

/// A [`StoreError::Corrupt`] saying what could not be read.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        detail: what.to_string(),
    }
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
) -> Result<Option<crate::delivery::policy::ErrorClass>, StoreError> {
    name.map(|name| {
        crate::delivery::policy::ErrorClass::from_name(&name)
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
/// `summary_from_row`, `leased_from_row` and `attempt_from_row`. Both SQL stores keep the same
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

        /// Reads a row the lease returned.
        fn leased_from_row(
            row: &$row,
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
                extra_headers: $crate::delivery::store::codec::headers_from_json(&headers)?,
                attempts: get_u32(row, "attempts")?,
                created_at_ms: get(row, "created_at")?,
                deadline_ms: get(row, "deadline_at")?,
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
                    class: $crate::delivery::policy::ErrorClass::from_name(&class_name)
                        .ok_or_else(|| {
                            $crate::delivery::store::codec::corrupt(format!(
                                "unknown error class {class_name:?}"
                            ))
                        })?,
                    error: get(row, "error")?,
                    response_body: body.map(bytes::Bytes::from),
                },
            })
        }
    };
}

/// `impl OutboxStore` for a SQL store whose inherent methods carry the shared names
/// (`enqueue_batch`, `lease_batch`, ...); extra trait items follow in braces.
macro_rules! delegate_outbox_store {
    ($store:ty { $($extra:item)* }) => {
        impl OutboxStore for $store {
            fn enqueue(
                &self,
                batch: Vec<NewDelivery>,
            ) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>> {
                Box::pin(self.enqueue_batch(batch))
            }
            fn lease(
                &self,
                request: LeaseRequest,
            ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
                Box::pin(self.lease_batch(request))
            }
            fn complete(
                &self,
                batch: Vec<Completion>,
                rules: DisableRules,
                now_ms: i64,
            ) -> BoxFuture<'_, Result<Vec<CompleteStatus>, StoreError>> {
                Box::pin(self.complete_batch(batch, rules, now_ms))
            }
            fn release(
                &self,
                leases: Vec<(DeliveryId, LeaseToken)>,
                at_ms: i64,
            ) -> BoxFuture<'_, Result<u64, StoreError>> {
                Box::pin(self.release_leases(leases, at_ms))
            }
            fn next_due(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
                Box::pin(self.next_due_at())
            }
            fn counts(&self, now_ms: i64) -> BoxFuture<'_, Result<StateCounts, StoreError>> {
                Box::pin(self.state_counts(now_ms))
            }
            fn list(
                &self,
                query: ListQuery,
            ) -> BoxFuture<'_, Result<Vec<DeliverySummary>, StoreError>> {
                Box::pin(self.list_deliveries(query))
            }
            fn get(
                &self,
                id: DeliveryId,
            ) -> BoxFuture<'_, Result<Option<DeliveryDetail>, StoreError>> {
                Box::pin(self.get_delivery(id))
            }
            fn requeue(
                &self,
                selection: RequeueSelection,
                now_ms: i64,
                deadline_ms: i64,
            ) -> BoxFuture<'_, Result<u64, StoreError>> {
                Box::pin(self.requeue_deliveries(selection, now_ms, deadline_ms))
            }
            fn purge(&self, selection: PurgeSelection) -> BoxFuture<'_, Result<u64, StoreError>> {
                Box::pin(self.purge_deliveries(selection))
            }
            fn destinations(&self) -> BoxFuture<'_, Result<Vec<DestinationInfo>, StoreError>> {
                Box::pin(self.list_destinations())
            }
            fn set_destination_enabled(
                &self,
                key: String,
                enabled: bool,
                reason: Option<String>,
                now_ms: i64,
                deadline_ms: i64,
            ) -> BoxFuture<'_, Result<bool, StoreError>> {
                Box::pin(self.set_enabled(key, enabled, reason, now_ms, deadline_ms))
            }
            $($extra)*
        }
    };
}

pub(crate) use {delegate_outbox_store, row_codecs};
