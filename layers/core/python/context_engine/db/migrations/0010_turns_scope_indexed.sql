-- The rows a user's in-process vector copy has not seen yet (search/user_index.py): turns of
-- one (tenant, agent, user) indexed since a time. Plain comparisons on indexed_at are
-- LEAKPROOF, so row-level security keeps them in the index condition.
create index turns_scope_indexed on turns (tenant_id, agent_id, user_id, indexed_at);
