"""Shared test set-up: one torch thread per test process (``make test`` runs two pytest
workers on two cores; oversubscribed threads make tiny ops many times slower)."""
import os

import torch

torch.set_num_threads(int(os.environ.get("CCKL_THREADS", "1")))
