"""Input-space Fisher statistics and G1/G2 against a Fisher materialised independently here.

The oracle builds ``G = d log softmax(model(x)) / dx`` (K x d) per sample with
``torch.autograd.functional.jacobian`` and forms ``F = sum_k p_k g_k g_k^T = G^T diag(p) G``
(the definition, not the package's ``J^T (diag p - p p^T) J`` route), in float64, then
uses ``torch.linalg.eigvalsh``. Nothing of ``cckl_core.fisher`` is used to build it.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cckl_core import fisher, metrics, models
from conftest import flat_linear, small_cnn


K = 5
SHAPE = (3, 6, 6)
D = 3 * 6 * 6


def tiny_cnn(seed: int = 0, batch_norm: bool = True) -> nn.Module:
    """Smooth (tanh) so that finite differences of KL converge; BatchNorm so train/eval differ."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 4, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.Tanh(), nn.Conv2d(4, 4, 3, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 2 * 2, K)]
    model = nn.Sequential(*layers).double()
    if batch_norm:  # non-trivial running statistics, so eval mode is visibly different from train mode
        with torch.no_grad():
            layers[1].running_mean.uniform_(-0.5, 0.5)
            layers[1].running_var.uniform_(0.5, 2.0)
            layers[1].weight.uniform_(0.5, 2.0)
            layers[1].bias.uniform_(-0.5, 0.5)
    with torch.no_grad():  # larger weights: sharper, less uniform softmax outputs
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
    return model.eval()


