"""Memory stays flat in file size: a 1 GB file imports within a few hundred MB of RSS.

Marked `bench` (minutes of work, deselected by pyproject's addopts): run it with
`pytest -m bench imports/tests/test_import_memory.py`. IMPORT_MEMORY_TEST_MB sets
the file's size (default 1024) to try it smaller.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import test_database_url
from imports.models import ImportRun
from profiles.models import Profile
from tests.bench.part_csv import _phone

# The import of a 1 GB file takes most of an hour here, far past the suite's timeout.
pytestmark = [
    pytest.mark.bench,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(6 * 3600),
]

ROOT = Path(__file__).resolve().parents[2]
PEAK_RSS_LIMIT_MB = 400


def _write_big_file(path: Path, megabytes: int) -> int:
    """New people with phones and a dated column, until the file has `megabytes` MB."""
    target = megabytes * 1_000_000
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("identity,Name,Email,Phone,City,Score<Float>,Signup<dd/MM/yyyy HH:mm:ss>\r\n")
        written = 0
        while written < target:
            lines = [
                f"mem-{n},Person {n},mem-{n}@example.com,{_phone(n % 100_000_000)},"
                f"City {n % 500},{n % 1000 / 10},{n % 28 + 1:02d}/0{n % 9 + 1}/2024 10:00:00\r\n"
                for n in range(rows, rows + 10_000)
            ]
            block = "".join(lines)
            handle.write(block)
            written += len(block)
            rows += len(lines)
    return rows


def test_a_1_gb_file_imports_within_a_few_hundred_mb(tmp_path, settings):
    megabytes = int(os.environ.get("IMPORT_MEMORY_TEST_MB", "1024"))
    path = tmp_path / "big.csv"
    rows = _write_big_file(path, megabytes)
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "IMPORT_MAX_UPLOAD_BYTES": str(path.stat().st_size + 1),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.part_csv", str(path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=6 * 3600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{megabytes} MB, {rows:,} rows: {json.dumps(result)}")  # the figures, with -s
    run = ImportRun.objects.get(pk=result["run"])
    try:
        assert (result["status"], result["rows"], result["rejected"]) == ("done", rows, 0)
        assert Profile.objects.count() == rows
        assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
        assert result["reader_peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
    finally:
        run.file.delete(save=False)
