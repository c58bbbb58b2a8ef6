"""cckl_core.histories: per-epoch records as arrays, checked against numpy on hand-made histories."""
import numpy as np
import pytest

from cckl_core import histories


class _Run:
    def __init__(self, values, key="cckl"):
        self.history = [{"epoch": e, key: v} for e, v in enumerate(values)]


def test_series_reads_one_key_and_missing_values_are_nan():
    run = _Run([1.0, None, 3.0])
    run.history[2].pop("cckl")
    epochs, values = histories.series(run, "cckl")
    assert epochs.tolist() == [0, 1, 2] and values[0] == 1.0 and np.isnan(values[1:]).all()
    assert histories.series(run.history, "cckl")[0].tolist() == [0, 1, 2]  # a history list works too


def test_seed_series_is_the_mean_and_sample_sd_over_seeds_and_log_is_per_seed():
    group = [_Run([1.0, 2.0, 4.0]), _Run([2.0, 4.0, 8.0]), _Run([4.0, 8.0, 16.0])]
    epochs, mean, std, n = histories.seed_series(group, "cckl")
    table = np.array([[1, 2, 4], [2, 4, 8], [4, 8, 16]], dtype=float)
    assert n == 3 and np.allclose(mean, table.mean(0)) and np.allclose(std, table.std(0, ddof=1))
    _, log_mean, _, _ = histories.seed_series(group, "cckl", log=True)
    assert np.allclose(log_mean, np.log(table).mean(0))
    _, _, one_sd, one = histories.seed_series(group[0], "cckl")
    assert one == 1 and np.isnan(one_sd).all()
    with pytest.raises(ValueError, match="different epochs"):
        histories.seed_series([group[0], _Run([1.0, 2.0])], "cckl")


def test_ln_is_nan_where_not_positive_without_a_warning():
    with np.errstate(all="raise"):
        out = histories.ln(np.array([np.e, 0.0, -1.0, np.nan]))
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1:]).all()
