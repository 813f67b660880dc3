from django.db import migrations

# The per-row trigger of 0002 ran one UPDATE per inserted identifier, which
# dominated bulk imports. Statement-level triggers with transition tables keep
# the same invariant (identified <=> holds an identifier) with one set-based
# UPDATE per statement. PostgreSQL allows a transition table only on a
# single-event trigger, hence three triggers.
FORWARD = """
DROP TRIGGER IF EXISTS profiles_identifier_identified ON profiles_identifier;
DROP FUNCTION IF EXISTS profiles_identifier_sync_identified();

CREATE FUNCTION profiles_identifier_mark_identified() RETURNS trigger AS $$
BEGIN
    UPDATE profiles_profile p SET identified = TRUE
      FROM (SELECT DISTINCT profile_id FROM added_identifiers) a
     WHERE p.id = a.profile_id AND NOT p.identified;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION profiles_identifier_mark_anonymous() RETURNS trigger AS $$
BEGIN
    UPDATE profiles_profile p SET identified = FALSE
      FROM (SELECT DISTINCT profile_id FROM removed_identifiers) r
     WHERE p.id = r.profile_id AND p.identified
       AND NOT EXISTS (SELECT 1 FROM profiles_identifier i WHERE i.profile_id = r.profile_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER profiles_identifier_inserted
AFTER INSERT ON profiles_identifier
REFERENCING NEW TABLE AS added_identifiers
FOR EACH STATEMENT EXECUTE FUNCTION profiles_identifier_mark_identified();

CREATE TRIGGER profiles_identifier_deleted
AFTER DELETE ON profiles_identifier
REFERENCING OLD TABLE AS removed_identifiers
FOR EACH STATEMENT EXECUTE FUNCTION profiles_identifier_mark_anonymous();

-- An identifier moved to another profile: the new holder becomes identified,
-- the old one anonymous if that was its last identifier.
CREATE FUNCTION profiles_identifier_moved() RETURNS trigger AS $$
BEGIN
    UPDATE profiles_profile p SET identified = TRUE
      FROM (SELECT DISTINCT profile_id FROM added_identifiers) a
     WHERE p.id = a.profile_id AND NOT p.identified;
    UPDATE profiles_profile p SET identified = FALSE
      FROM (SELECT DISTINCT profile_id FROM removed_identifiers) r
     WHERE p.id = r.profile_id AND p.identified
       AND NOT EXISTS (SELECT 1 FROM profiles_identifier i WHERE i.profile_id = r.profile_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER profiles_identifier_updated
AFTER UPDATE ON profiles_identifier
REFERENCING OLD TABLE AS removed_identifiers NEW TABLE AS added_identifiers
FOR EACH STATEMENT EXECUTE FUNCTION profiles_identifier_moved();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS profiles_identifier_inserted ON profiles_identifier;
DROP TRIGGER IF EXISTS profiles_identifier_deleted ON profiles_identifier;
DROP TRIGGER IF EXISTS profiles_identifier_updated ON profiles_identifier;
DROP FUNCTION IF EXISTS profiles_identifier_mark_identified();
DROP FUNCTION IF EXISTS profiles_identifier_mark_anonymous();
DROP FUNCTION IF EXISTS profiles_identifier_moved();

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
"""


class Migration(migrations.Migration):
    dependencies = [("profiles", "0005_last_seen_nulls_last")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
