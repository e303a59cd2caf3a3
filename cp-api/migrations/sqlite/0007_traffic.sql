-- Traffic settings as operators applied them (`meshctl traffic apply`): the whole document,
-- canonical JSON with every default filled in. The latest version is in force; a rollback is
-- a new version with an older one's document.
CREATE TABLE traffic_versions (
    version     INTEGER PRIMARY KEY,
    doc         TEXT    NOT NULL,
    author      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL, -- unix milliseconds
    changes     INTEGER NOT NULL, -- settings changed from the version before
    rollback_of INTEGER           -- the version restored, for a rollback
);
