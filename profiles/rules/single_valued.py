"""Which identifiers a person has at most one of.

A profile holds any number of identities (a login may add another), but one
email, one phone, one FBID and one GPID: setting a new one replaces the old.
The database enforces it too (Identifier's identifier_one_per_profile).
"""

SINGLE_VALUED_KINDS = frozenset({"email", "fbid", "gpid", "phone"})
