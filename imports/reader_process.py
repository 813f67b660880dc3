"""The entry points of an import's reader process (imports.services reads a big file's
chunks there). Spawned, so a fresh interpreter: this module imports nothing of Django
at import time, since unpickling these functions happens before django.setup()."""

from __future__ import annotations

from typing import Any


def start(phone_region: str) -> None:
    """The process's initializer: Django set up as the importing process has it, and
    a watch that ends this process when the importing one dies (killed mid-import, its
    worker's task is redelivered elsewhere: nobody is left to read for)."""
    import multiprocessing
    import os
    import threading
    from multiprocessing.connection import wait

    import django

    parent = multiprocessing.parent_process()
    if parent is not None:
        sentinel = parent.sentinel

        def watch() -> None:
            wait([sentinel])
            os._exit(0)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings

    settings.PHONE_DEFAULT_REGION = phone_region


def ready() -> bool:
    """Answers once the process has started (and Django is set up)."""
    return True


def chunk_read(reader: Any, rows: list[tuple[int, list[str]]]) -> Any:
    """imports.services._chunk_read here; the phone numbers it parsed travel with the
    chunk, so the writer's checks of the same numbers are cache hits."""
    from imports.services import _chunk_read
    from profiles.properties import phone_cache_take

    phone_cache_take()  # only this chunk's numbers go back
    chunk = _chunk_read(reader, rows)
    chunk.phones = phone_cache_take()
    return chunk
