-- Labels operators set on services: every workload of the service carries them, as the
-- principal's tags when it calls and as the resource's tags when it is called.
CREATE TABLE service_labels (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    -- A JSON object of key -> value.
    labels     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    author     TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- What each policy version changed in the access matrix the control plane computed before
-- applying it (NULL for versions applied before the gate existed).
ALTER TABLE policy_versions ADD COLUMN widened INTEGER;
ALTER TABLE policy_versions ADD COLUMN narrowed INTEGER;
