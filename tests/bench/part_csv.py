"""Part 4: CSV import of two generated profile files (10 columns each).

- `new`: all-new people with phone numbers and a declared date format (identity, Name,
  Email, Phone, Gender, City, Plan, Score, Active, `Signup<dd/MM/yyyy HH:mm:ss>`);
- `mix`: half existing people (same name and email, new custom values), half new ones.

For each file:
- rows/s of our import (imports.services.import_run_execute: parse, validate with the
  API's rules, set-based writes), run in a child process (`python -m tests.bench.part_csv
  PATH`) so its peak RSS is the import's own;
- the same file COPY'd raw into a bare table: the floor PostgreSQL sets;
- django-import-export importing a sample of the same rows into the same models
  (a dev dependency), and the ratios.

`BENCH_CSV_ROWS` overrides the row count (default 1,000,000; `--quick`: 20,000),
`BENCH_CSV_DIE_ROWS` the django-import-export sample (10,000; 2,000), `BENCH_CSV_FILES`
the files (`new,mix`).
After the `new` file, the floor PostgreSQL sets for writing such people at all: the
same rows written by SQL alone (_FLOOR_STATEMENTS), from one connection and from two.
The new people it creates are deleted afterwards; existing people keep the custom
properties it sets, with fresh values each run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.bench import BenchContext, Figure

PART = "csv"
ROOT = Path(__file__).resolve().parents[2]
MIX_HEADER = ["identity", "Name", "Email", "Gender", "DOB", "City", "Plan", "Score<Float>",
              "Visits<Integer>", "Premium<Boolean>"]  # fmt: skip
NEW_HEADER = ["identity", "Name", "Email", "Phone", "Gender", "City", "Plan", "Score",
              "Active", "Signup<dd/MM/yyyy HH:mm:ss>"]  # fmt: skip


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


def _write_mix(path: Path, rows: int, tag: str) -> None:
    """Half the rows are existing people (same name and email, new custom values),
    half are new people, interleaved."""
    import csv

    rng = random.Random(tag)
    existing = _existing_people(rows // 2)
    cities = [f"City {n}" for n in range(500)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(MIX_HEADER)
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


def _phone(n: int) -> str:
    """The n-th of 100,000,000 valid UK mobile numbers (+44 7400… to +44 7499…: every
    number of these ranges is valid, unlike some of +44 7…)."""
    return f"+44{7400 + n // 1_000_000}{n % 1_000_000:06d}"


def _write_new(path: Path, rows: int, tag: str) -> None:
    """Every row a new person, each with their own (valid, UK mobile) phone number."""
    import csv

    rng = random.Random(tag)
    cities = [f"City {n}" for n in range(500)]
    base = rng.randrange(10_000_000)  # phones differ from run to run (never held already)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(NEW_HEADER)
        for n in range(rows):
            writer.writerow([
                f"csvbench-{tag}-{n}", f"New Person {n}", f"csvbench-{tag}-{n}@example.com",
                _phone((base + n * 7) % 100_000_000), rng.choice("MF"),
                rng.choice(cities), rng.choice(["free", "pro", "gold"]),
                f"{rng.random() * 100:.2f}", rng.choice(["true", "false"]),
                f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/20"
                f"{rng.randrange(10, 26)} {rng.randrange(24):02d}:{rng.randrange(60):02d}:00",
            ])  # fmt: skip


def _raw_copy_seconds(path: Path, width: int) -> float:
    from django.db import connection

    columns = ", ".join(f"c{n} text" for n in range(width))
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


# What PostgreSQL alone takes to write the all-new file's people, with nothing to validate
# or plan: per chunk the statements an import of new people cannot do without (look up
# the three identifiers, insert the profiles, their identifiers and one "Profile created"
# history row each, commit), on already-clean values, from one or several connections at
# once. It is the floor for any import design that keeps today's tables and constraints.
_FLOOR_CHUNK = 5_000
_FLOOR_STATEMENTS = [
    "SELECT value, profile_id FROM profiles_identifier WHERE kind = 'identity'"
    " AND value = ANY(ARRAY(SELECT identity FROM bench_floor_stage))",
    "SELECT value, profile_id FROM profiles_identifier WHERE kind = 'email'"
    " AND value = ANY(ARRAY(SELECT email FROM bench_floor_stage))",
    "SELECT value, profile_id FROM profiles_identifier WHERE kind = 'phone'"
    " AND value = ANY(ARRAY(SELECT phone FROM bench_floor_stage))",
    "WITH created AS ("
    " INSERT INTO profiles_profile (ct_id, identified, custom, name, email, phone, gender,"
    "  language, tz, photo, education, event_count, last_platform, last_device,"
    "  last_location, created_at, updated_at)"
    " SELECT ct_id, TRUE, custom, name, email, phone, gender, '', '', '', '', 0, '', '', '',"
    "  now(), now() FROM bench_floor_stage RETURNING id, ct_id)"
    " UPDATE bench_floor_stage s SET profile_id = created.id FROM created"
    " WHERE s.ct_id = created.ct_id",
    "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
    " SELECT s.profile_id, x.kind, x.value, now() FROM bench_floor_stage s,"
    " LATERAL (VALUES ('identity', s.identity), ('email', s.email), ('phone', s.phone))"
    " AS x(kind, value) ON CONFLICT (kind, value) DO NOTHING",
    "INSERT INTO profiles_propertychange (profile_id, property, old_value, new_value,"
    " source, actor_label, changed_at)"
    " SELECT profile_id, 'Profile created', NULL, custom, 'csv', 'bench', now()"
    " FROM bench_floor_stage",
]


def _floor_rows(tag: str, start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(f"{tag}-{start}")
    base = random.Random(tag).randrange(100_000_000)  # phones no earlier run holds
    for n in range(start, stop):
        custom = {"City": f"City {rng.randrange(500)}", "Plan": rng.choice(["free", "pro"]),
                  "Score": round(rng.random() * 100, 2), "Active": rng.random() < 0.5,
                  "Signup": 1_600_000_000 + n}  # fmt: skip
        yield (f"__floor-{tag}-{n}", f"floor-{tag}-{n}", f"Floor Person {n}",
               f"floor-{tag}-{n}@example.com", _phone((base + n) % 100_000_000),
               rng.choice("MF"), json.dumps(custom))  # fmt: skip


def _floor_writer(tag: str, chunks: list[tuple[int, int]]) -> None:
    import psycopg
    from django.db import connection

    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE bench_floor_stage (ct_id text, identity text, name text,"
            " email text, phone text, gender text, custom jsonb, profile_id bigint)"
            " ON COMMIT DELETE ROWS"
        )
        for start, stop in chunks:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")  # as the import does
                with cursor.copy(
                    "COPY bench_floor_stage (ct_id, identity, name, email, phone, gender,"
                    " custom) FROM STDIN"
                ) as copy:
                    for row in _floor_rows(tag, start, stop):
                        copy.write_row(row)
                for statement in _FLOOR_STATEMENTS:
                    cursor.execute(statement)
                    identifiers = statement.startswith("INSERT INTO profiles_identifier")
                    if identifiers and cursor.rowcount != 3 * (stop - start):
                        raise RuntimeError("bench floor: identifiers already held")  # less work


def _sql_floor_rows_per_second(rows: int, connections: int, tag: str) -> float:
    """Rows/s of the floor above over `rows` new people, `connections` writing at once
    (each its own share of the chunks, in threads: the client's work is small)."""
    from django.db import connection

    chunks = [(start, min(start + _FLOOR_CHUNK, rows)) for start in range(0, rows, _FLOOR_CHUNK)]
    with ThreadPoolExecutor(connections) as pool:
        started = time.perf_counter()
        for done in [pool.submit(_floor_writer, tag, chunks[n::connections])
                     for n in range(connections)]:  # fmt: skip
            done.result()
        seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_floor_ids AS SELECT id FROM profiles_profile"
            " WHERE ct_id LIKE %s",
            [f"__floor-{tag}-%"],
        )
        for table in ("profiles_propertychange", "profiles_identifier"):
            cursor.execute(
                f"DELETE FROM {table} WHERE profile_id IN (SELECT id FROM bench_floor_ids)"
            )
        cursor.execute("DELETE FROM profiles_profile WHERE id IN (SELECT id FROM bench_floor_ids)")
        cursor.execute("DROP TABLE bench_floor_ids")
    return rows / seconds


