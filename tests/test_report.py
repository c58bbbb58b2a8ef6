"""The report (the last step of `make paper`): the compute-cost table written beside the rendered figures
and listed on the profile's page; nothing written where there are no figures."""
import shutil

import pytest

from cckl_core import costs, profiles, report

SMOKE = profiles.load("smoke")

pytestmark = pytest.mark.slow


def test_the_report_writes_the_cost_table_and_lists_it_on_the_profiles_page(smoke_render, tmp_path, monkeypatch):
    base, _ = smoke_render
    monkeypatch.setenv("CCKL_ARTIFACTS", str(base / "artifacts"))
    df = costs.write(SMOKE, tmp_path / "costs")

    figures = tmp_path / "figures"
    shutil.copytree(base / "figures1", figures)
    assert report.main(SMOKE, str(figures)) == 0
    assert (figures / "smoke" / "compute_costs.csv").read_text() == df.to_csv(index=False)
    page = (figures / "smoke" / report.HTML_FILE).read_text()  # the profile's page lists the cost table
    assert "<a href='compute_costs.md'>compute_costs</a> (<a href='compute_costs.csv'>csv</a>)" in page
    assert (figures / "README.md").exists()
    assert report.main(SMOKE, str(tmp_path / "elsewhere")) == 2  # no figures there: nothing written
    assert not (tmp_path / "elsewhere").exists()
