"""`cckl_core.analyze`: the paper's analysis of a user's own model (a torchvision model defined here),
each number against an independent computation; models that return probabilities are refused."""
import itertools

import pytest
import torch
from torch import nn

import cckl_core
from cckl_core import checks, fisher


def _mobilenet():
    from torchvision.models import mobilenet_v3_small
    torch.manual_seed(0)
    return mobilenet_v3_small(num_classes=10)


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(1)
    model = _mobilenet()
    x = torch.rand(12, 3, 32, 32)
    y = torch.arange(12) % 4
    model.train()  # the caller's mode, to be restored
    out = cckl_core.analyze(model, x, y, n_pairs=6, steps=2, seed=0)
    return model, x, y, out


def test_analyze_matches_independent_computations(case):
    model, x, y, out = case
    assert model.training  # the caller's mode is given back
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(x).double(), 1)
    assert out.value("accuracy") == pytest.approx(float((p.argmax(1) == y).double().mean()))
    pairs = [(i, j) for i, j in itertools.product(range(len(y)), repeat=2) if y[i] != y[j]]
    brute = sum(float((p[i] * (p[i].log() - p[j].log())).sum()) for i, j in pairs) / len(pairs)
    assert out.value("CCKL") == pytest.approx(brute, rel=1e-9)
    dense = fisher.materialized_fisher(model, x[:2]).double()  # the d x d Fisher, materialised
    fro = torch.linalg.matrix_norm(dense, "fro")
    stats = fisher.fisher_stats(model, x)
    assert torch.allclose(stats["frobenius"][:2], fro, rtol=1e-4)
    assert out.value("mean ||F_x||_F") == pytest.approx(float(stats["frobenius"].mean()))
    assert out.value("mean KL over pairs") == pytest.approx(out.value("mean G1 over pairs")
                                                            + out.value("mean G2 over pairs"))
    for name in ("PGD-2 accuracy", "CW-2 accuracy"):
        assert 0 <= out.value(name) <= out.value("accuracy")  # robust only if also correct when clean
    assert "CCKL" in out.summary and set(out.table.columns) == {"quantity", "value", "unit", "note"}
    model.train()


def test_a_model_returning_probabilities_is_refused():
    x, y = torch.rand(6, 3, 32, 32), torch.arange(6) % 3
    ends_in_softmax = nn.Sequential(_mobilenet(), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="ends in Softmax"):
        cckl_core.analyze(ends_in_softmax, x, y, attack=False)
    with pytest.raises(ValueError, match="ends in LogSoftmax"):
        fisher.fisher_stats(nn.Sequential(_mobilenet(), nn.LogSoftmax(dim=1)), x)

    class Probabilities(nn.Module):  # the softmax hidden inside forward
        def __init__(self):
            super().__init__()
            self.net = _mobilenet()

        def forward(self, inp):
            return self.net(inp).softmax(1)

    hidden = Probabilities()
    with pytest.raises(ValueError, match="returns probabilities"):
        fisher.fisher_stats(hidden, x)
    with pytest.raises(ValueError, match="returns probabilities"):
        cckl_core.analyze(hidden, x, y, attack=False)
    assert hidden.training  # the mode is given back on an error too
    checks.logits(nn.Linear(3, 4), torch.randn(5, 4))  # logits pass


def test_bad_inputs_are_one_line():
    model = _mobilenet()
    with pytest.raises(ValueError, match="labels"):
        cckl_core.analyze(model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="one class"):
        cckl_core.analyze(model, torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), attack=False)
    with pytest.raises(ValueError):
        cckl_core.analyze(model, torch.rand(4, 3, 32, 32) * 3, torch.arange(4))  # not in [0, 1]
