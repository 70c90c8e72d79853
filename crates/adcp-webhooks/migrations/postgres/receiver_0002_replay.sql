-- Nonces of verified requests (adcp_webhooks::verify::SharedReplayStore), so a captured
-- request replayed to another replica or after a restart is refused. Kept until the
-- signature's window (plus skew) has passed; expired rows are deleted by the store's inline
-- cleanup.
CREATE TABLE IF NOT EXISTS receiver_replay (
    keyid     TEXT   NOT NULL,
    nonce     TEXT   NOT NULL,
    forget_at BIGINT NOT NULL,
    PRIMARY KEY (keyid, nonce)
);

CREATE INDEX IF NOT EXISTS receiver_replay_forget_at ON receiver_replay (forget_at);
