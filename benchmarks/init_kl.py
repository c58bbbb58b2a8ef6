"""Figure 1 at initialisation: which weight initialisation gives the paper's KL of 0.053?

The paper (Figure 1) reports KL(f_init(x1) || f_init(x2)) = 0.053 for two CIFAR-10 test
images of different classes at initialisation (3.197 after training). Our VGG uses
torchvision's VGG initialisation (kaiming_normal fan_out convs, zero biases, head
N(0, 0.01)), which gives nearly uniform outputs and a KL of order 1e-5. This script
compares, over several seeds:

- ``ours``: ``cckl_core.models.build`` as is;
- ``torch``: PyTorch's default initialisation, restored by ``reset_parameters()`` on every
  Conv2d / Linear / BatchNorm module (kaiming_uniform(a=sqrt(5)) weights, i.e. variance
  1/(3 fan_in), and U(+-1/sqrt(fan_in)) biases);
- ``ours+torch-head``: our conv initialisation with PyTorch's default Linear head (only the
  classifier differs), to see which part sets the scale;

for VGG13 width 1 without BatchNorm (the project's reading of the paper's model), VGG13
width 1 with BatchNorm normalising with batch statistics (train mode, as a BN model behaves
while training), and width 0.25 with BatchNorm (our ``quick`` profile) in eval mode (running
statistics: at initialisation BN is then the identity) and train mode. Measured per seed:
KL(f(x1) || f(x2)) for x1 = the first test image of class 0 (airplane) and x2 = the first of
class 1 (automobile), the exact CCKL over the test images used (``per_class`` per class; in
train mode they form one batch), the std of all logits, and the std of the logits across
images (the input-dependent part: a per-class constant offset moves no probability between
images, so it does not make the KL). The table gives median [min, max] over seeds.

Data: CIFAR-10 test images read straight from the offline JPEG copy
(``shared/data/cifar10-jpeg.zip``, ``test/<class>/NNNN.jpg``; "CIFAR-10 (JPEG q75 copy)"),
else the synthetic set.

    CCKL_THREADS=2 .venv/bin/python benchmarks/init_kl.py              # 10 seeds, 100 images, ~1-2 min
    CCKL_THREADS=2 .venv/bin/python benchmarks/init_kl.py --seeds 20 --per-class 50
    .venv/bin/python benchmarks/init_kl.py --seeds 0 --train-steps 200  # does a torch-init VGG13 train? (slow: ~5-8 min per init on 2 cores)
"""
from __future__ import annotations

import argparse
import io
import os
import time
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cckl_core import data as cdata
from cckl_core import metrics, models
from cckl_core.paths import SHARED_CIFAR10_ZIP

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_images(per_class: int = 50) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``per_class`` test images of each class (the first ones, 0000.jpg on), floats in [0, 1].

    Image 0 is test/airplane/0000.jpg and image 1 is test/automobile/0000.jpg (the Figure 1 pair).
    """
    zpath = SHARED_CIFAR10_ZIP
    if zpath.exists():
        from PIL import Image
        imgs, labels = {}, {}
        with zipfile.ZipFile(zpath) as z:
            names = set(z.namelist())
            for k in range(per_class):
                for c, cls in enumerate(CLASSES):
                    name = f"test/{cls}/{k:04d}.jpg"
                    if name not in names:
                        raise FileNotFoundError(f"{name} not in {zpath}")
                    with Image.open(io.BytesIO(z.read(name))) as im:
                        imgs[(k, c)] = np.asarray(im.convert("RGB"), dtype=np.uint8)
                    labels[(k, c)] = c
        order = sorted(imgs)  # (k, c): the first image of every class comes first
        x = torch.from_numpy(np.stack([imgs[o] for o in order])).permute(0, 3, 1, 2).float().div(255)
        y = torch.tensor([labels[o] for o in order])
        return x, y, "CIFAR-10 (JPEG q75 copy)"
    ds = cdata.synthetic("test", n=per_class * 10)
    first = [int((ds.labels == c).nonzero()[0]) for c in (0, 1)]
    rest = [i for i in range(len(ds)) if i not in first]
    idx = torch.tensor(first + rest)
    return ds.float()[idx], ds.labels[idx], "synthetic"


def torch_default_init_(model: nn.Module, modules=(nn.Conv2d, nn.Linear, nn.BatchNorm2d)) -> nn.Module:
    """Re-run ``reset_parameters()`` on every module of the given types: PyTorch's defaults."""
    for m in model.modules():
        if isinstance(m, modules):
            m.reset_parameters()
    return model


