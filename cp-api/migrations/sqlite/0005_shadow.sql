-- Candidate policy bundles run in shadow mode: every proxy decides with the candidate too,
-- and only the enforced bundle acts. At most one is current (ended_at IS NULL).
CREATE TABLE shadow_candidates (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    hash         TEXT    NOT NULL,
    policies     INTEGER NOT NULL,
    installed_at INTEGER NOT NULL, -- unix milliseconds
    author       TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    -- A JSON array of {"name", "text"}, as applied.
    files        TEXT    NOT NULL,
    ended_at     INTEGER,
    -- `cleared`, `replaced`, or `promoted to version N`.
    outcome      TEXT
);

-- The candidate bundle's hash of a shadow record, so a candidate's report is one indexed
-- query.
ALTER TABLE audit_records ADD COLUMN candidate TEXT;
CREATE INDEX audit_by_candidate ON audit_records (candidate, time) WHERE candidate IS NOT NULL;
