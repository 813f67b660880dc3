"""CSV files people open in a spreadsheet: no cell may run as a formula.

Every CSV we produce (segment and people exports, rejected-row files, SFTP result
files, campaign reports) writes its cells through `formula_safe`.
"""

from __future__ import annotations

import codecs
import csv
import io

UTF8_BOM = codecs.BOM_UTF8
# What starts a formula in Excel, LibreOffice or Google Sheets (OWASP's CSV injection
# list), with the full-width forms some of them also accept.
FORMULA_TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
# Spreadsheets skip these before looking for a formula trigger.
LEADING_BLANKS = " \u00a0\u3000"


def formula_safe(value: object) -> str:
    """The cell's text, with a leading single quote when a spreadsheet would take it
    for a formula (also after leading spaces)."""
    text = "" if value is None else str(value)
    return "'" + text if text.lstrip(LEADING_BLANKS)[:1] in FORMULA_TRIGGERS else text


def write_csv(rows: list[list[object]]) -> bytes:
    """Rows -> UTF-8 CSV bytes with a BOM (so Excel reads the accents), every cell formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([formula_safe(cell) for cell in row])
    return UTF8_BOM + buffer.getvalue().encode()
