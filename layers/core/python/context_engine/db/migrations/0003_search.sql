-- Search: the index fields of turns and memories, the per-user statistics the re-ranker
-- needs, and the generation counters that make cached contexts invalidate by construction.
--
-- The index fields are filled by the indexer (services/indexing.py) after the write is
-- acknowledged; the write path never waits for them. The statistics and generations are
-- maintained by statement-level triggers, so every path that changes rows (writes, the
-- indexer, deletes, erasure, cascades) keeps them right without having to remember to.

-- --- turns -----------------------------------------------------------------------------
-- lex: to_tsvector('simple', retrieval.lexical.index_text(search_text)). The Python analyzer
-- (stop words, Snowball stems) is the single source of truth for terms; 'simple' only splits
-- and lowercases, so query terms, SQL matches and Python BM25 statistics agree exactly.
alter table turns
  add column lex tsvector,
  add column lex_len integer,            -- number of analyzed tokens (BM25 document length)
  add column lex_parts text[],           -- analyzed terms of question and answer, space-joined
  add column embedding_model text;       -- vectors of different models never mix

create index turns_lex on turns using gin (lex);
-- Cosine HNSW. m/ef_construction are pgvector's defaults; recall is tuned at query time
-- with hnsw.ef_search and iterative scans (see search/postgres.py).
create index turns_embedding on turns using hnsw (embedding vector_cosine_ops) with (m = 16, ef_construction = 64);
-- Neighbour and date-range fetches go by (session, seq) and by the user's occurred_at
-- (turns_user from 0001 already covers the latter).

alter table memories add column embedding_model text;
create index memories_embedding on memories using hnsw (embedding vector_cosine_ops) with (m = 16, ef_construction = 64);
create index memories_unindexed on memories (tenant_id, created_at) where indexed_at is null;

-- --- per-user BM25 statistics ------------------------------------------------------------
-- Only indexed turns (lex is not null) count. df is per analyzed term.
create table search_doc_stats (
  tenant_id  text not null,
  agent_id   text not null,
  user_id    text not null,
  n_docs     bigint not null default 0,
  total_len  bigint not null default 0,
  primary key (tenant_id, agent_id, user_id)
);

create table search_term_stats (
  tenant_id  text not null,
  agent_id   text not null,
  user_id    text not null,
  term       text not null,
  df         integer not null default 0,
  primary key (tenant_id, agent_id, user_id, term)
);

-- --- generations -------------------------------------------------------------------------
-- A query without a session depends on all of the user's sessions and memories, and on the
-- agent's shared memories. Every change to those rows bumps the (agent, user) generation, or
-- the agent-wide one (user_id = '') for agent-visible memories; cache keys include both.
create table search_generations (
  tenant_id   text not null,
  agent_id    text not null,
  user_id     text not null,             -- '' = agent-wide (shared memories)
  generation  bigint not null default 0,
  primary key (tenant_id, agent_id, user_id)
);

do $$
declare t text;
begin
  foreach t in array array['search_doc_stats', 'search_term_stats', 'search_generations'] loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy tenant_isolation on %I using (tenant_id = ce_current_tenant())'
                   ' with check (tenant_id = ce_current_tenant())', t);
  end loop;
end $$;
grant select, insert, update, delete on search_doc_stats, search_term_stats, search_generations to ce_app;

-- One row per changed turn/memory/tool-call row: +1 after the change, -1 before it. The
-- trigger functions differ only in which transition tables exist (an INSERT trigger has no
-- old table), so each builds an array of these and hands it to ce_search_apply.
create type ce_search_delta as (tenant_id text, agent_id text, user_id text, d integer, lex_len integer,
                                lex tsvector);

-- Rows are upserted in key order so that concurrent statements lock them in the same order
-- (no deadlocks between, say, two indexers of one user).
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
   where x.lex is not null
   group by 1, 2, 3, 4 having sum(d) <> 0
   order by 1, 2, 3, 4
  on conflict (tenant_id, agent_id, user_id, term) do update set df = s.df + excluded.df;
end $$;

create or replace function ce_turns_changed() returns trigger
  language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, user_id, 1, lex_len, lex)::ce_search_delta from new_rows), true);
  elsif tg_op = 'DELETE' then
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, user_id, -1, lex_len, lex)::ce_search_delta from old_rows), true);
  else
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, user_id, 1, lex_len, lex)::ce_search_delta from new_rows
      union all
      select row(tenant_id, agent_id, user_id, -1, lex_len, lex)::ce_search_delta from old_rows), true);
  end if;
  return null;
end $$;

create trigger turns_search_ins after insert on turns referencing new table as new_rows
  for each statement execute function ce_turns_changed();
create trigger turns_search_upd after update on turns referencing old table as old_rows new table as new_rows
  for each statement execute function ce_turns_changed();
create trigger turns_search_del after delete on turns referencing old table as old_rows
  for each statement execute function ce_turns_changed();

-- Memories and tool calls only bump generations. An agent-visible memory is seen by every
-- user of the agent, so it bumps the agent-wide generation (user_id '').
create or replace function ce_memories_changed() returns trigger
  language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, case when visibility = 'agent' then '' else coalesce(user_id, '') end,
                 1, null, null)::ce_search_delta from new_rows), false);
  elsif tg_op = 'DELETE' then
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, case when visibility = 'agent' then '' else coalesce(user_id, '') end,
                 -1, null, null)::ce_search_delta from old_rows), false);
  else
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, case when visibility = 'agent' then '' else coalesce(user_id, '') end,
                 1, null, null)::ce_search_delta from new_rows
      union all
      select row(tenant_id, agent_id, case when visibility = 'agent' then '' else coalesce(user_id, '') end,
                 -1, null, null)::ce_search_delta from old_rows), false);
  end if;
  return null;
end $$;

create trigger memories_search_ins after insert on memories referencing new table as new_rows
  for each statement execute function ce_memories_changed();
create trigger memories_search_upd after update on memories referencing old table as old_rows new table as new_rows
  for each statement execute function ce_memories_changed();
create trigger memories_search_del after delete on memories referencing old table as old_rows
  for each statement execute function ce_memories_changed();

create or replace function ce_tool_calls_changed() returns trigger
  language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, user_id, 1, null, null)::ce_search_delta from new_rows), false);
  elsif tg_op = 'DELETE' then
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, user_id, -1, null, null)::ce_search_delta from old_rows), false);
  else
    perform ce_search_apply(array(
      select row(tenant_id, agent_id, user_id, 1, null, null)::ce_search_delta from new_rows), false);
  end if;
  return null;
end $$;

create trigger tool_calls_search_ins after insert on tool_calls referencing new table as new_rows
  for each statement execute function ce_tool_calls_changed();
create trigger tool_calls_search_upd after update on tool_calls referencing old table as old_rows new table as new_rows
  for each statement execute function ce_tool_calls_changed();
create trigger tool_calls_search_del after delete on tool_calls referencing old table as old_rows
  for each statement execute function ce_tool_calls_changed();

grant execute on function ce_search_apply(ce_search_delta[], boolean) to ce_app;
