"""The notebooks' live probes (cckl_core.probes) against the cached evaluations of the smoke fixture and against
independent computations (scipy's KL, the materialised Fisher, a closed form on a linear-softmax model)."""
import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from cckl_core import evaluations, fisher, probes, profiles, runs, zoo


@pytest.fixture(scope="module")
def smoke(smoke_fixture):
    """The smoke profile with the fixture's run cache and data (read only: the probes write nothing)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CCKL_ARTIFACTS", str(smoke_fixture / "artifacts"))
        mp.setenv("CCKL_DATA_ROOT", str(smoke_fixture / "data"))
        mp.delenv("CCKL_PROFILE", raising=False)
        yield profiles.load("smoke")


def _cached(prof, role: str, evaluation: str):
    """The (first) run of ``role`` and its cached evaluation."""
    name = prof.role(role)
    run = runs.load(prof.run(name if isinstance(name, str) else name[0]))
    return run, evaluations.require(run, evaluation, evaluations.settings(prof, evaluation))


# --------------------------------------------------------------------------- models and images
def test_test_images_are_the_cached_figure1_pair(smoke):
    run, theorem = _cached(smoke, "fig2_standard", "theorem")
    i, j = run.history[0]["pair_index"]
    got = probes.test_images(smoke, run.name, [i, j])
    assert got.images.dtype == torch.float32 and 0 <= float(got.images.min()) and float(got.images.max()) <= 1
    assert np.array_equal(np.rint(got.images.numpy() * 255).astype(np.uint8), theorem["pair_images"])
    assert np.array_equal(got.labels.numpy(), theorem["pair_labels"])
    assert got.classes == list(theorem["classes"])


def test_positions_out_of_range_or_not_integers_are_refused(smoke):
    n = smoke.run("vgg13_standard").n_test
    with pytest.raises(IndexError, match=f"out of range.*has {n} images"):
        probes.test_images(smoke, "vgg13_standard", [0, n])
    with pytest.raises(IndexError, match="out of range"):
        probes.test_images(smoke, "vgg13_standard", -1)
    with pytest.raises(TypeError, match="integer"):
        probes.test_images(smoke, "vgg13_standard", [1.5])
    with pytest.raises(ValueError, match="no run"):
        probes.test_images(smoke, "no_such_run", [0])


def test_trained_without_cache_comes_from_the_carried_models(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "empty"))
    model = probes.trained("quick", "resnet20_trades")
    expected = zoo.load("quick", "resnet20_trades")
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))


def test_trained_with_neither_cache_nor_carried_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "empty"))
    with pytest.raises(probes.ModelUnavailableError, match=r"no trained model of run .*train it with `.*smoke"):
        probes.trained("smoke", "vgg13_standard")


# --------------------------------------------------------------------------- 01
def test_pair_outputs_reproduce_the_recorded_figure1_outputs(smoke):
    run = runs.load(smoke.run(smoke.role("fig2_standard")))
    i, j = run.history[0]["pair_index"]
    out = probes.pair_outputs(smoke, run.name, i, j)
    assert list(out.probs.columns) == list(probes.PAIR_COLUMNS) and list(out.probs.index) == out.classes
    p = out.probs.to_numpy().T  # x_i init, x_j init, x_i trained, x_j trained
    np.testing.assert_allclose(p[:2], run.history[0]["pair_probs"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(p[2:], run.history[-1]["pair_probs"], atol=1e-5, rtol=0)
    assert out.kl_init == pytest.approx(scipy.stats.entropy(p[0], p[1]), rel=1e-9)
    assert out.kl_trained == pytest.approx(scipy.stats.entropy(p[2], p[3]), rel=1e-9)


def test_initial_leaves_the_global_random_state_alone(smoke):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    probes.initial(smoke, "vgg13_standard")
    assert torch.equal(torch.rand(3), expected)


def test_pair_outputs_refuses_one_image_twice(smoke):
    with pytest.raises(ValueError, match="same test image"):
        probes.pair_outputs(smoke, "vgg13_standard", 3, 3)


# --------------------------------------------------------------------------- 02
def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def test_fisher_direction_against_the_materialised_fisher():
    model = _tiny_model()
    x = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(1))
    eps = 1e-3
    got = probes.fisher_direction(model, x, y=2, eps=eps)
    big = fisher.materialized_fisher(model.double(), x.double()[None])[0].numpy()
    evals, evecs = np.linalg.eigh(big)
    assert got.lambda_max == pytest.approx(evals[-1], rel=1e-9)
    assert abs(float(got.eigenvector.flatten() @ torch.from_numpy(evecs[:, -1]))) == pytest.approx(1.0, abs=1e-9)
    # eq. 12 in the quadratic regime: KL along +-eps v is 1/2 lambda_max eps^2, and PGD cannot beat it
    assert got.kl_plus == pytest.approx(got.prediction, rel=0.05)
    assert got.kl_minus == pytest.approx(got.prediction, rel=0.05)
    assert got.kl_pgd <= 1.05 * got.prediction
    assert float(got.eta.norm()) <= eps * (1 + 1e-9) and 0 <= got.cos <= 1 + 1e-12
    assert list(got.table.index) == ["+eps v", "-eps v", "L2 KL-PGD"]
    assert got.table["KL / prediction"].iloc[0] == pytest.approx(got.kl_plus / got.prediction)


def test_fisher_direction_gives_the_cached_eq12_values(smoke):
    """Along +-eps v there is no randomness: the probe on an eq12 point gives its cached KL / prediction."""
    run, eq12 = _cached(smoke, "fig9_robust", "eq12")
    _, fig9 = _cached(smoke, "fig9_robust", "fig9")  # same test images; fig9 records their positions
    correct = torch.from_numpy(fig9["correct"])
    order = torch.cat([torch.nonzero(correct).flatten(), torch.nonzero(~correct).flatten()])[:len(eq12["correct"])]
    assert np.array_equal(fig9["correct"][order], eq12["correct"])
    position = int(fig9["index"][order[0]])
    image = probes.test_images(smoke, run.name, position).images[0]
    model = probes.trained(smoke, run.name)
    for k, eps in enumerate(evaluations.EQ12_L2_RADII[::3]):
        got = probes.fisher_direction(model, image, eps=eps)
        assert got.lambda_max == pytest.approx(float(eq12["lambda_max"][0]), rel=1e-9)
        assert max(got.kl_plus, got.kl_minus) / got.prediction == pytest.approx(float(eq12["l2_eig"][3 * k, 0]),
                                                                               rel=1e-9)


def test_fisher_direction_checks_its_inputs():
    model = _tiny_model()
    with pytest.raises(ValueError, match="eps must be positive"):
        probes.fisher_direction(model, torch.rand(3, 6, 6), eps=0)
    with pytest.raises(ValueError, match="one image"):
        probes.fisher_direction(model, torch.rand(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probes.fisher_direction(model, 2 + torch.rand(3, 6, 6))


def test_plot_fisher_direction_shows_three_images():
    import matplotlib.pyplot as plt
    got = probes.fisher_direction(_tiny_model(), torch.rand(3, 6, 6), y="cat", eps=0.1)
    fig, axes = probes.plot_fisher_direction(got)
    assert len(axes) == 3 and all(len(ax.images) == 1 for ax in axes)
    assert "cat" in axes[0].get_title() and f"{got.lambda_max:.3g}" in axes[1].get_title()
    plt.close(fig)
    fig, _ = probes.plot_fisher_direction(got, stamp=("CIFAR-10", "quick", "vgg13 w0.25 trades"))
    assert any("profile quick" in t.get_text() and "vgg13 w0.25 trades" in t.get_text() for t in fig.texts)
    plt.close(fig)


# --------------------------------------------------------------------------- 03
def test_pair_decomposition_against_a_linear_softmax_closed_form():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).double().eval()
    gen = torch.Generator().manual_seed(2)
    x_i, x_j = torch.rand(3, 4, 4, generator=gen, dtype=torch.float64), torch.rand(3, 4, 4, generator=gen,
                                                                                   dtype=torch.float64)
    table = probes.pair_decomposition({"linear": linear, "twice": _scaled(linear, 2.0)}, x_i, x_j)
    assert list(table.columns) == list(probes.DECOMPOSITION_COLUMNS) and list(table.index) == ["linear", "twice"]
    for name, scale in (("linear", 1.0), ("twice", 2.0)):
        w = scale * linear[1].weight.detach().numpy()
        b = scale * linear[1].bias.detach().numpy()
        p_i, p_j = (scipy.special.softmax(w @ x.numpy().ravel() + b) for x in (x_i, x_j))
        u = w @ (x_j - x_i).numpy().ravel()  # J (x_j - x_i); F = W^T (diag p - p p^T) W
        g1 = 0.5 * (p_i @ u ** 2 - (p_i @ u) ** 2)
        kl = scipy.stats.entropy(p_i, p_j)
        row = table.loc[name]
        assert row["G1"] == pytest.approx(g1, rel=1e-10)
        assert row["KL"] == pytest.approx(kl, rel=1e-10)
        assert row["G2"] == pytest.approx(kl - g1, rel=1e-8) and row["G2/KL"] == pytest.approx((kl - g1) / kl, rel=1e-8)


def _scaled(model: nn.Sequential, factor: float) -> nn.Module:
    out = nn.Sequential(nn.Flatten(), nn.Linear(model[1].in_features, model[1].out_features)).double()
    out.load_state_dict({k: factor * v for k, v in model.state_dict().items()})
    return out.eval()


def test_pair_decomposition_gives_the_cached_fig5_pair(smoke):
    run, fig5 = _cached(smoke, "fig5", "fig5")
    i, j = int(fig5["i"][0]), int(fig5["j"][0])
    images = probes.test_images(smoke, run.name, [i, j]).images
    row = probes.pair_decomposition({run.name: probes.trained(smoke, run.name)}, images[0], images[1]).iloc[0]
    assert row["KL"] == pytest.approx(float(fig5["kl"][0]), rel=1e-4)  # float32, measured here alone, there in a batch
    assert row["G1"] == pytest.approx(float(fig5["g1"][0]), rel=1e-4)


def test_pair_decomposition_checks_its_inputs():
    model = _tiny_model()
    x = torch.rand(3, 6, 6)
    with pytest.raises(ValueError, match="same image"):
        probes.pair_decomposition({"m": model}, x, x.clone())
    with pytest.raises(ValueError, match="non-empty mapping"):
        probes.pair_decomposition({}, x, x)
    with pytest.raises(ValueError, match="one image"):
        probes.pair_decomposition({"m": model}, torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6))


# --------------------------------------------------------------------------- 04
def test_fisher_term_error_reproduces_the_cached_table2(smoke):
    run, table2 = _cached(smoke, "table2", "table2")
    s = evaluations.settings(smoke, "table2")
    positions = run.dataset("test", seed=run.seed).subset(s["n_table2"], s["sample_seed"]).indices
    images = probes.test_images(smoke, run.name, positions).images
    model = probes.trained(smoke, run.name)
    eps = list(evaluations.TABLE2_EPS)
    frame = probes.fisher_term_error(model, images, eps, seed=s["sample_seed"])
    assert list(frame.columns) == list(probes.TERM_ERROR_COLUMNS) and frame.index.names == ["image", "eps_255"]
    for column, key in (("KL", "kl"), ("G1", "g1")):  # rows (image, eps) against the cache's (eps, image)
        np.testing.assert_allclose(frame[column].to_numpy(), table2[key].T.ravel(), rtol=1e-9, atol=0)
    np.testing.assert_allclose(frame["linf_255"].to_numpy(), 255 * table2["linf"].T.ravel(), rtol=1e-12)
    rel = np.abs(table2["kl"] - table2["g1"]) / table2["kl"]
    np.testing.assert_allclose(frame["|KL-G1|/KL"].to_numpy(), rel.T.ravel(), rtol=1e-9)
    # the first image alone: its TRADES start is the first of the batch's draws, so the same perturbation
    alone = probes.fisher_term_error(model, images[0], eps, seed=s["sample_seed"])
    assert list(alone.index) == eps
    np.testing.assert_allclose(alone["KL"].to_numpy(), table2["kl"][:, 0], rtol=1e-9, atol=0)
    np.testing.assert_allclose(alone["G1"].to_numpy(), table2["g1"][:, 0], rtol=1e-9, atol=0)


def test_fisher_term_error_checks_its_inputs():
    model = _tiny_model()
    x = torch.rand(3, 6, 6)
    with pytest.raises(ValueError, match="must be positive"):
        probes.fisher_term_error(model, x, [1, 0])
    with pytest.raises(ValueError, match="non-empty list"):
        probes.fisher_term_error(model, x, [])
    with pytest.raises(ValueError, match="non-empty list"):
        probes.fisher_term_error(model, x, 4)
