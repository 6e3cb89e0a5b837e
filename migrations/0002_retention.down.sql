DROP TABLE IF EXISTS purge_lease;
DROP TABLE IF EXISTS retention_policies;
