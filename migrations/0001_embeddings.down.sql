-- The vector extension and the kit_read/kit_write roles stay: other schemas may use
-- them, and they are harmless without the table.
DROP TABLE IF EXISTS embeddings;
