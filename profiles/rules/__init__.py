"""The profile store's rules, each stated once, as small pure functions (no ORM).

Ingest, the profile page, segments and exports all ask these modules, so a rule
cannot drift between the place that writes a value and the places that read it.
"""
