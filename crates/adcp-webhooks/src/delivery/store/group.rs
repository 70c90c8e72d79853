//! Group commit for concurrent enqueues on one store handle.
//!
//! A durable enqueue waits for its commit to reach the disk (SQLite `synchronous=FULL`,
//! PostgreSQL's WAL flush), and that wait, not the insert, is what one webhook per transaction
//! costs. When several tasks enqueue at once through one store, the requests that arrive while
//! a commit is flushing are written together in the next transaction: one flush for all of
//! them. Each caller still returns only once its own rows are committed, with its own result
//! (a conflict in one request does not fail the others), so what an enqueue promises is
//! unchanged; a lone caller is written at once, exactly as without grouping.
//!
//! The writer is a task spawned when a request finds none running; it drains the queue and
//! stops when the queue is empty. A caller that stops waiting (its future dropped) may still
//! have its rows committed, as a request already sent to a server may be: enqueueing again
//! with the same idempotency key is then a repeat, not a second webhook.
//!
//! The PostgreSQL store groups through [`Grouping`]; the SQLite store groups on its connection
//! thread (`sqlite::conn`), which shares this module's limit and error copies.

use super::StoreError;
#[cfg(feature = "postgres")]
pub(crate) use queue::{GroupResults, Grouping};

/// The most webhooks written in one grouped transaction; requests beyond it wait for the next.
pub(crate) const MAX_GROUP_ROWS: usize = 1_000;

