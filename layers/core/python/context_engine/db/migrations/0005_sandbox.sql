-- Sandbox runs (POST /v1/sandbox/runs). The code and stdin are never stored here: they travel
-- to the runner as an S3 object that expires within a day (services/sandbox.py); the row keeps
-- their size and SHA-256 so an audit can tie a result to the code that produced it.
create table sandbox_runs (
  tenant_id         text not null references tenants(id) on delete cascade,
  id                uuid not null,
  status            text not null check (status in ('queued', 'running', 'succeeded', 'failed', 'timed_out')),
  language          text not null,
  limits            jsonb not null,
  code_bytes        integer not null,
  code_sha256       text not null,
  stdin_bytes       integer not null default 0,
  -- The agent the run belongs to: the session's agent, else the creating key's agent scope
  -- (null for an unscoped key without a session). Agent-scoped keys see only their agent's runs.
  agent_id          text,
  session_id        text,
  call_id           text,
  created_by        text not null,
  created_role      text not null,
  -- the result (null until the run ends)
  stdout            text,
  stderr            text,
  exit_code         integer,
  duration_ms       double precision,
  stdout_truncated  boolean not null default false,
  stderr_truncated  boolean not null default false,
  reason            text,
  isolation         text,
  -- Fargate starts that failed before the code ran (capacity, ENI, image pull) and were retried.
  start_failures    integer not null default 0,
  created_at        timestamptz not null default now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz not null default now(),
  primary key (tenant_id, id),
  check (call_id is null or session_id is not null),
  -- Deleting a session (DeleteContext, erase) deletes its runs: their output is session content.
  foreign key (tenant_id, session_id) references sessions(tenant_id, id) on delete cascade
);
-- A tool call gets its result from at most one run.
create unique index sandbox_runs_call on sandbox_runs (tenant_id, session_id, call_id) where call_id is not null;
create index sandbox_runs_agent on sandbox_runs (tenant_id, agent_id, created_at);

alter table sandbox_runs enable row level security;
alter table sandbox_runs force row level security;
create policy tenant_isolation on sandbox_runs using (tenant_id = ce_current_tenant())
  with check (tenant_id = ce_current_tenant());
grant select, insert, update, delete on sandbox_runs to ce_app;
