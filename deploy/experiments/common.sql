-- Shared by the experiments' setups: `-v keys` defaults to 0; the 1,000
-- tenants; job and batch ids from a number (pg_temp.jid, pg_temp.bid).
\if :{?keys}
\else
\set keys 0
\endif
INSERT INTO tenants (id, name) SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 't' || g FROM generate_series(0, 999) g;
CREATE FUNCTION pg_temp.jid(g bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$ SELECT ('0190a000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid $$;
CREATE FUNCTION pg_temp.bid(g bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$ SELECT ('0190b000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid $$;
