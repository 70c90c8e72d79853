//! What the outbox store says when it cannot do what was asked.

/// Why the store could not do what was asked. Nothing was changed when an error is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database is full: the disk, or the database's configured size limit.
    #[error(
        "the outbox database is full (disk full or its size limit reached), so nothing was stored: free disk space or raise the limit, then retry: {detail}"
    )]
    Full {
        /// The engine's message.
        detail: String,
    },
    /// The database is read-only.
    #[error(
        "the outbox database is read-only, so nothing was stored: open it writable (check file permissions and the read-only option): {detail}"
    )]
    ReadOnly {
        /// The engine's message.
        detail: String,
    },
    /// The database stayed locked by another writer past the busy timeout.
    #[error(
        "the outbox database is locked by another process; retry, or raise the busy timeout: {detail}"
    )]
    Busy {
        /// The engine's message.
        detail: String,
    },
    /// The database could not be opened.
    #[error("cannot open the outbox database {target}: {detail}")]
    Open {
        /// The path or URL.
        target: String,
        /// What went wrong.
        detail: String,
    },
    /// The schema could not be created or upgraded.
    #[error("cannot prepare the outbox schema: {detail}")]
    Migrate {
        /// What went wrong.
        detail: String,
    },
    /// A stored row could not be read back.
    #[error(
        "the outbox database holds a row it cannot read ({detail}); was it written by a newer version?"
    )]
    Corrupt {
        /// What was wrong.
        detail: String,
    },
    /// A body encrypted at rest could not be opened: its key is not configured, or the
    /// stored bytes were altered or moved to another row.
    #[error(
        "cannot open a body encrypted at rest ({detail}); configure its key in ADCP_OUTBOX_KEY or ADCP_OUTBOX_PREVIOUS_KEYS"
    )]
    Sealed {
        /// Which delivery, which key id, and why.
        detail: String,
    },
    /// The URL and idempotency key are already in the outbox with a different body or
    /// different extra headers. The whole batch was refused; the first body stays the one
    /// delivered. Enqueue new content under a new idempotency key.
    #[error(
        "idempotency_conflict: idempotency key {idempotency_key} is already in the outbox for {url} with a different body or extra headers, so nothing was stored (the first body is the one delivered); use a new idempotency key for new content"
    )]
    IdempotencyConflict {
        /// The destination URL (any password masked).
        url: String,
        /// The idempotency key.
        idempotency_key: String,
    },
    /// Any other database error.
    #[error("outbox database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}
