-- Embeddings keyed by (namespace, id), searched by cosine distance through HNSW.

CREATE EXTENSION IF NOT EXISTS vector;

-- Privileges go to two group roles; deployments grant them to each function's login
-- role (search: kit_read; ingest and purge: kit_write). Roles are cluster-wide, so
-- they are created only if missing and never dropped by a downgrade.
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

CREATE TABLE embeddings (
    namespace  text        NOT NULL DEFAULT 'default'
               CONSTRAINT embeddings_namespace_format CHECK (namespace ~ '^[a-z0-9_-]{1,64}$'),
    id         uuid        NOT NULL,
    embedding  vector(1536) NOT NULL,
    content    text,
    metadata   jsonb       NOT NULL DEFAULT '{}'
               CONSTRAINT embeddings_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    version    bigint      NOT NULL DEFAULT 0
               CONSTRAINT embeddings_version_non_negative CHECK (version >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, id)
);

-- The operator class matches the query operator: `<=>` (cosine distance).
CREATE INDEX embeddings_embedding_hnsw ON embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- Metadata filters: containment (`@>`) narrows through this index.
CREATE INDEX embeddings_metadata_gin ON embeddings USING gin (metadata jsonb_path_ops);

-- Retention: the purge walks rows oldest first.
CREATE INDEX embeddings_created_at ON embeddings (created_at);

GRANT SELECT ON embeddings TO kit_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON embeddings TO kit_write;
