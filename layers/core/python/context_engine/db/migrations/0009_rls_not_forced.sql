-- Row-level security binds the application role (ce_app), which owns no table; the table
-- owner is exempt again. FORCE also bound the owner, which broke the narrow SECURITY
-- DEFINER entry points (key lookup, outbox relay, tenant listing) wherever the owner is
-- not a superuser — as on Aurora, where the master user has no BYPASSRLS.
do $$
declare t record;
begin
  for t in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind = 'r' and c.relforcerowsecurity loop
    execute format('alter table %I no force row level security', t.relname);
  end loop;
end $$;
