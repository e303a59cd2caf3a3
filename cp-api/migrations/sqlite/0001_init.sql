-- Policy versions: each apply or rollback is a new row; files belong to exactly one version.
CREATE TABLE policy_versions (
    version          INTEGER PRIMARY KEY,
    hash             TEXT    NOT NULL,
    policies         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL, -- unix milliseconds
    author           TEXT    NOT NULL,
    message          TEXT    NOT NULL,
    rolled_back_from INTEGER
);

CREATE TABLE policy_files (
    version  INTEGER NOT NULL REFERENCES policy_versions (version),
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    text     TEXT    NOT NULL,
    PRIMARY KEY (version, position)
);

-- One-time join tokens: the secret is kept only as its SHA-256.
CREATE TABLE join_tokens (
    id            TEXT    PRIMARY KEY,
    secret_sha256 BLOB    NOT NULL,
    spiffe_id     TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);

-- Operator bearer tokens, by the SHA-256 of the token.
CREATE TABLE operator_tokens (
    token_sha256 BLOB    PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    spiffe_id    TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Every SVID issued.
CREATE TABLE certificates (
    serial     TEXT    PRIMARY KEY,
    spiffe_id  TEXT    NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    kind       TEXT    NOT NULL -- issue | renew
);
CREATE INDEX certificates_by_identity ON certificates (spiffe_id, issued_at);

-- Identities and serials proxies refuse at the handshake.
CREATE TABLE deny_list (
    kind       TEXT    NOT NULL, -- spiffe_id | serial
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);

-- Operator actions, allowed or not.
CREATE TABLE operator_actions (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    principal TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    allowed   INTEGER NOT NULL,
    detail    TEXT    NOT NULL
);
