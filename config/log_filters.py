"""Logging filters (imported while logging is configured, before apps load: no models here)."""

import logging


class ForbiddenWithoutTraceback(logging.Filter):
    """Drop the traceback Django attaches to its "Forbidden" log line: a 403 is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