def make(model_name: str, width: float, bn: bool, scheme: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = models.build(model_name, width=width, batch_norm=bn)
    if scheme == "torch":
        torch_default_init_(model)
    elif scheme == "ours+torch-head":
        torch_default_init_(model, (nn.Linear,))
    elif scheme != "ours":
        raise ValueError(scheme)
    return model


@torch.inference_mode()
def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bn_mode: str) -> dict:
    model.train(bn_mode == "train")
    # train-mode BN normalises with the statistics of the whole set of images, in one batch
    logits = torch.cat([model(xb) for xb in x.split(250)]) if bn_mode != "train" else model(x)
    logits = logits.double()
    logp = F.log_softmax(logits, 1)
    p = logp.exp()
    pair_kl = float((p[0] * (logp[0] - logp[1])).sum())
    return {
        "pair_kl": pair_kl,
        "cckl": metrics.cckl(p, y, log_probs=logp),
        "logit_std": float(logits.std()),
        "logit_std_x": float(logits.std(0).mean()),  # across images, averaged over classes
        "max_p": float(p.max(1).values.mean()),
    }


def fmt(v: np.ndarray) -> str:
    return f"{np.median(v):9.3g} [{v.min():.2g}, {v.max():.2g}]"


def train_check(steps: int, seed: int = 0, lr: float = 0.01, batch: int = 32) -> None:
    """A few hundred SGD steps (momentum 0.9, wd 1e-4) of plain VGG13 w1 on synthetic data."""
    train = cdata.synthetic("train", n=2000, seed=0)
    xs, ys = train.float(), train.labels
    print(f"\nTraining check: vgg13 width 1, no BN, synthetic data (2,000 images), SGD lr {lr}, batch {batch}, "
          f"{steps} steps")
    print(f"{'init':<18}{'loss first 20':>14}{'loss last 20':>14}{'train acc last 20':>19}{'s':>7}")
    for scheme in ("ours", "torch"):
        model = make("vgg13", 1.0, False, scheme, seed).train()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(seed)
        losses, accs, t0 = [], [], time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(ys), (batch,), generator=gen)
            out = model(xs[idx])
            loss = F.cross_entropy(out, ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            accs.append((out.argmax(1) == ys[idx]).float().mean().item())
        print(f"{scheme:<18}{np.mean(losses[:20]):14.4f}{np.mean(losses[-20:]):14.4f}{np.mean(accs[-20:]):19.3f}"
              f"{time.perf_counter() - t0:7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=10, help="test images per class (CCKL, BN batch statistics)")
    ap.add_argument("--train-steps", type=int, default=0, help="also train plain VGG13 this many steps per init")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("CCKL_THREADS", "2")))

    t0 = time.perf_counter()
    x, y, source = load_images(args.per_class)
    print(f"Data: {source}, {len(y)} test images; pair = first test image of class 0 and of class 1; "
          f"{args.seeds} seeds; torch {torch.__version__}; load {time.perf_counter() - t0:.1f} s")
    print("Paper (Figure 1, VGG13 on CIFAR-10): KL at initialisation 0.053, after training 3.197\n")
    configs = [  # (label, model, width, BN, BN mode, init schemes)
        ("vgg13 w1 noBN", "vgg13", 1.0, False, "eval", ("ours", "torch", "ours+torch-head")),
        ("vgg13 w1 BN train", "vgg13", 1.0, True, "train", ("ours", "torch")),
        ("vgg13 w0.25 BN eval", "vgg13", 0.25, True, "eval", ("ours", "torch")),
        ("vgg13 w0.25 BN train", "vgg13", 0.25, True, "train", ("ours", "torch")),
    ]
    head = (f"{'init':<16}{'model':<22}{'pair KL median [range]':>28}{'CCKL median [range]':>28}"
            f"{'logit std':>11}{'std over x':>11}{'mean max p':>11}")
    if args.seeds:
        print(head)
        print("-" * len(head))
    for label, name, width, bn, mode, schemes in configs:
        for scheme in schemes if args.seeds else ():
            t1 = time.perf_counter()
            rows = [measure(make(name, width, bn, scheme, s), x, y, mode) for s in range(args.seeds)]
            col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
            print(f"{scheme:<16}{label:<22}{fmt(col['pair_kl']):>28}{fmt(col['cckl']):>28}"
                  f"{np.median(col['logit_std']):11.3g}{np.median(col['logit_std_x']):11.3g}"
                  f"{np.median(col['max_p']):11.3f}   ({time.perf_counter() - t1:.0f} s)")
        if args.seeds:
            print()
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.train_steps:
        train_check(args.train_steps)


if __name__ == "__main__":
    main()
