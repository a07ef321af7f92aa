-- Governance: the hash-chained audit log, its intake, the per-tenant privacy-hash salt.
--
-- Audit records reach the chain in two steps:
--   1. audit_intake: a cheap insert by whoever has something to audit (the audit queue's
--      consumer for domain events, the API for access and request records, governance jobs),
--      deduplicated by (tenant_id, record_id);
--   2. the appender (context_engine.audit.store.append_pending) moves intake rows into
--      audit_log in order, one tenant at a time, under a per-tenant lock, sealing each
--      record with the hash of its predecessor (context_engine.audit.chain).
-- The application role can read and insert audit_log but never change or delete it; a
-- trigger rejects UPDATE/DELETE/TRUNCATE for everybody and another checks every insert
-- against the tenant's head, so the chain cannot fork even if two appenders race.

create table audit_intake (
  id             bigserial primary key,
  tenant_id      text not null,
  record_id      text not null,
  occurred_at    timestamptz not null,
  actor          text not null,
  role           text not null,
  action         text not null,
  resource_type  text not null,
  resource_id    text,
  outcome        text not null,
  request_id     text,
  trace_id       text,
  details        jsonb not null default '{}'::jsonb,
  created_at     timestamptz not null default now(),
  unique (tenant_id, record_id)
);
create index audit_intake_tenant on audit_intake (tenant_id, id);

create table audit_log (
  tenant_id      text not null,
  seq            bigint not null check (seq >= 1),
  id             text not null,
  occurred_at    timestamptz not null,
  actor          text not null,
  role           text not null,
  action         text not null,
  resource_type  text not null,
  resource_id    text,
  outcome        text not null,
  request_id     text,
  trace_id       text,
  details        jsonb not null default '{}'::jsonb,
  prev_hash      text not null check (prev_hash ~ '^[0-9a-f]{64}$'),
  hash           text not null check (hash ~ '^[0-9a-f]{64}$'),
  recorded_at    timestamptz not null default now(),
  primary key (tenant_id, seq),
  unique (tenant_id, id)
);
-- The query filters of GET /v1/audit (each ends in seq for cursor pagination).
create index audit_log_actor on audit_log (tenant_id, actor, seq);
create index audit_log_action on audit_log (tenant_id, action, seq);
create index audit_log_resource on audit_log (tenant_id, resource_type, resource_id, seq);
create index audit_log_time on audit_log (tenant_id, occurred_at);
-- "Audit records about this user" (GDPR export): the subject user is details.user_id.
create index audit_log_subject on audit_log (tenant_id, (details->>'user_id'), seq);

-- The newest record of each tenant's chain. Maintained only by the insert trigger below
-- (the application role can read it, not write it); verify compares the recomputed chain
-- with it, which catches deletion of the newest records that the chain alone cannot show.
create table audit_heads (
  tenant_id   text primary key,
  seq         bigint not null,
  hash        text not null,
  updated_at  timestamptz not null default now()
);

do $$
declare t text;
begin
  foreach t in array array['audit_intake', 'audit_log', 'audit_heads'] loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy tenant_isolation on %I using (tenant_id = ce_current_tenant())'
                   ' with check (tenant_id = ce_current_tenant())', t);
  end loop;
end $$;

grant select, insert, delete on audit_intake to ce_app;
grant select, insert on audit_log to ce_app;
grant select on audit_heads to ce_app;
grant usage on sequence audit_intake_id_seq to ce_app;

create or replace function ce_audit_immutable() returns trigger
  language plpgsql as $$
begin
  raise exception 'audit_log is append-only (% rejected)', tg_op using errcode = 'insufficient_privilege';
end $$;

create trigger audit_log_no_update before update or delete on audit_log
  for each row execute function ce_audit_immutable();
create trigger audit_log_no_truncate before truncate on audit_log
  for each statement execute function ce_audit_immutable();

