-- Event pipeline: consumer idempotency and the cross-tenant outbox relay.

-- One row per (consumer, event) that had its effect. Consumers insert it in the same
-- transaction as the effect where they can, so a redelivered message has no second effect.
create table processed_events (
  tenant_id     text not null,
  consumer      text not null,
  event_id      uuid not null,
  detail_type   text not null,
  processed_at  timestamptz not null default now(),
  primary key (tenant_id, consumer, event_id)
);
create index processed_events_age on processed_events (processed_at);

alter table processed_events enable row level security;
alter table processed_events force row level security;
create policy tenant_isolation on processed_events using (tenant_id = ce_current_tenant())
  with check (tenant_id = ce_current_tenant());
grant select, insert, delete on processed_events to ce_app;

-- At most one compression in flight per session: the compress consumer looks for it.
create index jobs_active_compress on jobs (tenant_id, (resource->>'session_id'))
  where kind = 'compress' and status in ('queued', 'running');

-- The relay sees every tenant's unpublished rows, and only through these two functions
-- (ce_app has no BYPASSRLS). Rows are locked with SKIP LOCKED so concurrent relays never
-- publish the same row twice; the lock lasts until the caller's transaction ends.
create or replace function ce_outbox_claim(p_limit integer, p_min_age_s integer)
  returns table (event_id uuid, tenant_id text, detail_type text, detail jsonb, created_at timestamptz,
                 attempts integer)
  language sql volatile security definer set search_path = public as $$
    select o.event_id, o.tenant_id, o.detail_type, o.detail, o.created_at, o.attempts
      from outbox o
     where o.published_at is null
       and o.created_at <= now() - make_interval(secs => greatest(p_min_age_s, 0))
     order by o.id
     limit least(greatest(p_limit, 1), 1000)
       for update skip locked
$$;
revoke all on function ce_outbox_claim(integer, integer) from public;
grant execute on function ce_outbox_claim(integer, integer) to ce_app;

-- Marks claimed rows: published ones get published_at, all of them one more attempt.
create or replace function ce_outbox_settle(p_published uuid[], p_failed uuid[]) returns integer
  language plpgsql volatile security definer set search_path = public as $$
declare n integer;
begin
  update outbox set published_at = now(), attempts = attempts + 1
   where event_id = any(coalesce(p_published, '{}')) and published_at is null;
  get diagnostics n = row_count;
  update outbox set attempts = attempts + 1
   where event_id = any(coalesce(p_failed, '{}')) and published_at is null;
  return n;
end $$;
revoke all on function ce_outbox_settle(uuid[], uuid[]) from public;
grant execute on function ce_outbox_settle(uuid[], uuid[]) to ce_app;

-- How far behind the relay is (for the relay's metric and the local dispatcher).
create or replace function ce_outbox_backlog() returns table (pending bigint, oldest timestamptz)
  language sql stable security definer set search_path = public as $$
    select count(*), min(created_at) from outbox where published_at is null
$$;
revoke all on function ce_outbox_backlog() from public;
grant execute on function ce_outbox_backlog() to ce_app;
