DROP FUNCTION wizard.require_integer(bigint, jsonb, text, boolean);
DROP FUNCTION wizard.promote_draft(bigint, text);
DROP TABLE wizard.listing_drafts;
DROP SCHEMA wizard;