/// The queue of enqueues and its writer task (the PostgreSQL store's group commit).
#[cfg(feature = "postgres")]
mod queue {
    use super::{MAX_GROUP_ROWS, StoreError};
    use crate::delivery::store::{Enqueued, NewDelivery};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex, MutexGuard};
    use tokio::sync::oneshot;

    /// One caller's batch and where its result goes.
    struct Request {
        batch: Vec<NewDelivery>,
        reply: oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
    }

    /// One result per request of a group, in order.
    pub(crate) type GroupResults = Vec<Result<Vec<Enqueued>, StoreError>>;

    /// What an engine supplies: write these requests' batches in one transaction (each request
    /// all or nothing on its own) and return one result per request, in order.
    pub(crate) type WriteGroup = Arc<
        dyn Fn(Vec<Vec<NewDelivery>>) -> Pin<Box<dyn Future<Output = GroupResults> + Send>>
            + Send
            + Sync,
    >;

    /// A store's group commit: the queue shared by its clones, and the engine's writer.
    #[derive(Clone)]
    pub(crate) struct Grouping {
        queue: Arc<GroupCommit>,
        write: WriteGroup,
    }

    impl std::fmt::Debug for Grouping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.queue.fmt(f)
        }
    }

    impl Grouping {
        /// Group commits written by `write`.
        pub(crate) fn new(write: WriteGroup) -> Self {
            Self {
                queue: Arc::default(),
                write,
            }
        }

        /// Enqueue `batch` in the next grouped transaction; returns once it is committed (or
        /// refused).
        pub(crate) async fn enqueue(
            &self,
            batch: Vec<NewDelivery>,
        ) -> Result<Vec<Enqueued>, StoreError> {
            self.queue.enqueue(batch, &self.write).await
        }
    }

    #[derive(Default)]
    struct Queue {
        waiting: Vec<Request>,
        writing: bool,
    }

    /// The queue of enqueues waiting for the next grouped commit.
    #[derive(Default)]
    struct GroupCommit {
        queue: Mutex<Queue>,
    }

    impl std::fmt::Debug for GroupCommit {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let q = self.lock();
            f.debug_struct("GroupCommit")
                .field("waiting", &q.waiting.len())
                .field("writing", &q.writing)
                .finish()
        }
    }

    impl GroupCommit {
        fn lock(&self) -> MutexGuard<'_, Queue> {
            self.queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// Enqueue `batch` in the next grouped transaction written by `write`; returns once it is
        /// committed (or refused).
        async fn enqueue(
            self: &Arc<Self>,
            batch: Vec<NewDelivery>,
            write: &WriteGroup,
        ) -> Result<Vec<Enqueued>, StoreError> {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            let (reply, result) = oneshot::channel();
            let start_writer = {
                let mut q = self.lock();
                q.waiting.push(Request { batch, reply });
                !std::mem::replace(&mut q.writing, true)
            };
            if start_writer {
                tokio::spawn(Arc::clone(self).write_all(Arc::clone(write)));
            }
            result.await.unwrap_or_else(|_| {
                Err(StoreError::Busy {
                    detail:
                        "the enqueue writer stopped before committing this batch (the runtime is \
                             shutting down?); nothing is known to be stored, so enqueue it again"
                            .into(),
                })
            })
        }

        /// The writer: take what is waiting (up to [`MAX_GROUP_ROWS`] webhooks, at least one
        /// request), write it in one transaction, answer each caller, until nothing waits.
        async fn write_all(self: Arc<Self>, write: WriteGroup) {
            loop {
                let group = {
                    let mut q = self.lock();
                    if q.waiting.is_empty() {
                        q.writing = false;
                        return;
                    }
                    let mut rows = 0;
                    let take = q
                        .waiting
                        .iter()
                        .take_while(|r| {
                            rows += r.batch.len();
                            rows <= MAX_GROUP_ROWS
                        })
                        .count()
                        .max(1);
                    q.waiting.drain(..take).collect::<Vec<_>>()
                };
                let (batches, replies): (Vec<_>, Vec<_>) =
                    group.into_iter().map(|r| (r.batch, r.reply)).unzip();
                let results = write(batches).await;
                debug_assert_eq!(results.len(), replies.len());
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that stopped waiting is no one's to tell.
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// The same error again for another caller of a failed grouped transaction: the variants that
/// carry only text are copied, an engine error is kept as its message.
pub(crate) fn for_each_caller(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full { detail } => StoreError::Full {
            detail: detail.clone(),
        },
        StoreError::ReadOnly { detail } => StoreError::ReadOnly {
            detail: detail.clone(),
        },
        StoreError::Busy { detail } => StoreError::Busy {
            detail: detail.clone(),
        },
        other => {
            StoreError::Database(format!("the grouped enqueue transaction failed: {other}").into())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::delivery::store::{Enqueued, NewDelivery, OutboxStore};
    use bytes::Bytes;
    use std::future::Future;

    pub(crate) fn new(key: &str, body: &str) -> NewDelivery {
        NewDelivery {
            url: "https://buyer.example/hook".to_owned(),
            destination: "https://buyer.example".to_owned(),
            body: Bytes::from(body.to_owned()),
            idempotency_key: key.to_owned(),
            kind: "raw".to_owned(),
            extra_headers: vec![],
            created_at_ms: 1_800_000_000_000,
            first_attempt_at_ms: 1_800_000_000_000,
            deadline_ms: 1_800_086_400_000,
            content_digest: None,
        }
    }

    /// Three callers in one group: the second repeats a stored key with another body. It alone
    /// is refused; the first and third are stored, each answered with its own rows, and a
    /// repeat inside the group is reported as one.
    pub(crate) async fn a_conflict_fails_only_its_own_caller<F, Fut>(
        store: &dyn OutboxStore,
        write: F,
    ) where
        F: FnOnce(Vec<Vec<NewDelivery>>) -> Fut,
        Fut: Future<Output = Vec<Result<Vec<Enqueued>, StoreError>>>,
    {
        let first = store
            .enqueue(vec![new("whk_group_stored_000001", "{\"v\":1}")])
            .await
            .expect("first enqueue");
        let results = write(vec![
            vec![
                new("whk_group_caller1_00001", "{}"),
                new("whk_group_caller1_00002", "{}"),
            ],
            vec![
                new("whk_group_caller2_00001", "{}"),
                new("whk_group_stored_000001", "{\"v\":2}"),
            ],
            vec![
                new("whk_group_caller3_00001", "{}"),
                new("whk_group_caller1_00001", "{}"),
            ],
        ])
        .await;
        assert_eq!(results.len(), 3);
        let one = results[0].as_ref().expect("caller 1 stored");
        assert!(matches!(
            &results[1],
            Err(StoreError::IdempotencyConflict { idempotency_key, .. })
                if idempotency_key == "whk_group_stored_000001"
        ));
        let three = results[2].as_ref().expect("caller 3 stored");
        assert_eq!(one.len(), 2);
        assert_eq!(three.len(), 2);
        assert!(one.iter().all(|e| e.created));
        assert!(three[0].created);
        // Caller 3's second row repeats caller 1's first: the same delivery, not a new one.
        assert!(!three[1].created);
        assert_eq!(three[1].id, one[0].id);
        for (id, key) in [
            (one[0].id, "whk_group_caller1_00001"),
            (one[1].id, "whk_group_caller1_00002"),
            (three[0].id, "whk_group_caller3_00001"),
        ] {
            let row = store.get(id).await.expect("read").expect("stored");
            assert_eq!(row.summary.idempotency_key, key);
        }
        // Caller 2's good row went with its conflicting one; the stored row kept its body.
        let counts = store.counts(1_800_000_000_000).await.expect("counts");
        assert_eq!(counts.pending, 4, "{counts:?}");
        let stored = store.get(first[0].id).await.expect("read").expect("stored");
        assert_eq!(&stored.body[..], b"{\"v\":1}");
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn postgres_group_writes_each_caller_all_or_nothing() {
        use crate::delivery::store::postgres::{
            PostgresOptions, PostgresStore, enqueue::write_group,
        };
        use sqlx::Connection as _;
        let admin = std::env::var("ADCP_TEST_POSTGRES_URL")
            .expect("ADCP_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server");
        let name = format!("adcp_group_{}", std::process::id());
        let (base, _) = admin.rsplit_once('/').expect("a database path");
        let admin_sql = |sql: String| {
            let admin = admin.clone();
            async move {
                let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .expect("admin SQL");
                let _ = conn.close().await;
            }
        };
        admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        admin_sql(format!("CREATE DATABASE {name}")).await;
        let store =
            PostgresStore::open(PostgresOptions::new(format!("{base}/{name}")).migrate(true))
                .await
                .expect("open");
        let pool = store.pool().clone();
        a_conflict_fails_only_its_own_caller(&store, |b| write_group(pool, b)).await;
        store.close().await;
        admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
}
