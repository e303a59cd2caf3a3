-- The change feed: one row per write other replicas must follow (policies, shadow
-- candidates, traffic, authn, labels, the deny-list), in the write's own transaction. A
-- replica that sees the sequence move re-reads what changed.
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT    NOT NULL,
    at   INTEGER NOT NULL -- unix milliseconds
);
