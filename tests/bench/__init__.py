"""Benchmarks (`make bench`). Not tests: they print figures, they assert nothing.

Each part is a module `tests/bench/part_<name>.py` with
`run(ctx: BenchContext) -> list[Figure]`. The harness runs against a separate
database (`<DATABASE_URL's name>_bench`), migrated and seeded once with
`seed_demo` to the requested size, and reused by later runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    part: str
    label: str
    value: float
    unit: str
    target: str = ""  # e.g. "≥ 5000" — printed beside the value, never asserted

    def line(self) -> str:
        target = f"   (target {self.target})" if self.target else ""
        return f"{self.part:<10} {self.label:<62} {self.value:>12,.1f} {self.unit}{target}"


@dataclass(frozen=True)
class BenchContext:
    profiles: int  # profiles seeded in the bench database
    events_per_profile: int
    database_url: str  # the bench database (already migrated and seeded)
    quick: bool  # a small smoke run: parts may scale their own work down
