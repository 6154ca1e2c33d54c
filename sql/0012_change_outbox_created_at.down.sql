ALTER TABLE explore.change_outbox DROP COLUMN created_at;
