-- The control-plane replicas on this database: each renews its row every second, so
-- `meshctl status` on any of them lists them all and which are alive.
CREATE TABLE replicas (
    id         TEXT    PRIMARY KEY,
    grpc       TEXT    NOT NULL,
    api        TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    started_at INTEGER NOT NULL, -- unix milliseconds
    last_seen  INTEGER NOT NULL  -- unix milliseconds
);
