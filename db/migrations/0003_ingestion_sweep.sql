-- Lets the maintenance sweep find documents not yet ingested without scanning every document.
CREATE INDEX documents_unfinished_idx ON documents (updated_at) WHERE status IN ('queued', 'processing');
