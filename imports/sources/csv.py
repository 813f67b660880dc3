"""Reading CSV files the way people actually produce them (no ORM here).

- Encoding: UTF-8 with or without a byte-order mark (UTF-16 with a BOM too,
  as Excel's "Unicode text" writes it). Anything else gets a clear error that
  says what to do, never a guess that garbles names.
- Delimiter: `,`, `;` or tab, chosen from the header row.
- Quoted fields may hold delimiters and newlines; CRLF and LF both work;
  blank rows are skipped (they still count in row numbers, as in a spreadsheet).
- Header conventions of CleverTap's CSV upload: a lower-case `identity`
  column names the person; `Purchase Date<dd/MM/yyyy HH:mm:ss>` declares a
  date format; `Score<Float>`, `Visits<Integer>`, `Premium<Boolean>`,
  `Tags<String[]>` and `Joined<Date>` declare types.
- Cells are data, never formulas: `=1+1` is imported as the text "=1+1".
  Only exports neutralise them (config.csvsafe).

Row numbers are spreadsheet row numbers: the header is row 1. People are shown
data row numbers, counting from 1 under the header (see header_row_number).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from profiles.properties import DATE_PREFIX

PREVIEW_ROWS = 15
CANDIDATE_DELIMITERS = (",", ";", "\t")
# Every cell we accept is at most 512 bytes; a longer "field" is almost always
# a quote that was never closed, which csv would otherwise read to the end.
FIELD_SIZE_LIMIT = 128 * 1024
# Far above any real profile or events file (CleverTap allows 256 custom properties);
# keeps a hostile header from costing minutes on the mapping page.
MAX_COLUMNS = 500
READ_BLOCK = 1024 * 1024

UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
BINARY_SIGNATURES = {
    b"PK\x03\x04": "an Excel workbook or a ZIP archive",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) workbook",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"\x1f\x8b": "a gzip archive",
}

# Column types a mapping may choose; the profile store knows them as
# number (integer, float), boolean, list (String[]), date and string.
COLUMN_TYPES = {
    "string": "Text",
    "integer": "Integer",
    "float": "Float",
    "boolean": "Boolean",
    "list": "Multi-value (String[])",
    "date": "Date",
}
HEADER_TYPES = {
    "string": "string",
    "str": "string",
    "integer": "integer",
    "int": "integer",
    "float": "float",
    "number": "float",
    "boolean": "boolean",
    "bool": "boolean",
    "string[]": "list",
    "date": "date",
}
TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0"}
INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,14})$")
FLOAT = re.compile(r"^-?(0|[1-9][0-9]*)?(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
EPOCH_DATE = re.compile(r"^\$D_-?[0-9]+$")
HEADER_ANNOTATION = re.compile(r"^(?P<name>.*?)\s*<(?P<annotation>[^<>]*)>\s*$")
# CleverTap (Java) date pattern letters -> strptime directives, longest first.
DATE_TOKENS = [
    ("yyyy", "%Y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"), ("dd", "%d"),
    ("HH", "%H"), ("mm", "%M"), ("ss", "%S"), ("yy", "%y"),
]  # fmt: skip
DEFAULT_TIME = dt.time(12, 0, 0)  # CleverTap: a date without a time means noon


class CsvFileError(Exception):
    """The file as a whole cannot be read as CSV; the message says why and what to do."""


class CellError(ValueError):
    """One cell does not fit its column's type."""


@dataclass(frozen=True)
class ColumnSpec:
    header: str  # the header cell as written
    name: str  # the property name: the header without its <annotation>
    declared_type: str | None  # a COLUMN_TYPES key when the header declares one
    date_format: str = ""  # CleverTap pattern, e.g. "dd/MM/yyyy HH:mm:ss"


@dataclass(frozen=True)
class CsvInfo:
    encoding: str
    delimiter: str
    columns: list[ColumnSpec]
    header_row: int
    rows_total: int  # non-blank data rows


# --- header ----------------------------------------------------------------------