def inputs(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def oracle_fisher(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, d, d) Fisher and (B, K) probabilities, one sample at a time, eval mode."""
    was = model.training
    model.eval()
    fs, ps = [], []
    try:
        for xi in x:
            def logp(v, xi=xi):
                return torch.log_softmax(model(v.view(1, *xi.shape)), dim=1)[0]

            flat = xi.detach().reshape(-1).clone()
            g = torch.autograd.functional.jacobian(logp, flat)  # (K, d): rows grad_x log p_k
            p = logp(flat).detach().exp()
            fs.append(g.T @ torch.diag(p) @ g)
            ps.append(p)
    finally:
        model.train(was)
    for prm in model.parameters():
        prm.grad = None
    return torch.stack(fs), torch.stack(ps)


@pytest.fixture(scope="module")
def setup():
    model = tiny_cnn()
    x = inputs(4)
    f, p = oracle_fisher(model, x)
    return model, x, f, p


# --------------------------------------------------------------------------- fisher_stats
def test_fisher_stats_match_materialised_oracle(setup):
    model, x, f, p = setup
    out = fisher.fisher_stats(model, x, eigenvector=True)
    evals = torch.linalg.eigvalsh(f)
    assert out["frobenius"].dtype == torch.float64 and out["frobenius"].shape == (4,)
    torch.testing.assert_close(out["frobenius"], torch.linalg.matrix_norm(f, "fro"), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["spectral"], evals[:, -1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["trace"], torch.diagonal(f, dim1=1, dim2=2).sum(1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["probs"], p, rtol=1e-10, atol=1e-12)
    # the Fisher is PSD with rank <= K - 1
    assert (evals > -1e-9 * evals[:, -1:]).all()
    assert (evals[:, : D - (K - 1)].abs() < 1e-9 * evals[:, -1:]).all()
    assert (out["spectral"] <= out["frobenius"] * (1 + 1e-12)).all()
    assert (out["frobenius"] <= out["trace"] * (1 + 1e-12)).all()


def test_fisher_eigenvector(setup):
    model, x, f, _ = setup
    out = fisher.fisher_stats(model, x, eigenvector=True)
    v = out["eigenvector"]
    assert v.shape == x.shape
    v = v.flatten(1)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(len(x), dtype=v.dtype), rtol=1e-10, atol=1e-10)
    fv = torch.einsum("bij,bj->bi", f, v)
    lam = out["spectral"]
    torch.testing.assert_close(fv, lam[:, None] * v, rtol=0, atol=1e-8 * float(lam.max()))
    evals, evecs = torch.linalg.eigh(f)
    gap = (evals[:, -1] - evals[:, -2]) / evals[:, -1]
    for b in range(len(x)):
        if gap[b] > 1e-3:  # unique top eigenvector: the same up to sign
            assert abs(float(v[b] @ evecs[b, :, -1])) == pytest.approx(1.0, abs=1e-8)


def test_fisher_linear_softmax_closed_form():
    model = flat_linear(D, K, seed=3, scale=20.0)
    lin = model[1]
    x = inputs(3, seed=4)
    out = fisher.fisher_stats(model, x, eigenvector=True)
    w = lin.weight.detach()
    p = torch.softmax(model(x), 1).detach()
    closed = torch.stack([w.T @ (torch.diag(pi) - torch.outer(pi, pi)) @ w for pi in p])
    torch.testing.assert_close(out["frobenius"], torch.linalg.matrix_norm(closed, "fro"), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["spectral"], torch.linalg.eigvalsh(closed)[:, -1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["trace"], torch.diagonal(closed, dim1=1, dim2=2).sum(1), rtol=1e-9, atol=1e-12)
    v = out["eigenvector"].flatten(1)
    torch.testing.assert_close(torch.einsum("bij,bj->bi", closed, v), out["spectral"][:, None] * v,
                               rtol=0, atol=1e-8 * float(out["spectral"].max()))
    # and the oracle agrees with the closed form (checks the oracle itself)
    torch.testing.assert_close(oracle_fisher(model, x)[0], closed, rtol=1e-9, atol=1e-9)


def test_materialized_fisher_matches_oracle(setup):
    model, x, f, _ = setup
    torch.testing.assert_close(fisher.materialized_fisher(model, x), f, rtol=1e-9, atol=1e-11)


def test_fisher_stats_chunking_is_invisible(setup):
    model, x, _, _ = setup
    whole = fisher.fisher_stats(model, x, eigenvector=True, batch_size=128)
    chunked = fisher.fisher_stats(model, x, eigenvector=True, batch_size=3)
    for key in ("frobenius", "spectral", "trace", "probs"):
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=1e-14)
    signs = torch.sign((chunked["eigenvector"].flatten(1) * whole["eigenvector"].flatten(1)).sum(1))
    torch.testing.assert_close(chunked["eigenvector"].flatten(1) * signs[:, None], whole["eigenvector"].flatten(1),
                               rtol=1e-8, atol=1e-10)


def test_fisher_stats_restores_train_mode_updates_nothing_and_leaves_no_grads(setup):
    _, x, f, _ = setup
    model = tiny_cnn()
    model.train()
    bn = model[1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = fisher.fisher_stats(model, x)
    assert model.training and all(m.training for m in model.modules())
    # computed in eval mode: equals the eval-mode oracle, and the running statistics are untouched
    torch.testing.assert_close(out["frobenius"], torch.linalg.matrix_norm(f, "fro"), rtol=1e-9, atol=1e-12)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert int(bn.num_batches_tracked) == 0
    assert all(prm.grad is None for prm in model.parameters())
    # an eval-mode model stays in eval mode
    model.eval()
    fisher.fisher_stats(model, x[:1])
    assert not model.training


def test_fisher_stats_float32_model():
    model = tiny_cnn(seed=5).float()
    x = inputs(3, seed=6)
    out = fisher.fisher_stats(model, x.float(), eigenvector=True)
    f, _ = oracle_fisher(model.double(), x)
    torch.testing.assert_close(out["frobenius"], torch.linalg.matrix_norm(f, "fro"), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["spectral"], torch.linalg.eigvalsh(f)[:, -1], rtol=1e-4, atol=1e-6)
    assert out["eigenvector"].dtype == torch.float32
    with pytest.raises(ValueError):
        fisher.fisher_stats(model, torch.rand(3))


# --------------------------------------------------------------------------- G1 / G2
def test_g1_matches_quadratic_form_of_oracle(setup):
    model, x, f, _ = setup
    delta = 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ours = fisher.g1(model, x, delta)
    dflat = delta.flatten(1)
    ref = 0.5 * torch.einsum("bi,bij,bj->b", dflat, f, dflat)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-14)
    assert (ours >= 0).all()
    # along the top eigenvector of norm eps, G1 = 1/2 lambda_max eps^2
    out = fisher.fisher_stats(model, x, eigenvector=True)
    eps = 0.05
    torch.testing.assert_close(fisher.g1(model, x, eps * out["eigenvector"]), 0.5 * out["spectral"] * eps**2,
                               rtol=1e-8, atol=1e-14)
    with pytest.raises(ValueError):
        fisher.g1(model, x, delta[:2])


def test_g1_is_limit_of_kl_over_t_squared(setup):
    model, x, _, _ = setup
    delta = torch.randn(x.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    g = fisher.g1(model, x, delta)
    errors = []
    with torch.no_grad():
        logp = torch.log_softmax(model(x), 1)
        for t in (1e-2, 1e-3, 1e-4):
            logq = torch.log_softmax(model(x + t * delta), 1)
            kl_t = (logp.exp() * (logp - logq)).sum(1)
            errors.append(((kl_t / t**2 - g).abs() / g).max().item())
    assert errors[1] < 1e-2 and errors[2] < 1e-3
    # the error shrinks like t (the cubic Taylor term): about tenfold per decade
    assert errors[1] < 0.2 * errors[0] and errors[2] < 0.2 * errors[1]


def test_kl_g1_g2(setup):
    model, x, f, _ = setup
    # clamped: kl_g1_g2 takes images in [0, 1]
    xj = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)).clamp(0, 1)
    out = fisher.kl_g1_g2(model, x, xj)
    with torch.no_grad():
        ref_kl = metrics.kl(torch.softmax(model(x), 1), torch.softmax(model(xj), 1))
    torch.testing.assert_close(out["kl"], ref_kl, rtol=1e-10, atol=1e-14)
    d = (xj - x).flatten(1)
    torch.testing.assert_close(out["g1"], 0.5 * torch.einsum("bi,bij,bj->b", d, f, d), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(out["g2"], out["kl"] - out["g1"], rtol=0, atol=0)
    assert all(v.dtype == torch.float64 and v.shape == (len(x),) for v in out.values())
    # small steps: the second-order term dominates
    assert ((out["g2"].abs() / out["kl"]) < 0.5).all()
    chunked = fisher.kl_g1_g2(model, x, xj, batch_size=3)
    for key in out:
        torch.testing.assert_close(chunked[key], out[key], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError):
        fisher.kl_g1_g2(model, x, xj[:2])


def test_g1_and_kl_g1_g2_restore_mode_and_leave_no_grads(setup):
    _, x, f, _ = setup
    model = tiny_cnn()
    model.train()
    xj = x.flip(0)
    out = fisher.kl_g1_g2(model, x, xj)
    g = fisher.g1(model, x, xj - x)
    assert model.training
    assert all(prm.grad is None for prm in model.parameters())
    assert int(model[1].num_batches_tracked) == 0
    d = (xj - x).flatten(1)
    ref = 0.5 * torch.einsum("bi,bij,bj->b", d, f, d)  # eval-mode oracle
    torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(out["g1"], ref, rtol=1e-9, atol=1e-14)


def test_as_function_is_the_model_without_a_graph_to_its_parameters():
    model = tiny_cnn().eval()
    x = inputs(2).requires_grad_(True)
    y = fisher.as_function(model)(x)
    torch.testing.assert_close(y, model(x))
    y.sum().backward()
    assert x.grad is not None
    assert all(prm.grad is None for prm in model.parameters())


# --------------------------------------------------------------------------- real architectures
@pytest.mark.parametrize("name,width", [("resnet20", 0.25), ("vgg13", 0.125)])
def test_real_models_shapes_and_finiteness(name, width):
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, width=width).train()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = fisher.fisher_stats(model, x, eigenvector=True)
    for key in ("frobenius", "spectral", "trace"):
        assert out[key].shape == (2,) and out[key].dtype == torch.float64
        assert torch.isfinite(out[key]).all() and (out[key] >= 0).all()
    assert out["probs"].shape == (2, 10)
    assert out["eigenvector"].shape == (2, 3, 32, 32)
    torch.testing.assert_close(out["eigenvector"].flatten(1).norm(dim=1), torch.ones(2), rtol=1e-4, atol=1e-4)
    assert (out["spectral"] <= out["frobenius"] * (1 + 1e-5)).all()
    assert (out["frobenius"] <= out["trace"] * (1 + 1e-5)).all()
    xj = (x + 4 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    res = fisher.kl_g1_g2(model, x, xj)
    assert all(torch.isfinite(v).all() and v.shape == (2,) for v in res.values())
    assert (res["g1"] >= 0).all() and (res["kl"] >= -1e-6).all()
    assert model.training
    assert all(prm.grad is None for prm in model.parameters())


# --------------------------------------------------------------------------- empty batches
def test_an_empty_batch_gives_empty_well_shaped_statistics():
    model, x = small_cnn(K), torch.zeros(0, 3, 8, 8)
    out = fisher.fisher_stats(model, x, eigenvector=True)
    for key in ("frobenius", "spectral", "trace"):
        assert out[key].shape == (0,) and out[key].dtype == torch.float64
    assert out["probs"].shape == (0, K) and out["eigenvector"].shape == (0, 3, 8, 8)
    assert fisher.g1(model, x, x).shape == (0,)
    pairs = fisher.kl_g1_g2(model, x, x)
    assert {k: tuple(v.shape) for k, v in pairs.items()} == {"kl": (0,), "g1": (0,), "g2": (0,)}
