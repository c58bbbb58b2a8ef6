"""Device choice: ``"auto"`` means CUDA when available, else the CPU."""
from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a concrete ``torch.device`` for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``None`` and ``"auto"`` read ``$CCKL_DEVICE`` first, then pick CUDA if present.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        device = os.environ.get("CCKL_DEVICE", "auto") or "auto"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was asked for but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'.")
    return dev


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: ``$CCKL_THREADS`` or all cores)."""
    if n is None:
        n = int(os.environ.get("CCKL_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
