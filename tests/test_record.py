"""The per-epoch record (cckl_core.record): predictions in eval mode, per-sample correctness under an
attack, and every statistic of the record, against computations made here from the model's outputs
(the CCKL by a loop over every ordered pair of samples with different labels, the quantiles by numpy)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from cckl_core import attacks, fisher, models, record
from conftest import small_cnn

K = 5


def _data(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return x, torch.arange(n) % K


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """Correctness on the record's PGD examples, attacked ``chunk`` samples at a time."""
    out = []
    for s in range(0, len(x), chunk):
        adv = attacks.pgd(model, x[s:s + chunk], y[s:s + chunk], **record.ROBUST_ACC_ATTACK)
        with torch.no_grad():
            out.append(model(adv).argmax(1) == y[s:s + chunk])
    return torch.cat(out)


def test_predict_gives_eval_mode_logits_over_every_batch_and_restores_the_mode():
    net = small_cnn(K)
    model = nn.Sequential(net, nn.Dropout(0.9)).train()  # dropout would change every output in train mode
    x, y = _data()
    logits, labels = record.predict(model, [(x[:5], y[:5]), (x[5:], y[5:])])
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(logits, expected, rtol=1e-6, atol=1e-6)
    assert logits.dtype == torch.float32 and torch.equal(labels, y)
    assert model.training and not any(p.grad is not None for p in model.parameters())


def test_robust_correct_is_the_prediction_on_pgd_examples_per_sample():
    model = small_cnn(K).train()
    x, y = _data(12, seed=1)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample starts correct: the attack decides
    got = record.robust_correct(model, x, y, record.ROBUST_ACC_ATTACK, batch_size=5)
    model.eval()
    assert got.dtype == torch.bool and got.shape == (12,)
    assert torch.equal(got, _correct(model, x, y, chunk=5))
    assert record.robust_correct(model, x[:0], y[:0], record.ROBUST_ACC_ATTACK).shape == (0,)


def _cckl_by_pairs(p: torch.Tensor, y: torch.Tensor) -> float:
    kls = [float((p[i] * (p[i].log() - p[j].log())).sum()) for i in range(len(y)) for j in range(len(y)) if y[i] != y[j]]
    return sum(kls) / len(kls)


def test_the_record_holds_each_statistic_as_defined():
    model = small_cnn(K)
    x, y = _data(12, seed=2)
    rec = record.evaluate(model, [(x[:5], y[:5]), (x[5:], y[5:])], x[:6], x[:2], robust_x=x[:4], robust_y=y[:4])
    with torch.no_grad():
        logits = model(x).double()
    p = torch.softmax(logits, 1)
    assert rec["test_acc"] == pytest.approx(float((logits.argmax(1) == y).double().mean()))
    assert rec["test_ce"] == pytest.approx(-float(p[torch.arange(12), y].log().mean()), rel=1e-6)
    assert rec["cckl"] == pytest.approx(_cckl_by_pairs(p, y), rel=1e-6)
    stats = fisher.fisher_stats(model, x[:6])
    for prefix, key in (("fisher_fro", "frobenius"), ("fisher_spec", "spectral")):
        v = stats[key].numpy()
        assert rec[f"{prefix}_mean"] == pytest.approx(v.mean(), rel=1e-12)
        assert rec[f"{prefix}_log_mean"] == pytest.approx(math.log(v.mean()), rel=1e-12)
        assert rec[f"{prefix}_median"] == pytest.approx(np.median(v), rel=1e-12)
        for q in (10, 25, 75, 90):
            assert rec[f"{prefix}_q{q}"] == pytest.approx(np.percentile(v, q), rel=1e-12)
    assert rec["fisher_trace_mean"] == pytest.approx(float(stats["trace"].mean()), rel=1e-12)
    assert np.allclose(rec["pair_probs"], p[:2].numpy(), rtol=1e-6, atol=1e-9)
    assert rec["robust_acc"] == pytest.approx(float(_correct(model, x[:4], y[:4], chunk=4).double().mean()))
    assert rec["eval_seconds"] > 0
    assert set(rec) == {"test_acc", "test_ce", "cckl", "fisher_trace_mean", "pair_probs", "robust_acc", "eval_seconds"} | {
        f"{prefix}_{s}" for prefix in ("fisher_fro", "fisher_spec") for s in ("mean", "log_mean", "median", "q10", "q25",
                                                                              "q75", "q90")}
    assert "robust_acc" not in record.evaluate(model, [(x, y)], x[:6], x[:2])  # no robust subset: not recorded


def test_non_finite_outputs_are_a_clear_error():
    model = small_cnn(K)
    with torch.no_grad():
        model[4].bias.fill_(float("nan"))
    x, y = _data()
    with pytest.raises(models.NonFiniteError, match="test outputs"):
        record.evaluate(model, [(x, y)], x[:6], x[:2])
