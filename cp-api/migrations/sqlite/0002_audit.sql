-- An index of the audit records proxies shipped, for queries. The records themselves (and
-- the checkpoints) are kept as verifiable spools under <data-dir>/audit/received/.
CREATE TABLE audit_records (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    writer    TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL, -- unix nanoseconds
    type      TEXT    NOT NULL,
    decision  TEXT,
    action    TEXT,
    principal TEXT,
    resource  TEXT,
    path      TEXT,
    policies  TEXT,             -- comma-separated
    line      TEXT    NOT NULL,
    UNIQUE (writer, seq)
);
CREATE INDEX audit_by_time ON audit_records (time);
CREATE INDEX audit_by_principal ON audit_records (principal, time);
CREATE INDEX audit_by_resource ON audit_records (resource, time);
CREATE INDEX audit_by_decision ON audit_records (decision, time);
