-- Per-namespace retention overrides and the lease that lets one purge run at a time.

CREATE TABLE retention_policies (
    namespace      text        PRIMARY KEY
                   CONSTRAINT retention_policies_namespace_format CHECK (namespace ~ '^[a-z0-9_-]{1,64}$'),
    retention_days integer     NOT NULL
                   CONSTRAINT retention_policies_days_positive CHECK (retention_days > 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row at most. A run holds the lease until its invocation deadline; an expired
-- lease is taken over, so a crashed run never blocks the next one.
CREATE TABLE purge_lease (
    singleton  boolean     PRIMARY KEY DEFAULT TRUE CONSTRAINT purge_lease_one_row CHECK (singleton),
    holder     uuid        NOT NULL,
    expires_at timestamptz NOT NULL
);

GRANT SELECT ON retention_policies TO kit_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON retention_policies, purge_lease TO kit_write;
