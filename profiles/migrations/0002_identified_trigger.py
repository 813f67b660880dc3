from django.db import migrations

# Profile.identified is derived from the identifiers a profile holds. A trigger
# keeps it right for every writer (services, bulk imports, raw SQL), so the
# flag can be indexed and filtered without an EXISTS per row.
FORWARD = """
CREATE FUNCTION profiles_identifier_sync_identified() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE profiles_profile SET identified = TRUE
         WHERE id = NEW.profile_id AND NOT identified;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE profiles_profile p SET identified = FALSE
         WHERE p.id = OLD.profile_id AND p.identified
           AND NOT EXISTS (SELECT 1 FROM profiles_identifier i WHERE i.profile_id = OLD.profile_id);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER profiles_identifier_identified
AFTER INSERT OR UPDATE OF profile_id OR DELETE ON profiles_identifier
FOR EACH ROW EXECUTE FUNCTION profiles_identifier_sync_identified();

CREATE INDEX profile_identified ON profiles_profile (identified);
-- Find People's case-insensitive name prefix search: UPPER(name) LIKE 'ABC%'.
CREATE INDEX profile_name_prefix ON profiles_profile (UPPER(name) text_pattern_ops);
"""

BACKWARD = """
DROP INDEX IF EXISTS profile_identified;
DROP INDEX IF EXISTS profile_name_prefix;
DROP TRIGGER IF EXISTS profiles_identifier_identified ON profiles_identifier;
DROP FUNCTION IF EXISTS profiles_identifier_sync_identified();
"""


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
