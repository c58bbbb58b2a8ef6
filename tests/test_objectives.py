"""Training objectives (standard, PGD-AT, TRADES), the SGD step and its lr schedule, one epoch under
bf16 autocast, against independent computations on tiny models."""
import pytest
import torch
import torch.nn.functional as F

from cckl_core import data, metrics, models, objectives
from conftest import tiny_run


def tiny(name: str, **changes):
    """The tiny run config ``name`` with ``changes`` (4 SGD steps an epoch: 128 images, batches of 32)."""
    return tiny_run(name, **{"n_train": 128, "n_test": 64, **changes})


def test_trades_loss_matches_independent_computation():
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.125).double().train()
    x = torch.rand(6, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    x_adv = (x + 0.01 * torch.randn_like(x)).clamp(0, 1)
    loss = objectives.trades_loss(model, x, y, beta=5.0, x_adv=x_adv)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    # independent: probabilities and KL through metrics.kl, CE as -log p_y
    p = torch.softmax(model(x), 1)
    q = torch.softmax(model(x_adv), 1)
    ref = -torch.log(p[torch.arange(6), y]).mean() + 5.0 * metrics.kl(p, q).mean()
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    assert torch.allclose(loss, ref, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, rtol=1e-7, atol=1e-10)


def test_trades_gradient_flows_through_both_branches():
    torch.manual_seed(1)
    model = models.build("resnet20", width=0.125).double().train()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    x_adv = (x + 0.02 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    # with CE weight removed (y irrelevant), the KL term alone must still depend on both inputs
    loss = objectives.trades_loss(model, xc, torch.zeros(4, dtype=torch.long), beta=5.0, x_adv=x_adv)
    gx, gadv = torch.autograd.grad(loss, [xc, x_adv])
    assert gx.abs().sum() > 0 and gadv.abs().sum() > 0


def test_objective_leaves_model_in_train_mode():
    model = models.build("resnet20", width=0.125).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for objective in ("standard", "pgd_at", "trades"):
        model.eval()
        objectives.objective_loss(model, x, y, tiny("t", objective=objective))
        assert model.training


def test_attack_runs_in_eval_mode_inside_training():
    # BatchNorm in train mode would use batch statistics; the attack must use running ones
    model = models.build("resnet20", width=0.125)
    calls = []
    handle = model.blocks[0].bn1.register_forward_hook(lambda m, i, o: calls.append(m.training))
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    objectives.objective_loss(model, x, y, tiny("t", objective="pgd_at", attack_steps=2))
    handle.remove()
    # two attack steps in eval mode, then one training forward in train mode
    assert calls == [False, False, True]


# --------------------------------------------------------------------------- the SGD step and its schedule
def test_lr_schedule_counts_sgd_steps_and_allows_fractional_milestones():
    """lr of step t = lr * 0.1 ** #{m : round(m * steps_per_epoch) <= t}: with 4 steps an epoch,
    milestones 0.5 and 1 lower the lr after steps 2 and 4."""
    cfg = tiny("sched", milestones=[0.5, 1])
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.125)
    opt, sched = objectives.make_optimizer(model, cfg, steps_per_epoch=4)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        loss = objectives.step(model, opt, sched, x, y, cfg)
        assert loss.dim() == 0 and not loss.requires_grad and torch.isfinite(loss)
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005])


def test_step_is_one_sgd_step_of_the_objective():
    """objectives.step = the objective's loss, backward, one SGD update (here: plain SGD, checked by hand)."""
    cfg = tiny("step", momentum=0.0, weight_decay=0.0, lr=0.1)
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.125).double()
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    ref = [p.detach().clone() for p in model.parameters()]
    model.train()
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    opt, sched = objectives.make_optimizer(model, cfg)
    loss = objectives.step(model, opt, sched, x, y, cfg)
    for p, p0, g in zip(model.parameters(), ref, grads):
        assert torch.allclose(p, p0 - 0.1 * g, rtol=1e-9, atol=1e-12)
    assert loss > 0


# --------------------------------------------------------------------------- one epoch
def test_bf16_training_step_on_cpu_is_finite():
    cfg = tiny_run("bf16", epochs=2, milestones=[1], precision="bf16", objective="trades")
    model, _ = models.fresh(cfg, 10, torch.device("cpu"))
    opt, sched = objectives.make_optimizer(model, cfg)
    batches = data.Batches(data.load("synthetic", "train", n=64), 32, shuffle=True)
    dtypes = []
    handle = model.fc.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    loss = objectives.train_epoch(model, opt, sched, batches, cfg)
    handle.remove()
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert torch.bfloat16 in dtypes  # autocast was on
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
