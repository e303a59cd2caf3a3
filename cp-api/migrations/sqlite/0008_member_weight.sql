-- Each registered endpoint's weight in its callers' balancers; registrations kept from
-- before weights existed have the default.
ALTER TABLE members ADD COLUMN weight INTEGER NOT NULL DEFAULT 100;
