"""Signals of the imports app (for observers such as SFTP notifications)."""

from django.dispatch import Signal

# Sent after each chunk of an import has committed, outside any transaction.
# Arguments: import_run_id (int), last_committed_row (int).
import_chunk_committed = Signal()
