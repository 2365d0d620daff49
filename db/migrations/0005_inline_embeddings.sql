-- Keep embeddings inside the table's rows instead of the TOAST table.
--
-- pgvector stores vectors EXTERNAL by default, so a 384-dimension vector (1,544 bytes) in a row
-- of more than about 2 kB moves out of line, and every distance an exact scan or a re-sorted
-- HNSW result computes then costs a TOAST lookup. PLAIN keeps it in the row, which still fits in
-- a page because content and tsv can be compressed or moved out instead. An exact scan over a
-- copy of one seeded tenant's 11,000 chunks (tests/seeded_database.py) took 335 ms inline
-- against 640 ms out of line, by EXPLAIN ANALYZE on a loaded 2-core machine.
-- Rows written before this migration keep their layout until they are rewritten.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE PLAIN;
