-- End-user authentication as operators applied it (`meshctl authn apply`): a JSON document
-- of JWT providers and the services that accept them. The latest version is in force.
CREATE TABLE authn_versions (
    version    INTEGER PRIMARY KEY,
    doc        TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    created_at INTEGER NOT NULL -- unix milliseconds
);

-- The last good keys fetched for each provider configured with a jwks_uri, so a restarted
-- control plane pushes keys before its first fetch succeeds.
CREATE TABLE authn_keys (
    provider   TEXT PRIMARY KEY,
    jwks       TEXT    NOT NULL,
    fetched_at INTEGER NOT NULL -- unix milliseconds
);
