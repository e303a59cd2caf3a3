-- Trust domains this mesh federates with (`meshctl federation add`): where each one's
-- bundle endpoint is and how it authenticates, and the bundle last fetched from it (the
-- bootstrap bundle until the first fetch), in the SPIFFE bundle format.
CREATE TABLE federations (
    trust_domain       TEXT PRIMARY KEY,
    endpoint           TEXT NOT NULL,
    -- `https_spiffe` or `https_web`.
    profile            TEXT NOT NULL,
    -- https_spiffe: the SPIFFE ID the endpoint must present.
    endpoint_spiffe_id TEXT NOT NULL,
    -- https_web: the roots (PEM) the endpoint's certificate must chain to; empty: the
    -- system's.
    endpoint_ca        TEXT NOT NULL,
    bundle             TEXT NOT NULL,
    -- Unix milliseconds; 0: never fetched.
    refreshed_at       INTEGER NOT NULL,
    next_refresh       INTEGER NOT NULL,
    last_error         TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    author             TEXT NOT NULL
);
