"""Part 4: CSV import of a generated profile file (10 columns, new and existing people).

- rows/s of our import (imports.services.import_run_execute: parse, validate with
  the API's rules, set-based writes through profiles.bulk);
- the same file COPY'd raw into a bare table: the floor PostgreSQL sets;
- django-import-export importing a sample of the same rows into the same models
  (installed into the venv for the benchmark only, never a project dependency).

The new people it creates are deleted afterwards; existing people keep the custom
properties it sets (City, Plan, Score, Visits, Premium), with fresh values each run.
"""

from __future__ import annotations

import importlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import BenchContext, Figure

PART = "csv"
HEADER = ["identity", "Name", "Email", "Gender", "DOB", "City", "Plan", "Score<Float>",
          "Visits<Integer>", "Premium<Boolean>"]  # fmt: skip
DIE_REQUIREMENT = "django-import-export>=4.3,<5"


def _existing_people(limit: int) -> list[tuple[str, str, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.value, p.name, p.email FROM profiles_identifier i"
            " JOIN profiles_profile p ON p.id = i.profile_id"
            " WHERE i.kind = 'identity' ORDER BY i.id LIMIT %s",
            [limit],
        )
        return cursor.fetchall()


def _write_file(path: Path, rows: int, tag: str) -> None:
    """Half the rows are existing people (same name and email, new custom values),
    half are new people, interleaved."""
    import csv

    rng = random.Random(tag)
    existing = _existing_people(rows // 2)
    cities = [f"City {n}" for n in range(500)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        for n in range(rows):
            custom = [rng.choice(cities), rng.choice(["free", "pro", "gold"]),
                      f"{rng.random() * 100:.2f}", rng.randrange(1000),
                      rng.choice(["true", "false"])]  # fmt: skip
            if n % 2 == 0 and n // 2 < len(existing):
                identity, name, email = existing[n // 2]
                writer.writerow([identity, name, email, "", "", *custom])
            else:
                writer.writerow([
                    f"csvbench-{tag}-{n}", f"New Person {n}", f"csvbench-{tag}-{n}@example.com",
                    rng.choice("MF"), f"19{rng.randrange(50, 100)}-0{rng.randrange(1, 10)}-1"
                    f"{rng.randrange(10)}", *custom,
                ])  # fmt: skip


def _raw_copy_seconds(path: Path) -> float:
    from django.db import connection

    columns = ", ".join(f"c{n} text" for n in range(len(HEADER)))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS bench_csv_raw ({columns})")
        cursor.execute("TRUNCATE bench_csv_raw")
        started = time.perf_counter()
        with (
            cursor.cursor.copy("COPY bench_csv_raw FROM STDIN (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as handle,
        ):
            while block := handle.read(1024 * 1024):
                copy.write(block)
        seconds = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_csv_raw")
    return seconds


def _import_export():
    try:
        return importlib.import_module("import_export.resources")
    except ImportError:
        print(f"{PART:<10} installing {DIE_REQUIREMENT} for the comparison…", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", DIE_REQUIREMENT], check=True
        )
        importlib.invalidate_caches()
        return importlib.import_module("import_export.resources")


def _die_rows_per_second(path: Path, sample: int) -> float:
    """django-import-export on the first `sample` rows, into the same models: the
    profile (default fields + custom JSON) and its identity/email identifiers. The
    import runs in a transaction rolled back at the end (dry run), so it leaves nothing."""
    resources = _import_export()
    import tablib

    from profiles.models import Identifier, Profile

    class ProfileResource(resources.ModelResource):
        class Meta:
            model = Profile
            fields = ("name", "email", "gender", "dob")
            import_id_fields = ()
            skip_diff = True

        def get_instance(self, instance_loader, row):
            identifier = Identifier.objects.filter(kind="identity", value=row["identity"]).first()
            return identifier.profile if identifier else None

        def init_instance(self, row=None):
            return Profile()

        def before_save_instance(self, instance, row, **kwargs):
            instance.custom = {
                **instance.custom, "City": row["City"], "Plan": row["Plan"],
                "Score": float(row["Score<Float>"]), "Visits": int(row["Visits<Integer>"]),
                "Premium": row["Premium<Boolean>"] == "true",
            }  # fmt: skip
            instance.gender = instance.gender or ""
            instance.dob = instance.dob or None

        def after_save_instance(self, instance, row, **kwargs):
            Identifier.objects.get_or_create(kind="identity", value=row["identity"],
                                             defaults={"profile": instance})  # fmt: skip
            if row["Email"]:
                Identifier.objects.get_or_create(kind="email", value=row["Email"].lower(),
                                                 defaults={"profile": instance})  # fmt: skip

    lines = path.read_text(encoding="utf-8").splitlines()[: sample + 1]
    dataset = tablib.Dataset().load("\n".join(lines), format="csv")
    for row in dataset.dict:
        for key in ("Gender", "DOB"):
            row.setdefault(key, "")
    started = time.perf_counter()
    result = ProfileResource().import_data(dataset, dry_run=True, use_transactions=True)
    seconds = time.perf_counter() - started
    if result.has_errors() or result.has_validation_errors():
        raise RuntimeError("django-import-export reported errors on the sample")
    return sample / seconds


def _cleanup(tag: str, run_ids: list[int]) -> None:
    from django.db import connection

    from imports.models import ImportRun

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_csv_new AS SELECT profile_id AS id FROM profiles_identifier"
            " WHERE kind = 'identity' AND value LIKE %s",
            [f"csvbench-{tag}-%"],
        )
        for table in ("profiles_propertychange", "profiles_event", "profiles_identifier"):
            cursor.execute(
                f"DELETE FROM {table} WHERE profile_id IN (SELECT id FROM bench_csv_new)"
            )
        cursor.execute("DELETE FROM profiles_profile WHERE id IN (SELECT id FROM bench_csv_new)")
        cursor.execute("DROP TABLE bench_csv_new")
    for run in ImportRun.objects.filter(pk__in=run_ids):
        run.file.delete(save=False)
        run.delete()


def run(ctx: BenchContext) -> list[Figure]:
    from django.test import override_settings

    from imports.services import import_run_create, import_run_execute

    rows = 20_000 if ctx.quick else 1_000_000
    sample = 2_000 if ctx.quick else 10_000
    tag = str(int(time.time()))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-csv-") as directory:
        path = Path(directory) / "profiles.csv"
        _write_file(path, rows, tag)
        size_mb = path.stat().st_size / 1e6
        print(f"{PART:<10} generated {rows:,} rows x {len(HEADER)} columns ({size_mb:,.0f} MB)",
              flush=True)  # fmt: skip

        copy_seconds = _raw_copy_seconds(path)
        die_rate = _die_rows_per_second(path, sample)

        started = time.perf_counter()
        # The dashboard's 50 MB upload limit would refuse the benchmark's 1M-row
        # file (~106 MB); the pipeline itself has no such bound.
        with (
            path.open("rb") as handle,
            override_settings(IMPORT_MAX_UPLOAD_BYTES=path.stat().st_size + 1),
        ):
            from django.core.files import File

            created = import_run_create(
                kind="profiles",
                file_name="bench.csv",
                content=File(handle, "bench.csv"),
                origin="cli",
            )
        inspect_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with override_settings(IMPORT_MAX_UPLOAD_BYTES=path.stat().st_size + 1):
            finished = import_run_execute(import_run_id=created.pk)
        seconds = time.perf_counter() - started
        if finished.status != "done" or finished.rows_rejected:
            raise RuntimeError(f"bench import: {finished.status} {finished.error} "
                               f"({finished.rows_rejected} rows rejected)")  # fmt: skip
        rate = rows / seconds
        _cleanup(tag, [created.pk])

    figures += [
        Figure(
            PART,
            f"our import: rows/s ({rows:,} rows, "
            f"{finished.profiles_created:,} new, {finished.profiles_updated:,} updated)",
            rate,
            "rows/s",
            "≥ 20,000",
        ),
        Figure(PART, "our import: seconds for the file", seconds, "s"),
        Figure(
            PART, "upload check before import (encoding, delimiter, rows)", inspect_seconds, "s"
        ),
        Figure(PART, "raw PostgreSQL COPY of the same file into a bare table", copy_seconds, "s"),
        Figure(PART, f"raw COPY: rows/s ({rows:,} rows)", rows / copy_seconds, "rows/s"),
        Figure(PART, f"django-import-export: rows/s (first {sample:,} rows)", die_rate, "rows/s"),
        Figure(PART, "our import ÷ django-import-export", rate / die_rate, "times", "≥ 10"),
    ]
    return figures
