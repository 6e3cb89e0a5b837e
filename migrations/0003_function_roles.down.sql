-- Back to the two groups of 0001/0002. The login roles lose their function groups; grant
-- them kit_read (search) or kit_write (ingest, purge) again by hand. The function groups
-- are dropped when no other database of the cluster still uses them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kit_read') THEN
        CREATE ROLE kit_read NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kit_write') THEN
        CREATE ROLE kit_write NOLOGIN;
    END IF;
END
$$;
GRANT SELECT ON embeddings, retention_policies TO kit_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON embeddings, retention_policies, purge_lease TO kit_write;

DROP POLICY IF EXISTS embeddings_search_tenant ON embeddings;
DROP POLICY IF EXISTS embeddings_ingest_any ON embeddings;
DROP POLICY IF EXISTS embeddings_purge_any ON embeddings;
ALTER TABLE embeddings DISABLE ROW LEVEL SECURITY;

REVOKE ALL ON embeddings, retention_policies, purge_lease
    FROM kit_search_group, kit_ingest_group, kit_purge_group, kit_retention_admin;
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['kit_search_group', 'kit_ingest_group', 'kit_purge_group', 'kit_retention_admin'] LOOP
        BEGIN
            EXECUTE format('DROP ROLE IF EXISTS %I', name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE '% is still used by another database of this cluster: kept', name;
        END;
    END LOOP;
END
$$;
