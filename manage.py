#!/usr/bin/env python
"""Django's command-line utility.

With DATABASE_URL unset it attaches to (or starts) the embedded developer
services first, so `python manage.py …` works the same inside and outside
`make run`.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.launcher import ensure_service_environment

    ensure_service_environment()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
