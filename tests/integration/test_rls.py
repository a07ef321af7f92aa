"""Row-level security covers every tenant table, binds the application role, and leaves
the owner (who runs the SECURITY DEFINER entry points) unbound."""

from __future__ import annotations


def test_every_tenant_table_has_rls_for_the_app_role(database) -> None:
    with database.owner() as conn:
        rows = conn.execute(
            "select c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) as owner"
            " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped"
            " where n.nspname = 'public' and c.relkind = 'r'").fetchall()
        app_can_bypass = conn.execute(
            "select rolbypassrls or rolsuper as bypass from pg_roles where rolname = 'ce_app'").fetchone()["bypass"]
    assert rows, "no tenant tables found"
    without = [r["relname"] for r in rows if not r["relrowsecurity"]]
    forced = [r["relname"] for r in rows if r["relforcerowsecurity"]]
    assert without == [], f"tenant tables without row-level security: {without}"
    assert forced == [], f"FORCE RLS would bind the owner's SECURITY DEFINER functions: {forced}"
    assert all(r["owner"] != "ce_app" for r in rows)
    assert app_can_bypass is False