def parse_header_cell(cell: str) -> ColumnSpec:
    """`Purchase Date<dd/MM/yyyy HH:mm:ss>` -> name "Purchase Date", a date with that format."""
    header = cell.strip()
    match = HEADER_ANNOTATION.match(header)
    if not match:
        return ColumnSpec(header=header, name=header, declared_type=None)
    name, annotation = match["name"].strip(), match["annotation"].strip()
    declared = HEADER_TYPES.get(annotation.lower())
    if declared is not None:
        return ColumnSpec(header=header, name=name, declared_type=declared)
    if annotation.startswith(DATE_PREFIX) or any(t in annotation for t, _ in DATE_TOKENS[:6]):
        return ColumnSpec(
            header=header,
            name=name,
            declared_type="date",
            date_format="" if annotation.startswith(DATE_PREFIX) else annotation,
        )
    raise CsvFileError(
        f"Column '{header}': '<{annotation}>' is not a type we know. Use one of "
        "<Float>, <Integer>, <Boolean>, <String[]>, <Date> or a date format such as "
        "<dd/MM/yyyy HH:mm:ss>."
    )


def _check_header(cells: list[str]) -> list[ColumnSpec]:
    if len(cells) > MAX_COLUMNS:
        raise CsvFileError(
            f"The header row has {len(cells):,} columns; at most {MAX_COLUMNS} are accepted. "
            "Split the file into files of fewer columns (each with the identifier column)."
        )
    columns = [parse_header_cell(cell) for cell in cells]
    seen: set[str] = set()
    for position, column in enumerate(columns, start=1):
        if not column.name:
            raise CsvFileError(
                f"Column {position} has no name in the header row. The first row of the file "
                "must name every column."
            )
        if column.name.lower() in seen:
            raise CsvFileError(f"Column '{column.name}' appears twice in the header row.")
        seen.add(column.name.lower())
    return columns


# --- encoding and delimiter ------------------------------------------------------------


def detect_encoding(head: bytes) -> str:
    """The file's encoding from its first bytes; CsvFileError for a non-text file."""
    if not head:
        raise CsvFileError("The file is empty.")
    for signature, what in BINARY_SIGNATURES.items():
        if head.startswith(signature):
            raise CsvFileError(
                f"This is not a CSV file: it looks like {what}. Save it as “CSV UTF-8” "
                "and upload that."
            )
    if head.startswith(UTF8_BOM):
        return "utf-8-sig"
    if head.startswith(UTF16_BOMS):
        return "utf-16"
    if b"\x00" in head:
        raise CsvFileError(
            "This is not a text file (it contains binary data). Upload a CSV file saved as "
            "“CSV UTF-8”."
        )
    return "utf-8"


