-- One group role per function, each holding only what that function does, and row-level
-- security on embeddings so a search sees only the namespace it declares.
--
--   kit_search_group     SELECT embeddings (rows of the statement's own tenant, see below)
--   kit_ingest_group     SELECT, INSERT, UPDATE, DELETE embeddings (upserts and deletes)
--   kit_purge_group      SELECT, DELETE embeddings; SELECT retention_policies;
--                        SELECT, INSERT, UPDATE purge_lease (the run lock)
--   kit_retention_admin  SELECT, INSERT, UPDATE, DELETE retention_policies (`kit retention`)
--
-- `kit roles apply` creates the login roles (kit.toml's [functions.*] db_role) and grants
-- each its group. Roles are cluster-wide: they are created only if missing; the old
-- kit_read/kit_write groups lose this database's privileges and are dropped when nothing
-- else in the cluster still depends on them (another database's grants keep them).
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['kit_search_group', 'kit_ingest_group', 'kit_purge_group', 'kit_retention_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
    END LOOP;
END
$$;

GRANT SELECT ON embeddings TO kit_search_group;
GRANT SELECT, INSERT, UPDATE, DELETE ON embeddings TO kit_ingest_group;
GRANT SELECT, DELETE ON embeddings TO kit_purge_group;
GRANT SELECT ON retention_policies TO kit_purge_group;
GRANT SELECT, INSERT, UPDATE ON purge_lease TO kit_purge_group;
GRANT SELECT, INSERT, UPDATE, DELETE ON retention_policies TO kit_retention_admin;

-- Row-level security: a search sees the rows of the namespace its own statement sets as
-- `kit.tenant` (transaction-local, set_config(…, true)); a statement that sets none sees
-- none. Ingest and purge act on any namespace. The table owner (the migrating admin)
-- bypasses it. `kit roles apply` enables or disables it per kit.toml
-- ([database] row_level_security).
ALTER TABLE embeddings ENABLE ROW LEVEL SECURITY;
CREATE POLICY embeddings_search_tenant ON embeddings FOR SELECT TO kit_search_group
    USING (namespace = current_setting('kit.tenant', true));
CREATE POLICY embeddings_ingest_any ON embeddings FOR ALL TO kit_ingest_group
    USING (true) WITH CHECK (true);
CREATE POLICY embeddings_purge_any ON embeddings FOR ALL TO kit_purge_group
    USING (true) WITH CHECK (true);

REVOKE ALL ON embeddings, retention_policies, purge_lease FROM kit_read, kit_write;
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['kit_read', 'kit_write'] LOOP
        BEGIN
            EXECUTE format('DROP ROLE IF EXISTS %I', name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE '% is still used by another database of this cluster: kept', name;
        END;
    END LOOP;
END
$$;
