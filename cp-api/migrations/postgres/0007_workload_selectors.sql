-- Who may take a service's identity from its proxies' Workload API (`meshctl workload
-- attest`): a JSON array of selectors, every one must match the calling process.
CREATE TABLE workload_selectors (
    namespace  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    selectors  TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    author     TEXT   NOT NULL,
    PRIMARY KEY (namespace, name)
);
