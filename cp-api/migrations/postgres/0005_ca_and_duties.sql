-- The certificate authority, shared by every replica: its rotation state and the built-in
-- CA's keys, sealed (envelope encryption) under the key-encryption key each replica reads
-- from a file; the KEK itself is never stored here. `revision` makes each write a
-- compare-and-swap, and `issued_until` is the horizon no SVID of the active backend
-- outlives, raised by whichever replica signs.
CREATE TABLE ca (
    id           BIGINT   PRIMARY KEY CHECK (id = 1),
    revision     BIGINT  NOT NULL,
    trust_domain TEXT    NOT NULL,
    kek_id       TEXT    NOT NULL,
    sealed       BYTEA   NOT NULL,
    issued_until BIGINT  NOT NULL DEFAULT 0, -- unix seconds
    updated_at   BIGINT  NOT NULL            -- unix milliseconds
);
-- Duties one replica at a time performs (CA rotation steps, registry expiry, fetching
-- JWKS), each under a lease its holder renews; another replica takes it once it lapses.
CREATE TABLE duties (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    since      BIGINT  NOT NULL, -- unix milliseconds
    expires_at BIGINT  NOT NULL  -- unix milliseconds
);
-- The trust bundle sequence each proxy has acknowledged, written by the replica serving
-- it: the rotation's holder waits for every proxy, whichever replica it follows.
ALTER TABLE members ADD COLUMN trust_bundle BIGINT NOT NULL DEFAULT 0;
