"""Fixtures shared by the imports tests."""

# The SFTP tests' fixtures (imports/tests/sftp_server.py).
from imports.tests.sftp_server import (  # noqa: F401 — re-exported fixtures
    make_sftp_source,
    sftp_client_key,
    sftp_role_groups,
    sftp_server,
)
