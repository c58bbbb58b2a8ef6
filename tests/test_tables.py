"""cckl_core.tables: result tables as files, and as the notebooks show them."""
import math

import numpy as np
import pandas as pd

from cckl_core import stats, tables


def test_fmt_gives_significant_digits_yes_no_and_na():
    assert tables.fmt(0.000123456, 3) == "0.000123" and tables.fmt(123456.0, 3) == "1.23e+05"
    assert tables.fmt(True) == "yes" and tables.fmt(np.nan) == "n/a" and tables.fmt(None) == "n/a"
    assert tables.fmt(-math.inf) == "-inf" and tables.fmt(np.int64(7)) == "7"


def test_styled_shows_every_cell_to_three_digits_drops_empty_columns_and_colours_verdicts():
    df = pd.DataFrame({"claim": ["a long claim " * 10, "b"], "value": [0.123456, 12345.678],
                       "nan_column": [np.nan, np.nan], "text_column": ["", ""], "holds": [stats.HOLDS, stats.INCONCLUSIVE]})
    html = tables.styled(df).to_html()
    assert "nan_column" not in html and "text_column" not in html
    assert ">0.123<" in html and ">1.23e+04<" in html and "a long claim " * 10 in html  # nothing cut
    for verdict in (stats.HOLDS, stats.INCONCLUSIVE):
        assert tables.VERDICT_COLOURS[verdict] in html
    assert tables.styled(df).to_html() == html  # the same page each render (ids from the content)
