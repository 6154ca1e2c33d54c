DROP TRIGGER listings_truncate_rebuild ON property.listings;
DROP TRIGGER developments_truncate_rebuild ON property.developments;
DROP TRIGGER existing_properties_truncate_rebuild ON property.existing_properties;
DROP TRIGGER media_truncate_rebuild ON property.media;
DROP TRIGGER locations_truncate_rebuild ON property.locations;
DROP FUNCTION explore.request_rebuild_after_truncate();
