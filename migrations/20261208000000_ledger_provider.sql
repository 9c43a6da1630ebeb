-- Usage by provider (issue #20): which provider a ledger row's job was sent
-- to, by the name the configuration file gives it (`default` without a
-- file), so `GET /v1/usage?group_by=provider` can say what each provider
-- was paid for. Written by the worker's finish, for the jobs it finishes
-- and for the identical jobs coalesced with them (they shared that call).
--
-- Nullable, with no default: a row answered by offpeak's own caches (an
-- exact or semantic hit at submission or at release) called no provider,
-- and says so with NULL; usage reports those under the key `cache`, a name
-- no provider may take.
ALTER TABLE usage_ledger ADD COLUMN provider TEXT;

-- Before this migration every deployment had one provider, `default` (there
-- was no configuration file to name others), so the rows of jobs that were
-- not cache hits went to it. Coalesced jobs of those days are cache hits
-- and stay NULL: which call answered them was not recorded.
UPDATE usage_ledger SET provider = 'default' WHERE NOT cache_hit;
