-- Who may take a service's identity from its proxies' Workload API: the selectors operators
-- set with `meshctl workload attest` (a JSON array of strings, every one must match the
-- calling process). A service without a row keeps the selectors of its proxies' own
-- configuration.
CREATE TABLE workload_selectors (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    selectors  TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    author     TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
