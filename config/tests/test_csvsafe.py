import pytest

from config.csvsafe import formula_safe, write_csv


def test_exports_neutralise_formulas():
    exported = write_csv([['=HYPERLINK("x")', "+1", "-2", "@a", "\tx", "safe"]])
    assert exported.decode("utf-8-sig") == '"\'=HYPERLINK(""x"")",\'+1,\'-2,\'@a,\'\tx,safe\r\n'


@pytest.mark.parametrize(
    "cell",
    [
        " =1+1",  # spreadsheets skip leading spaces before a formula
        "   +cmd",
        "\u00a0=1+1",  # no-break space
        "\u3000=1+1",  # ideographic space
        "\uff1d1+1",  # full-width equals sign
        "\uff0b1",  # full-width plus
        "\uff0d1",  # full-width minus
        "\uff20SUM(A1)",  # full-width at
        "\r=1",
        "\n=1",
    ],
)
def test_hidden_and_full_width_formula_starts_are_neutralised(cell):
    assert formula_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["plain", "1+1", "a=b", "", "Zoë", "x@example.com"])
def test_ordinary_text_is_kept_as_is(cell):
    assert formula_safe(cell) == cell
