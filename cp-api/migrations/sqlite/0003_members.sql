-- The registry's members, so that a restarted control plane keeps serving their endpoints
-- until they heartbeat again (or miss three heartbeats and are dropped).
CREATE TABLE members (
    instance      TEXT PRIMARY KEY,
    spiffe_id     TEXT NOT NULL,
    service       TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    admin         TEXT NOT NULL,
    serial        TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);