def _check_decodes(binary: BinaryIO, encoding: str) -> None:
    """Decode the whole file once so a bad byte is reported up front, with its line."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    line = 1
    binary.seek(0)
    while True:
        block = binary.read(READ_BLOCK)
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as error:
            line += block[: error.start].count(b"\n")
            byte = block[error.start : error.start + 1].hex()
            raise CsvFileError(
                f"The file is not UTF-8 text (byte 0x{byte} on line {line}). Save it as "
                "“CSV UTF-8” (in Excel: File, Save As, CSV UTF-8) and upload it again."
            ) from None
        if encoding == "utf-8" and "\x00" in text:
            raise CsvFileError(
                "This is not a text file (it contains binary data). Upload a CSV file saved "
                "as “CSV UTF-8”."
            )
        line += text.count("\n")
        if not block:
            return


def _first_record(text: str, delimiter: str) -> list[str]:
    for cells in csv.reader(io.StringIO(text), delimiter=delimiter):
        if any(cell.strip() for cell in cells):
            return cells
    return []


def detect_delimiter(sample: str) -> str:
    """The candidate that splits the header row into the most columns (`,` on a tie)."""
    best, best_count = ",", 0
    for delimiter in CANDIDATE_DELIMITERS:
        try:
            count = len(_first_record(sample, delimiter))
        except csv.Error:
            continue
        if count > best_count:
            best, best_count = delimiter, count
    return best


def open_text(binary: BinaryIO, encoding: str) -> io.TextIOWrapper:
    binary.seek(0)
    return io.TextIOWrapper(binary, encoding=encoding, newline="", errors="strict")


# --- rows -----------------------------------------------------------------------------


def _records(binary: BinaryIO, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) for every record, blank ones included, CsvFileError on bad CSV."""
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    text = open_text(binary, encoding)
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    number = 0
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            number += 1
            yield number, cells
    except csv.Error as error:
        raise CsvFileError(
            f'Row {number + 1} cannot be read as CSV ({error}). Most often a quote (") '
            "opens a field that is never closed."
        ) from None
    except UnicodeDecodeError:
        raise CsvFileError(
            f"Row {number + 1} is not UTF-8 text. Save the file as “CSV UTF-8”."
        ) from None
    finally:
        # Hand the binary file back open to the caller; one it closed already (a
        # cancelled import) has nothing to hand back, and detaching it would raise.
        if not binary.closed:
            text.detach()


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def iter_rows(binary: BinaryIO, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """The data rows: (row number, cells); the header (the first non-blank row) and
    blank rows are skipped.

    Cells are as written (not trimmed); a row may have more or fewer cells than
    the header: the caller reports that per row.
    """
    header_seen = False
    for number, cells in _records(binary, encoding, delimiter):
        if _is_blank(cells):
            continue
        if not header_seen:
            header_seen = True
            continue
        yield number, cells


def header_row_number(binary: BinaryIO, encoding: str, delimiter: str) -> int:
    """The spreadsheet row number of the header (the first non-blank row); 1 when none.

    Data row N, as the mapping preview and the rejected-rows report number rows,
    is spreadsheet row `header row + N`."""
    for number, cells in _records(binary, encoding, delimiter):
        if not _is_blank(cells):
            return number
    return 1


def inspect(binary: BinaryIO) -> CsvInfo:
    """Encoding, delimiter, header and row count of a file; CsvFileError when unreadable.

    Reads the whole file once, so a bad byte or an unclosed quote anywhere is
    reported before any row is imported.
    """
    binary.seek(0)
    head = binary.read(64 * 1024)
    encoding = detect_encoding(head)
    _check_decodes(binary, encoding)
    sample = head.decode(encoding, errors="ignore")
    delimiter = detect_delimiter(sample)
    header: list[str] | None = None
    header_row = 0
    rows_total = 0
    for number, cells in _records(binary, encoding, delimiter):
        if _is_blank(cells):
            continue
        if header is None:
            header, header_row = cells, number
        else:
            rows_total += 1
    if header is None:
        raise CsvFileError("The file is empty: it has no header row.")
    columns = _check_header(header)
    return CsvInfo(encoding, delimiter, columns, header_row, rows_total)


def preview(binary: BinaryIO, info: CsvInfo, limit: int = PREVIEW_ROWS) -> list[list[str]]:
    rows: list[list[str]] = []
    for _, cells in iter_rows(binary, info.encoding, info.delimiter):
        rows.append(cells)
        if len(rows) >= limit:
            break
    return rows


# --- types ----------------------------------------------------------------------------


def detect_type(values: list[str]) -> str:
    """The narrowest type every non-empty sample value fits; "string" when unsure.

    Zip codes and ids with leading zeros stay text; so do numbers with a
    leading "+" (phone numbers) and numbers too long to be exact.
    """
    sample = [value.strip() for value in values if value.strip()]
    if not sample:
        return "string"
    if all(EPOCH_DATE.match(value) for value in sample):
        return "date"
    if all(INTEGER.match(value) for value in sample):
        return "integer"
    if all(FLOAT.match(value) and any(c.isdigit() for c in value) for value in sample):
        return "float"
    if all(value.lower() in {"true", "false"} for value in sample):
        return "boolean"
    return "string"


@functools.lru_cache(maxsize=64)  # a file has a few formats, each used on every row
def strptime_format(pattern: str) -> str:
    """CleverTap's `dd/MM/yyyy HH:mm:ss` -> strptime's `%d/%m/%Y %H:%M:%S`."""
    out, position = [], 0
    while position < len(pattern):
        for token, directive in DATE_TOKENS:
            if pattern.startswith(token, position):
                out.append(directive)
                position += len(token)
                break
        else:
            out.append(pattern[position].replace("%", "%%"))
            position += 1
    return "".join(out)


# The numeric tokens of a date pattern as regex groups (ASCII digits only; strptime
# takes what this does not, and _numeric_date leaves those to it).
NUMERIC_DATE_TOKENS = {"yyyy": "(?P<year>[0-9]{4})", "MM": "(?P<month>[0-9]{1,2})",
                       "dd": "(?P<day>[0-9]{1,2})", "HH": "(?P<hour>[0-9]{1,2})",
                       "mm": "(?P<minute>[0-9]{1,2})", "ss": "(?P<second>[0-9]{1,2})"}  # fmt: skip


@functools.lru_cache(maxsize=64)
def _numeric_date_pattern(pattern: str) -> re.Pattern[str] | None:
    """A regex for a pattern made of yyyy, MM, dd, HH, mm, ss and literals; None for
    patterns with month names or two-digit years (strptime handles those)."""
    out, position, seen = [], 0, set()
    while position < len(pattern):
        token = next((t for t, _ in DATE_TOKENS if pattern.startswith(t, position)), None)
        if token is not None and (token not in NUMERIC_DATE_TOKENS or token in seen):
            return None
        if token is not None:
            out.append(NUMERIC_DATE_TOKENS[token])
            seen.add(token)
            position += len(token)
        else:
            out.append(re.escape(pattern[position]))
            position += 1
    if not {"yyyy", "MM", "dd"} <= seen:
        return None
    return re.compile("".join(out))


def _numeric_date(text: str, date_format: str) -> dt.datetime | None:
    """The fast path of parse_date for numeric patterns (strptime is ~10 µs a cell):
    the same result as strptime for every value it accepts, None for the rest (which
    strptime then parses or refuses with its message)."""
    pattern = _numeric_date_pattern(date_format)
    match = pattern.fullmatch(text) if pattern is not None else None
    if match is None:
        return None
    parts = match.groupdict()
    timed = "hour" in parts
    try:
        return dt.datetime(
            int(parts["year"]), int(parts["month"]), int(parts["day"]),
            int(parts["hour"]) if timed else DEFAULT_TIME.hour,
            int(parts.get("minute") or 0) if timed else 0,
            int(parts.get("second") or 0) if timed else 0, tzinfo=dt.UTC,
        )  # fmt: skip
    except ValueError:
        return None


def _date_part(pattern: str) -> str:
    """The pattern without its time of day: `dd/MM/yyyy HH:mm:ss` -> `dd/MM/yyyy`."""
    position = pattern.find("HH")
    return pattern[:position].rstrip(" T") if position > 0 else pattern


def parse_date(value: str, date_format: str = "") -> dt.datetime:
    """A date cell -> aware UTC datetime. `$D_<epoch>` always works; with no format,
    ISO 8601 (`2024-01-31` or `2024-01-31 18:30:00`). A missing time is 12:00:00."""
    text = value.strip()
    if EPOCH_DATE.match(text):
        try:
            return dt.datetime.fromtimestamp(int(text[len(DATE_PREFIX) :]), tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise CellError(f"'{value}' is not a valid $D_<epoch> date.") from None
    if date_format:
        fast = _numeric_date(text, date_format)
        if fast is not None:
            return fast
        formats = [strptime_format(date_format), strptime_format(_date_part(date_format))]
        for position, fmt in enumerate(formats):
            try:
                parsed = dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
            if (position == 1 and "%H" in formats[0]) or "%H" not in fmt:
                parsed = dt.datetime.combine(parsed.date(), DEFAULT_TIME)
            return parsed.replace(tzinfo=dt.UTC)
        raise CellError(f"'{value}' does not match the date format {date_format}.")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CellError(
            f"'{value}' is not a date: use $D_<epoch seconds>, YYYY-MM-DD or declare the "
            "format in the header, e.g. Joined<dd/MM/yyyy>."
        ) from None
    if len(text) <= 10:
        parsed = dt.datetime.combine(parsed.date(), DEFAULT_TIME)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def epoch_date(moment: dt.datetime) -> str:
    """A datetime as CleverTap's `$D_<epoch seconds>`, the form every validator takes."""
    return f"{DATE_PREFIX}{int(moment.timestamp())}"


def convert(value: str, column_type: str, date_format: str = "") -> object:
    """A (non-empty) cell as the typed value the profile store validates.

    Integers and floats become numbers, booleans booleans, dates `$D_<epoch>`,
    a multi-value cell `{"$add": [...]}` (items separated by commas), text stays
    exactly as written — including a leading = + - or @, which is data here.
    """
    if column_type == "string":
        return value
    text = value.strip()
    if column_type == "integer":
        if not INTEGER.match(text):
            raise CellError(f"'{value}' is not a whole number.")
        return int(text)
    if column_type == "float":
        try:
            number = float(text)
        except ValueError:
            raise CellError(f"'{value}' is not a number.") from None
        if not math.isfinite(number):
            raise CellError(f"'{value}' is not a finite number.")
        return int(text) if INTEGER.match(text) else number
    if column_type == "boolean":
        lowered = text.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise CellError(f"'{value}' is not a boolean (true/false).")
    if column_type == "list":
        return {"$add": [item.strip() for item in value.split(",") if item.strip()]}
    if column_type == "date":
        return epoch_date(parse_date(value, date_format))
    raise CellError(f"Unknown column type '{column_type}'.")


# --- exports ----------------------------------------------------------------------------
