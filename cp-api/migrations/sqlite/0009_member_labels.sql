-- Each registered endpoint's labels (JSON object, e.g. {"version":"v2"}): what traffic
-- subsets select by. Registrations kept from before labels existed have none.
ALTER TABLE members ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
