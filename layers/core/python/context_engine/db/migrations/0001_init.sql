-- Core schema. Every row carries tenant_id; row-level security keyed on the
-- per-transaction setting app.tenant_id is defence in depth behind the explicit
-- tenant filters in every query.

create extension if not exists vector;

do $$ begin
  if not exists (select 1 from pg_roles where rolname = 'ce_app') then
    create role ce_app login nosuperuser nobypassrls nocreatedb nocreaterole;
  end if;
end $$;

create or replace function ce_current_tenant() returns text
  language sql stable as $$ select nullif(current_setting('app.tenant_id', true), '') $$;

create table tenants (
  id              text primary key,
  name            text not null,
  classification  text not null default 'internal',
  privacy_policy  jsonb not null default '{}'::jsonb,
  retention       jsonb not null default '{}'::jsonb,
  limits          jsonb not null default '{}'::jsonb,
  created_at      timestamptz not null default now()
);

create table api_keys (
  id          text primary key,
  tenant_id   text not null references tenants(id) on delete cascade,
  key_hash    text not null unique,
  role        text not null check (role in ('admin', 'writer', 'reader', 'auditor')),
  agent_id    text,
  name        text,
  created_at  timestamptz not null default now(),
  revoked_at  timestamptz
);

create table agents (
  tenant_id       text not null references tenants(id) on delete cascade,
  id              text not null,
  profile         jsonb not null default '{}'::jsonb,
  classification  text not null default 'internal',
  version         integer not null default 1,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (tenant_id, id)
);

create table sessions (
  tenant_id   text not null references tenants(id) on delete cascade,
  id          text not null,
  agent_id    text not null,
  user_id     text not null,
  last_seq    integer not null default 0,
  turn_count  integer not null default 0,
  token_count bigint not null default 0,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index sessions_user on sessions (tenant_id, agent_id, user_id);

create table turns (
  tenant_id       text not null,
  id              uuid not null,
  session_id      text not null,
  agent_id        text not null,
  user_id         text not null,
  seq             integer not null,
  question        text not null,
  answer          text not null,
  occurred_at     timestamptz not null,
  token_count     integer not null,
  metadata        jsonb not null default '{}'::jsonb,
  -- what retrieval indexes: the turn's text plus context such as its date
  search_text     text not null,
  tsv             tsvector generated always as (to_tsvector('english', search_text)) stored,
  embedding       vector({{embedding_dim}}),
  indexed_at      timestamptz,
  created_at      timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, session_id, seq),
  foreign key (tenant_id, session_id) references sessions(tenant_id, id) on delete cascade
);
create index turns_user on turns (tenant_id, agent_id, user_id, occurred_at);
create index turns_tsv on turns using gin (tsv);
create index turns_unindexed on turns (tenant_id, created_at) where indexed_at is null;

create table idempotency_keys (
  tenant_id    text not null,
  scope        text not null,
  key          text not null,
  request_hash text not null,
  status_code  integer not null,
  response     jsonb not null,
  created_at   timestamptz not null default now(),
  primary key (tenant_id, scope, key)
);

create table tool_calls (
  tenant_id       text not null,
  session_id      text not null,
  call_id         text not null,
  agent_id        text not null,
  user_id         text not null,
  turn_id         uuid,
  parent_call_id  text,
  chain_seq       integer not null,
  name            text not null,
  arguments       jsonb not null default '{}'::jsonb,
  status          text not null check (status in ('pending', 'running', 'succeeded', 'failed', 'timed_out')),
  result          jsonb,
  error           jsonb,
  token_count     integer not null default 0,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  finished_at     timestamptz,
  primary key (tenant_id, session_id, call_id),
  foreign key (tenant_id, session_id) references sessions(tenant_id, id) on delete cascade
);
create index tool_calls_user on tool_calls (tenant_id, agent_id, user_id);

create table memories (
  tenant_id        text not null,
  id               uuid not null,
  agent_id         text not null,
  user_id          text,
  visibility       text not null check (visibility in ('private', 'agent')),
  content          text not null,
  importance       real not null default 0.5,
  source_turn_ids  uuid[] not null default '{}',
  metadata         jsonb not null default '{}'::jsonb,
  token_count      integer not null,
  tsv              tsvector generated always as (to_tsvector('english', content)) stored,
  embedding        vector({{embedding_dim}}),
  indexed_at       timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  primary key (tenant_id, id),
  check (visibility = 'agent' or user_id is not null)
);
create index memories_scope on memories (tenant_id, agent_id, user_id);
create index memories_tsv on memories using gin (tsv);

create table context_windows (
  tenant_id           text not null,
  session_id          text not null,
  summary             text,
  summary_covers_seq  integer not null default 0,
  summary_seqs        integer[] not null default '{}',
  summary_tokens      integer not null default 0,
  strategy            text,
  stats               jsonb not null default '{}'::jsonb,
  version             bigint not null default 1,
  updated_at          timestamptz not null default now(),
  primary key (tenant_id, session_id),
  foreign key (tenant_id, session_id) references sessions(tenant_id, id) on delete cascade
);

create table jobs (
  tenant_id   text not null,
  id          uuid not null,
  kind        text not null,
  status      text not null check (status in ('queued', 'running', 'succeeded', 'failed')),
  resource    jsonb not null default '{}'::jsonb,
  result      jsonb,
  error       jsonb,
  created_by  text,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (tenant_id, id)
);

-- Transactional outbox: written in the same transaction as the change it announces.
create table outbox (
  id            bigserial primary key,
  tenant_id     text not null,
  event_id      uuid not null unique,
  detail_type   text not null,
  detail        jsonb not null,
  created_at    timestamptz not null default now(),
  published_at  timestamptz,
  attempts      integer not null default 0
);
create index outbox_pending on outbox (created_at) where published_at is null;

-- Row-level security on every tenant table.
do $$
declare t text;
begin
  foreach t in array array['api_keys', 'agents', 'sessions', 'turns', 'idempotency_keys', 'tool_calls',
                           'memories', 'context_windows', 'jobs', 'outbox'] loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy tenant_isolation on %I using (tenant_id = ce_current_tenant())'
                   ' with check (tenant_id = ce_current_tenant())', t);
  end loop;
end $$;
alter table tenants enable row level security;
alter table tenants force row level security;
create policy tenant_isolation on tenants using (id = ce_current_tenant()) with check (id = ce_current_tenant());

grant usage on schema public to ce_app;
grant select, insert, update, delete on agents, sessions, turns, idempotency_keys, tool_calls, memories,
  context_windows, jobs, outbox to ce_app;
grant select, update on tenants to ce_app;
grant select on api_keys to ce_app;
grant usage on all sequences in schema public to ce_app;

-- Cross-tenant entry points, each as narrow as it can be (SECURITY DEFINER runs as owner).
create or replace function ce_authenticate(p_key_hash text)
  returns table (key_id text, tenant_id text, role text, agent_id text)
  language sql stable security definer set search_path = public as $$
    select k.id, k.tenant_id, k.role, k.agent_id from api_keys k
     where k.key_hash = p_key_hash and k.revoked_at is null
$$;
revoke all on function ce_authenticate(text) from public;
grant execute on function ce_authenticate(text) to ce_app;

create or replace function ce_list_tenants() returns setof text
  language sql stable security definer set search_path = public as $$ select id from tenants order by id $$;
revoke all on function ce_list_tenants() from public;
grant execute on function ce_list_tenants() to ce_app;
