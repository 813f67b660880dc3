"""Reading real-world CSV files (imports.sources.csv; no database)."""

import gc
from pathlib import Path

import pytest

from imports.sources import csv as source
from imports.sources.csv import CellError, CsvFileError


def read(path: Path):
    with path.open("rb") as binary:
        info = source.inspect(binary)
        return info, list(source.iter_rows(binary, info.encoding, info.delimiter))


def test_bom_crlf_quoted_newlines_and_blank_lines(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b'\xef\xbb\xbfidentity,Name,Note\r\nu1,"Smith, Ann","line one\r\nline two"\r\n\r\n'
        b"\r\nu2,Bob,plain\r\n"
    )
    info, rows = read(path)
    assert info.encoding == "utf-8-sig"
    assert [column.name for column in info.columns] == ["identity", "Name", "Note"]
    assert info.rows_total == 2
    # Row numbers are the spreadsheet's: blank rows count, quoted newlines do not.
    assert rows == [(2, ["u1", "Smith, Ann", "line one\r\nline two"]), (5, ["u2", "Bob", "plain"])]


@pytest.mark.parametrize(
    ("content", "delimiter"),
    [
        (b"identity;Name;City\nu1;Ann;Paris, France\n", ";"),
        (b"identity\tName\tCity\nu1\tAnn\tParis, France\n", "\t"),
        (b'identity,Name,City\nu1,Ann,"Paris; France"\n', ","),
    ],
)
def test_delimiter_is_detected(tmp_path, content, delimiter):
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    info, rows = read(path)
    assert info.delimiter == delimiter
    assert len(rows[0][1]) == 3


def test_utf16_with_bom_from_excel_unicode_text(tmp_path):
    path = tmp_path / "unicode.txt"
    path.write_bytes("identity\tName\r\nu1\tZoë\r\n".encode("utf-16"))
    info, rows = read(path)
    assert info.delimiter == "\t"
    assert rows == [(2, ["u1", "Zoë"])]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\n  \n", "no header row"),
        (b"PK\x03\x04\x14\x00\x06\x00binary", "Excel workbook"),
        (b"\x00\x01\x02\x03garbage\x00", "not a text file"),
        (b"identity,Name\nu1,Ren\xe9\n", "not UTF-8 text (byte 0xe9 on line 2)"),
        (b'identity,Name\nu1,"never closed\nu2,x\n', "Row 2 cannot be read as CSV"),
        (b"identity,,Name\nu1,a,b\n", "Column 2 has no name"),
        (b"identity,Name,name\nu1,a,b\n", "Column 'name' appears twice"),
        (b"identity,Score<Money>\nu1,3\n", "'<Money>' is not a type we know"),
    ],
)
def test_files_that_are_not_csv_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(CsvFileError) as caught:
        read(path)
    assert message in str(caught.value)


def test_header_conventions():
    date = source.parse_header_cell("Purchase Date<dd/MM/yyyy HH:mm:ss>")
    assert (date.name, date.declared_type, date.date_format) == (
        "Purchase Date", "date", "dd/MM/yyyy HH:mm:ss",
    )  # fmt: skip
    assert source.parse_header_cell("Score<Float>").declared_type == "float"
    assert source.parse_header_cell("Visits<Integer>").declared_type == "integer"
    assert source.parse_header_cell("Premium<Boolean>").declared_type == "boolean"
    assert source.parse_header_cell("Tags<String[]>").declared_type == "list"
    assert source.parse_header_cell("Joined<Date>").declared_type == "date"
    assert source.parse_header_cell("identity").declared_type is None


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("25/12/2023 18:30:05", "dd/MM/yyyy HH:mm:ss", "$D_1703529005"),
        ("25/12/2023", "dd/MM/yyyy HH:mm:ss", "$D_1703505600"),  # missing time = 12:00:00
        ("12/25/2023 18:30:05", "MM/dd/yyyy HH:mm:ss", "$D_1703529005"),
        ("2023/25/12 18:30:05", "yyyy/dd/MM HH:mm:ss", "$D_1703529005"),
        ("2023/12/25 18:30:05", "yyyy/MM/dd HH:mm:ss", "$D_1703529005"),
        ("25 Dec 2023 18:30:05", "dd MMM yyyy HH:mm:ss", "$D_1703529005"),
        ("$D_1703529005", "dd/MM/yyyy HH:mm:ss", "$D_1703529005"),
        ("2023-12-25", "", "$D_1703505600"),
    ],
)
def test_dates_in_clevertap_formats(value, fmt, expected):
    assert source.convert(value, "date", fmt) == expected


def test_typed_values_and_refusals():
    assert source.convert("42", "integer") == 42
    assert source.convert("-3.5", "float") == -3.5
    assert source.convert("Yes", "boolean") is True
    assert source.convert("a, b ,c", "list") == {"$add": ["a", "b", "c"]}
    with pytest.raises(CellError, match="not a whole number"):
        source.convert("4.5", "integer")
    with pytest.raises(CellError, match="not a number"):
        source.convert("abc", "float")
    with pytest.raises(CellError, match="does not match the date format"):
        source.convert("31-01-2024", "date", "dd/MM/yyyy")


@pytest.mark.parametrize("value", ["=1+1", "+14155551234x", "-cmd", "@SUM(A1)"])
def test_leading_formula_characters_are_data_when_read(value):
    assert source.convert(value, "string") == value


def test_detected_types():
    assert source.detect_type(["1", "20", ""]) == "integer"
    assert source.detect_type(["1.5", "2"]) == "float"
    assert source.detect_type(["true", "False"]) == "boolean"
    assert source.detect_type(["02134", "10001"]) == "string"  # zip codes keep their zeros
    assert source.detect_type(["+14155551234"]) == "string"  # phone numbers stay text
    assert source.detect_type(["$D_1700000000"]) == "date"


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_rows_left_unread_after_the_file_closed_end_quietly(tmp_path):
    """A cancelled import closes its file with the rows half read: the reader is then
    dropped without an error (it used to raise "I/O operation on closed file")."""
    path = tmp_path / "people.csv"
    path.write_bytes(b"identity,Name\n" + b"".join(b"u%d,Ann\n" % i for i in range(100)))
    binary = path.open("rb")
    info = source.inspect(binary)
    rows = source.iter_rows(binary, info.encoding, info.delimiter)
    assert next(rows) == (2, ["u0", "Ann"])
    binary.close()
    rows.close()
    del rows
    gc.collect()