-- Every insert must extend the tenant's head by exactly one: seq = head + 1 and prev_hash =
-- head hash (genesis: seq 1, 64 zeros). The head row is locked until commit, so concurrent
-- appenders serialise here even without the appender's advisory lock. SECURITY DEFINER:
-- the application role has no UPDATE on audit_heads, only this trigger moves it.
create or replace function ce_audit_link() returns trigger
  language plpgsql security definer set search_path = public as $$
declare h record;
begin
  select seq, hash into h from audit_heads where tenant_id = new.tenant_id for update;
  if not found then
    if new.seq <> 1 or new.prev_hash <> repeat('0', 64) then
      raise exception 'audit chain of % must start at seq 1 from the genesis hash', new.tenant_id
        using errcode = 'integrity_constraint_violation';
    end if;
    insert into audit_heads (tenant_id, seq, hash) values (new.tenant_id, new.seq, new.hash);
  else
    if new.seq <> h.seq + 1 or new.prev_hash <> h.hash then
      raise exception 'audit record % of % does not extend the head (seq %)', new.seq, new.tenant_id, h.seq
        using errcode = 'integrity_constraint_violation';
    end if;
    update audit_heads set seq = new.seq, hash = new.hash, updated_at = now() where tenant_id = new.tenant_id;
  end if;
  return new;
end $$;
revoke all on function ce_audit_link() from public;

create trigger audit_log_link before insert on audit_log
  for each row execute function ce_audit_link();

-- The scheduled appender finds the tenants with pending intake without seeing their rows.
create or replace function ce_audit_pending_tenants(p_limit integer) returns setof text
  language sql stable security definer set search_path = public as $$
    select distinct tenant_id from audit_intake order by tenant_id limit least(greatest(p_limit, 1), 10000)
$$;
revoke all on function ce_audit_pending_tenants(integer) from public;
grant execute on function ce_audit_pending_tenants(integer) to ce_app;

-- Governance jobs (export, erase) that need running again: queued or running but untouched
-- for p_stale_s (the runner died), or failed erasures (an erasure must finish). Any tenant:
-- the scheduled governance run resumes them.
create or replace function ce_governance_jobs_to_resume(p_stale_s integer, p_limit integer)
  returns table (tenant_id text, job_id uuid, kind text)
  language sql stable security definer set search_path = public as $$
    select j.tenant_id, j.id, j.kind from jobs j
     where j.kind in ('export', 'erase')
       and ((j.status in ('queued', 'running') and j.updated_at < now() - make_interval(secs => p_stale_s))
            or (j.kind = 'erase' and j.status = 'failed'
                and j.updated_at < now() - make_interval(secs => p_stale_s)
                and coalesce((j.result->'extra'->>'attempts')::integer, 0) < 20))
     order by j.updated_at
     limit least(greatest(p_limit, 1), 1000)
$$;
revoke all on function ce_governance_jobs_to_resume(integer, integer) from public;
grant execute on function ce_governance_jobs_to_resume(integer, integer) to ce_app;

-- Per-tenant salt of the privacy "hash" action's key (the key itself is derived from a
-- master secret kept outside the database; see context_engine/governance/keys.py).
-- gen_random_uuid() draws from the server's strong random source; 16 bytes of it.
alter table tenants add column privacy_salt bytea not null default uuid_send(gen_random_uuid());

-- Retention purges by age of the stored row; these keep the scans off the heap.
create index turns_created on turns (tenant_id, created_at);
create index tool_calls_updated on tool_calls (tenant_id, updated_at);
create index memories_updated on memories (tenant_id, updated_at);
-- Erasure and export find a user's rows in sessions of other users too.
create index turns_user_only on turns (tenant_id, user_id);
create index tool_calls_user_only on tool_calls (tenant_id, user_id);
create index memories_user_only on memories (tenant_id, user_id);
-- Export and erase find governance jobs by their subject.
create index jobs_subject on jobs (tenant_id, kind, (resource->>'user_id'));
-- ... and the scheduled run finds unfinished governance jobs without scanning every job.
create index jobs_governance_unfinished on jobs (updated_at) where kind in ('export', 'erase') and status <> 'succeeded';
