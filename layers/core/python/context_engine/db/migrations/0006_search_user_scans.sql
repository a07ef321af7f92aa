-- Fast per-user candidate scans (docs/query.md, "Why not HNSW for turns").
--
-- A user's turns are a small slice of a tenant (10k of 100k in the benchmark). pgvector's HNSW
-- with a user filter must visit ~k/selectivity graph nodes and fetch each one's heap row to
-- test the filter (19 ms for 50 rows, 34 ms for 100); an exact scan of the user's rows is as
-- slow. Two structures make both candidate scans proportional to the user, not the tenant:
--
-- 1. bq: the turn vector binary-quantized (one bit per dimension), covered by a btree on the
--    user's scope, so the dense scan is an index-only read of ~60 bytes per turn plus a
--    Hamming distance; the best (vector × 4) are then re-ordered by exact cosine (4.6 ms).
-- 2. a scope lexeme in lex: '_s_' || md5 of (tenant, agent, user). The full-text candidate
--    query ANDs it into the tsquery, so the GIN index intersects the user's posting list with
--    the query terms' and the heap is read only for matching rows. The analyzer never emits
--    '_' (it keeps [^\W_]+ tokens), so the lexeme cannot collide with a term, and the term
--    statistics skip it.

create or replace function ce_search_scope(p_tenant text, p_agent text, p_user text) returns text
  language sql immutable parallel safe as $$
    select '_s_' || md5(length(p_tenant) || ':' || p_tenant || length(p_agent) || ':' || p_agent
                        || length(p_user) || ':' || p_user)
$$;
grant execute on function ce_search_scope(text, text, text) to ce_app;

-- The full-text match runs here, as the owner, because row-level security keeps the planner
-- from using the GIN index for the app role: '@@' (ts_match_vq) is not LEAKPROOF, so it may not
-- be evaluated before the policy and becomes a filter over every row of the tenant (75 ms at
-- 100k turns instead of 0.6). The function is as narrow as an RLS-scoped query: it reads only
-- the caller's own tenant (app.tenant_id, set per transaction) and only the given agent's and
-- user's turns, and returns their ids and analyzed terms (the caller scores and orders them).
create or replace function ce_search_match(p_tenant text, p_agent text, p_user text, p_match tsquery)
  returns table (id uuid, session_id text, seq integer, lex tsvector, lex_len integer)
  language sql stable security definer set search_path = public as $$
    select x.id, x.session_id, x.seq, x.lex, x.lex_len from (
      select t.id, t.session_id, t.seq, t.agent_id, t.user_id, t.lex, t.lex_len from turns t
       where t.tenant_id = p_tenant and p_tenant = ce_current_tenant()
         and t.lex @@ (p_match && tsquery('''' || ce_search_scope(p_tenant, p_agent, p_user) || ''''))
      offset 0  -- keeps the user predicate out of the scan: the GIN index, not the user's btree
    ) x
    where x.agent_id = p_agent and x.user_id = p_user
$$;
revoke all on function ce_search_match(text, text, text, tsquery) from public;
grant execute on function ce_search_match(text, text, text, tsquery) to ce_app;

alter table turns add column bq bit({{embedding_dim}})
  generated always as (binary_quantize(embedding)::bit({{embedding_dim}})) stored;
create index turns_scope_bq on turns (tenant_id, agent_id, user_id) include (id, bq);

-- Statistics count analyzed terms only.
create or replace function ce_search_apply(deltas ce_search_delta[], with_stats boolean) returns void
  language plpgsql as $$
begin
  insert into search_generations as g (tenant_id, agent_id, user_id, generation)
  select distinct tenant_id, agent_id, user_id, 1 from unnest(deltas)
   order by 1, 2, 3
  on conflict (tenant_id, agent_id, user_id) do update set generation = g.generation + 1;
  if not with_stats then
    return;
  end if;
  insert into search_doc_stats as s (tenant_id, agent_id, user_id, n_docs, total_len)
  select tenant_id, agent_id, user_id, sum(d), sum(d * coalesce(lex_len, 0))
    from unnest(deltas) where lex is not null
   group by 1, 2, 3 having sum(d) <> 0 or sum(d * coalesce(lex_len, 0)) <> 0
   order by 1, 2, 3
  on conflict (tenant_id, agent_id, user_id)
    do update set n_docs = s.n_docs + excluded.n_docs, total_len = s.total_len + excluded.total_len;
  insert into search_term_stats as s (tenant_id, agent_id, user_id, term, df)
  select tenant_id, agent_id, user_id, term, sum(d)
    from unnest(deltas) x, unnest(tsvector_to_array(x.lex)) as term
   where x.lex is not null and left(term, 1) <> '_'
   group by 1, 2, 3, 4 having sum(d) <> 0
   order by 1, 2, 3, 4
  on conflict (tenant_id, agent_id, user_id, term) do update set df = s.df + excluded.df;
end $$;

-- Turns indexed before this migration get their scope lexeme (their terms are unchanged, so
-- the statistics triggers see +1 and -1 for each term and leave the counts as they are).
update turns set lex = lex || array_to_tsvector(array[ce_search_scope(tenant_id, agent_id, user_id)])
 where lex is not null;
