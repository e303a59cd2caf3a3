-- Each shipped chain as the control plane keeps it, so that any replica continues it when
-- its proxy fails over: where it stands (its last record, that record's hash, the last
-- record a kept checkpoint signs), and the checkpoints kept, exact lines. The records
-- themselves are `audit_records.line`, exact lines too.
CREATE TABLE audit_chains (
    writer         TEXT    PRIMARY KEY,
    seq            INTEGER NOT NULL,
    head           TEXT    NOT NULL,
    signed_through INTEGER NOT NULL
);
CREATE TABLE audit_checkpoints (
    writer TEXT    NOT NULL,
    last   INTEGER NOT NULL,
    line   TEXT    NOT NULL,
    PRIMARY KEY (writer, last)
);