def _die_rows_per_second(path: Path, sample: int) -> float:
    """django-import-export on the first `sample` rows, into the same models: the
    profile (default fields + custom JSON) and its identity/email/phone identifiers.
    The import runs in a transaction rolled back at the end (dry run): it leaves nothing."""
    import tablib
    from import_export import resources

    from imports.sources.csv import convert, parse_header_cell
    from profiles.models import Identifier, Profile
    from profiles.properties import normalize_phone

    lines = path.read_text(encoding="utf-8").splitlines()[: sample + 1]
    dataset = tablib.Dataset().load("\n".join(lines), format="csv")
    defaults = {"Name": "name", "Email": "email", "Phone": "phone", "Gender": "gender",
                "DOB": "dob"}  # fmt: skip
    types = {"Score": "float", "Active": "boolean"}
    custom_columns = [
        (header, spec.name, spec.declared_type or types.get(spec.name, "string"), spec.date_format)
        for header in dataset.headers
        if (spec := parse_header_cell(header)).name not in defaults and header != "identity"
    ]

    class ProfileResource(resources.ModelResource):
        class Meta:
            model = Profile
            fields = ()
            import_id_fields = ()
            skip_diff = True

        def get_instance(self, instance_loader, row):
            identifier = Identifier.objects.filter(kind="identity", value=row["identity"]).first()
            return identifier.profile if identifier else None

        def init_instance(self, row=None):
            return Profile()

        def before_save_instance(self, instance, row, **kwargs):
            for header, field in defaults.items():
                if row.get(header):
                    value = row[header]
                    setattr(instance, field, normalize_phone(value) if field == "phone" else value)
            instance.custom = {
                **instance.custom,
                **{name: convert(row[header], kind, fmt)
                   for header, name, kind, fmt in custom_columns if row[header]},
            }  # fmt: skip
            instance.dob = instance.dob or None

        def after_save_instance(self, instance, row, **kwargs):
            Identifier.objects.get_or_create(kind="identity", value=row["identity"],
                                             defaults={"profile": instance})  # fmt: skip
            if row.get("Email"):
                Identifier.objects.get_or_create(kind="email", value=row["Email"].lower(),
                                                 defaults={"profile": instance})  # fmt: skip
            if row.get("Phone"):
                Identifier.objects.get_or_create(kind="phone", value=instance.phone,
                                                 defaults={"profile": instance})  # fmt: skip

    started = time.perf_counter()
    result = ProfileResource().import_data(dataset, dry_run=True, use_transactions=True)
    seconds = time.perf_counter() - started
    if result.has_errors() or result.has_validation_errors():
        raise RuntimeError("django-import-export reported errors on the sample")
    return sample / seconds


