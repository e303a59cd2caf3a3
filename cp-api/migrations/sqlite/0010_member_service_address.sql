-- The address clients outside the mesh dial for each registered workload's app (host:port;
-- '' when the proxy announced none): what intercepting callers map original destinations
-- to services by.
ALTER TABLE members ADD COLUMN service_address TEXT NOT NULL DEFAULT '';
