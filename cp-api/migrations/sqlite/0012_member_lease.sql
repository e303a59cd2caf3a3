-- Each registration's lease: when its proxy last heartbeated (at any replica; unix ms) and
-- what its app's health check said. Replicas serve every member whose lease is fresh, and
-- forget a row only once its lease has lapsed.
ALTER TABLE members ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN app_health INTEGER NOT NULL DEFAULT 0;
