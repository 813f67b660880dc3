"""Run the benchmarks: python -m tests.bench [--profiles N] [--events-per-profile M] [--only P]

Defaults: 1,000,000 profiles and 10 events per profile (10,000,000 events).
`--quick` seeds 20,000 profiles for a smoke run of every part.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from urllib.parse import urlsplit, urlunsplit

PARTS = ["services", "api", "people", "csv", "segments", "campaigns", "sdk"]


def _bench_database_url(url: str) -> str:
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path=f"/{name}_bench"))


def _ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    name = parts.path.lstrip("/")
    with psycopg.connect(_libpq(maintenance), autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def _libpq(url: str) -> str:
    """dj-database-url style socket hosts (%2F-encoded) -> a libpq connection string."""
    import dj_database_url

    config = dj_database_url.parse(url)
    fields = {
        "dbname": config["NAME"],
        "user": config.get("USER") or "postgres",
        "host": config.get("HOST") or "",
        "port": str(config.get("PORT") or ""),
        "password": config.get("PASSWORD") or "",
    }
    return " ".join(f"{key}='{value}'" for key, value in fields.items() if value)


def machine_description() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events-per-profile", type=int, default=10)
    parser.add_argument("--only", action="append", choices=PARTS)
    parser.add_argument("--quick", action="store_true", help="20,000 profiles, smaller runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.profiles = min(args.profiles, 20_000)

    bench_url = _bench_database_url(os.environ["DATABASE_URL"])
    _ensure_database(bench_url)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from profiles.models import Profile
    from tests.bench import BenchContext

    call_command("migrate", "--noinput", verbosity=0)
    have = Profile.objects.count()
    if have < args.profiles:
        print(f"seeding the bench database: {args.profiles - have:,} more profiles…", flush=True)
        started = time.perf_counter()
        call_command(
            "seed_demo",
            profiles=args.profiles - have,
            events_per_profile=args.events_per_profile,
        )
        print(f"seeded in {time.perf_counter() - started:,.0f} s", flush=True)
    context = BenchContext(
        profiles=Profile.objects.count(),
        events_per_profile=args.events_per_profile,
        database_url=bench_url,
        quick=args.quick,
    )
    print(f"machine: {machine_description()}")
    print(f"data: {context.profiles:,} profiles, ~{args.events_per_profile} events each")
    for name in args.only or PARTS:
        try:
            module = importlib.import_module(f"tests.bench.part_{name}")
        except ModuleNotFoundError:
            print(f"{name:<10} (no benchmark yet)")
            continue
        for figure in module.run(context):
            print(figure.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