def _import_in_child(path: Path) -> dict:
    """Run the import in a fresh process; its timings, counters and peak RSS."""
    env = {**os.environ, "IMPORT_MAX_UPLOAD_BYTES": str(path.stat().st_size + 1)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.part_csv", str(path)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _own_peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux keeps that
    across execve, so a process started by a bigger one (the bench, pytest) reports its
    starter's peak, not its own."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (not Linux)


def _child(path: Path) -> None:
    """`python -m tests.bench.part_csv PATH`: import PATH and print one JSON line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.files import File

    from imports.services import import_run_create, import_run_execute

    started = time.perf_counter()
    with path.open("rb") as handle:
        created = import_run_create(
            kind="profiles", file_name=path.name, content=File(handle, path.name), origin="cli"
        )
    inspect_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    run = import_run_execute(import_run_id=created.pk)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    # The reader process of a big file (when IMPORT_READER_PROCESS_MIN_ROWS starts one): its
    # ru_maxrss includes what this process held when it started it, an upper bound.
    reader = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "run": run.pk,
        "status": run.status,
        "error": run.error,
        "rows": run.rows_done,
        "rejected": run.rows_rejected,
        "created": run.profiles_created,
        "updated": run.profiles_updated,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "reader_cpu_seconds": reader.ru_utime + reader.ru_stime,
        "inspect_seconds": inspect_seconds,
        "peak_rss_mb": _own_peak_rss_mb(),
        "reader_peak_rss_mb": reader.ru_maxrss / 1024,
    }
    print(json.dumps(result))


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


FILES = {
    "new": ("all-new people with phones", _write_new, NEW_HEADER),
    "mix": ("half updates, half new", _write_mix, MIX_HEADER),
}


def run(ctx: BenchContext) -> list[Figure]:
    rows = int(os.environ.get("BENCH_CSV_ROWS") or (20_000 if ctx.quick else 1_000_000))
    sample = int(os.environ.get("BENCH_CSV_DIE_ROWS") or (2_000 if ctx.quick else 10_000))
    figures: list[Figure] = []
    for key in os.environ.get("BENCH_CSV_FILES", "new,mix").split(","):
        label, write, header = FILES[key]
        tag = f"{key}{int(time.time())}"
        with tempfile.TemporaryDirectory(prefix="bench-csv-") as directory:
            path = Path(directory) / f"{key}.csv"
            write(path, rows, tag)
            size_mb = path.stat().st_size / 1e6
            print(f"{PART:<10} {key}: generated {rows:,} rows x {len(header)} columns "
                  f"({size_mb:,.0f} MB)", flush=True)  # fmt: skip
            copy_seconds = _raw_copy_seconds(path, len(header))
            die_rate = _die_rows_per_second(path, min(sample, rows))
            child = _import_in_child(path)
            if child["status"] != "done" or child["rejected"]:
                raise RuntimeError(f"bench import {key}: {child}")
            _cleanup(tag, [child["run"]])
        rate = rows / child["seconds"]
        figures += [
            Figure(PART, f"{key}: our import rows/s ({label})", rate, "rows/s", "≥ 20,000"),
            Figure(
                PART,
                f"{key}: our import, seconds for {rows:,} rows "
                f"({child['created']:,} new, {child['updated']:,} updated)",
                child["seconds"],
                "s",
            ),
            # The machine is shared: CPU time says what the import itself costs.
            Figure(
                PART,
                f"{key}: CPU µs per row, importing process",
                child["cpu_seconds"] / rows * 1e6,
                "µs",
            ),
            Figure(
                PART,
                f"{key}: CPU µs per row, its reader process",
                child["reader_cpu_seconds"] / rows * 1e6,
                "µs",
            ),
            Figure(
                PART,
                f"{key}: upload check before import (encoding, rows)",
                child["inspect_seconds"],
                "s",
            ),
            Figure(
                PART, f"{key}: import peak RSS ({size_mb:,.0f} MB file)", child["peak_rss_mb"], "MB"
            ),
            Figure(
                PART, f"{key}: its reader process's peak RSS", child["reader_peak_rss_mb"], "MB"
            ),
            Figure(
                PART, f"{key}: raw PostgreSQL COPY of the file into a bare table", copy_seconds, "s"
            ),
            Figure(
                PART,
                f"{key}: our import time ÷ raw COPY time",
                child["seconds"] / copy_seconds,
                "times",
            ),
            Figure(
                PART,
                f"{key}: django-import-export rows/s (first {min(sample, rows):,} rows)",
                die_rate,
                "rows/s",
            ),
            Figure(
                PART, f"{key}: our import ÷ django-import-export", rate / die_rate, "times", "≥ 10"
            ),
        ]
        if key == "new":
            figures += _floor_figures(min(rows, FLOOR_MAX_ROWS), tag)
    return figures


FLOOR_MAX_ROWS = 200_000  # enough for a steady rate; a million would add minutes


def _floor_figures(rows: int, tag: str) -> list[Figure]:
    one = _sql_floor_rows_per_second(rows, 1, f"{tag}a")
    both = _sql_floor_rows_per_second(rows, 2, f"{tag}b")
    label = f"new: SQL alone writing {rows:,} such people"
    return [
        Figure(PART, f"{label}, one connection", one, "rows/s"),
        Figure(PART, f"{label}, two connections", both, "rows/s"),
        Figure(
            PART, "new: the 20,000 rows/s target ÷ that floor on both cores", 20_000 / both, "times"
        ),
    ]


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
