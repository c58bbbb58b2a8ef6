"""Trained models by name, as RobustBench serves them: ``zoo.load("quick", "resnet20_trades")``.

The repository carries the final weights of every run of a published profile's first training seed
in ``results/<profile>-models.tar`` (:func:`pack` writes it; ``make paper`` refreshes it for
``quick``): one safetensors file per run, in float16 where that keeps the run's predictions (else
float32; :func:`pack` checks this), the first :data:`PROBE_IMAGES` images of each run's test split
(:func:`test_images`, for the notebooks' live probes where the data set is not), and a manifest with
each run's config key, training seed, dtype and the SHA-256 and size of each file.

:func:`load` trusts nothing it reads: the archive and each member are bounded in size, only the
manifest's regular-file members are read (into memory: nothing is unpacked, so nothing can land
outside a folder), every file is checked against its SHA-256, and the run's key must equal the key
of the current profile's config for it (a model trained with other settings is refused, naming the
command that makes it again). The model comes back in float32, in eval mode, on the CPU.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch
from torch import nn

from . import profiles, store
from .paths import REPO_ROOT, results_root

FORMAT = 1
MANIFEST = "manifest.json"
#: Bounds on what :func:`load` reads: the archive, one member, the manifest.
MAX_ARCHIVE_BYTES = 256 * 2 ** 20
MAX_MEMBER_BYTES = 128 * 2 ** 20
MAX_MANIFEST_BYTES = 2 ** 20
#: How many images of each run's test split the archive carries (positions 0 .. PROBE_IMAGES - 1), for the
#: notebooks' live probes on a machine without the data set.
PROBE_IMAGES = 64


class ZooError(ValueError):
    """A model that cannot be served: unknown name, missing or damaged archive, stale weights."""


class IncompleteCache(ZooError):
    """:func:`pack` was asked for a profile whose run cache lacks some trained weights."""


def archive_path(profile: str, write: bool = False) -> Path:
    """Where the repository carries a profile's trained models: ``results/<profile>-models.tar`` of the project
    around the working directory; for reading, the checkout this package was installed from when the working
    directory is in no project that has the file (a script run from elsewhere still finds the models)."""
    name = f"{profiles.check_name(profile)}-models.tar"
    here = results_root() / name
    if write or here.is_file():
        return here
    installed = REPO_ROOT / "results" / name
    return installed if installed.is_file() else here


def _open(profile: str, path: Path | None = None) -> tuple[tarfile.TarFile, dict]:
    """The model archive of ``profile`` (or at ``path``), open, and its manifest, checked; else one :class:`ZooError`."""
    path = path or archive_path(profile)
    if not path.is_file():
        raise ZooError(f"no trained models of profile {profile!r} in this repository ({path} is missing); "
                       f"make them with `make paper PROFILE={profile}`, which writes it")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise ZooError(f"{path} is larger than {MAX_ARCHIVE_BYTES // 2 ** 20} MiB; not read")
    try:
        tar = tarfile.open(path, mode="r:")
        info = tar.getmember(MANIFEST)
        if not info.isfile() or info.size > MAX_MANIFEST_BYTES:
            raise ZooError(f"{path}: its {MANIFEST} is not a small regular file")
        manifest = json.loads(tar.extractfile(info).read())
    except (tarfile.TarError, KeyError, OSError, EOFError, ValueError) as err:
        raise ZooError(f"{path} is not a readable model archive ({err}); restore it with `git checkout -- {path}`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("models"), dict):
        raise ZooError(f"{path}: its manifest is not of format {FORMAT}")
    return tar, manifest


def names(profile: str = "quick") -> list[str]:
    """The runs whose trained models profile ``profile`` carries (``load`` takes these names)."""
    tar, manifest = _open(profile)
    tar.close()
    return sorted(manifest["models"])


def _entry(prof: profiles.Profile, manifest: dict, name: str) -> dict:
    """The manifest's entry of run ``name``, checked against the profile's current config of it."""
    entry = manifest["models"].get(name)
    if not isinstance(entry, dict):
        raise ZooError(f"profile {prof.name!r} carries no trained model {name!r}; its models: "
                       f"{', '.join(sorted(manifest['models'])) or 'none'}")
    cfg = prof.run(name)
    if entry.get("key") != cfg.key or entry.get("seed") != cfg.seed:
        raise ZooError(f"the carried model {name!r} was trained with other settings than profile {prof.name}'s "
                       f"current ones (key {entry.get('key')} against {cfg.key}); make it again with "
                       f"`make paper PROFILE={prof.name}`")
    return entry


def _read_member(tar: tarfile.TarFile, profile: str, entry: dict, what: str) -> bytes:
    """The bytes of the member ``entry`` names (``file``, ``bytes``, ``sha256``), checked: a regular file of
    that size, at most :data:`MAX_MEMBER_BYTES`, with that SHA-256."""
    try:
        info = tar.getmember(str(entry.get("file")))
    except KeyError:
        raise ZooError(f"{archive_path(profile)} lacks the file of {what}") from None
    if not info.isfile() or info.size > MAX_MEMBER_BYTES or info.size != entry.get("bytes"):
        raise ZooError(f"{archive_path(profile)}: the file of {what} is not the regular file of "
                       f"{entry.get('bytes')} bytes its manifest names")
    payload = tar.extractfile(info).read()
    if store.sha256_bytes(payload) != entry.get("sha256"):
        raise ZooError(f"{archive_path(profile)}: the file of {what} does not match its checksum (damaged or "
                       f"edited); restore it with git")
    return payload


def load(profile: str, name: str) -> nn.Module:
    """The trained model of run ``name`` of ``profile`` (its first training seed), verified, in float32 and
    eval mode on the CPU."""
    from safetensors.torch import load as load_tensors

    from .models import of_run

    prof = profiles.load(profile)
    tar, manifest = _open(prof.name)
    with tar:
        entry = _entry(prof, manifest, name)
        payload = _read_member(tar, prof.name, entry, f"the weights of {name!r}")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_tensors(payload).items()}
    cfg = prof.run(name)
    model = of_run(cfg, int(entry.get("num_classes", cfg.num_classes)))
    model.load_state_dict(state)
    return model.eval()


def test_images(profile: str, name: str):
    """The first :data:`PROBE_IMAGES` images of run ``name``'s test split (as its evaluations read it), which
    the archive carries so that the notebooks' live probes work where the data set is not: an
    :class:`cckl_core.data.ImageData` (uint8), verified as :func:`load` verifies weights."""
    from safetensors.torch import load as load_tensors

    from .data import ImageData

    prof = profiles.load(profile)
    tar, manifest = _open(prof.name)
    with tar:
        entry = _entry(prof, manifest, name).get("test_images")
        if not isinstance(entry, dict):
            raise ZooError(f"{archive_path(prof.name)} carries no test images of {name!r}; make it again with "
                           f"`make paper PROFILE={prof.name}`")
        tensors = load_tensors(_read_member(tar, prof.name, entry, f"the test images of {name!r}"))
    try:
        return ImageData(tensors["images"], tensors["labels"], list(entry["classes"]), split="test")
    except (KeyError, ValueError, TypeError) as err:
        raise ZooError(f"{archive_path(prof.name)}: the test images of {name!r} are malformed ({err})") from None


test_images.__test__ = False  # a library function, not a test, for pytest


def _half_keeps_predictions(model: nn.Module, state: dict, x: torch.Tensor) -> bool:
    """Whether the model with its weights rounded to float16 predicts every image of ``x`` as in float32."""
    with torch.no_grad():
        before = model(x).argmax(1)
        model.load_state_dict({k: (v.half().float() if v.is_floating_point() else v) for k, v in state.items()})
        after = model(x).argmax(1)
        model.load_state_dict(state)
    return bool(torch.equal(before, after))


def _probe_images(run, cfg, files: list) -> dict:
    """Add the first :data:`PROBE_IMAGES` images of the run's test split to ``files`` (once per distinct
    split: the file is named by its content) and return their manifest entry."""
    from safetensors.torch import save

    test = run.dataset("test", seed=cfg.seed)
    part = test.take(torch.arange(min(PROBE_IMAGES, len(test))))
    payload = save({"images": part.images.contiguous(), "labels": part.labels.long().contiguous()})
    sha = store.sha256_bytes(payload)
    file = f"test-images-{sha[:16]}.safetensors"
    if file not in {f for f, _ in files}:
        files.append((file, payload))
    return {"file": file, "bytes": len(payload), "sha256": sha, "n": len(part), "classes": list(test.classes)}


def _source(cfg) -> str:
    """The SHA-256 of a run's trained weights in the run cache (what an archive entry was packed from)."""
    from . import runs
    return store.sha256_file(runs.path_of(cfg) / runs.WEIGHTS)


def _pack_run(run, cfg, check_images: int, files: list) -> dict:
    """Add run ``run``'s weights (float16 where rounding keeps its predictions on ``check_images`` test images,
    else float32) and its probe images to ``files``; return its manifest entry."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().clone().contiguous() for k, v in run.model.state_dict().items()}  # a copy: the check below rounds the model's own
    x = run.dataset("test", n=min(check_images, run.dataset_info["n_test"])).float()
    half = _half_keeps_predictions(run.model.eval(), state, x)
    payload = save({k: (v.half() if half and v.is_floating_point() else v) for k, v in state.items()})
    file = f"{run.name}.safetensors"
    files.append((file, payload))
    return {"test_images": _probe_images(run, cfg, files), "key": cfg.key, "seed": cfg.seed, "model": cfg.model,
            "width": cfg.width, "objective": cfg.objective, "num_classes": len(run.classes), "file": file,
            "dtype": "float16" if half else "float32", "bytes": len(payload), "sha256": store.sha256_bytes(payload),
            "source": _source(cfg), "parameters": sum(v.numel() for v in state.values() if v.is_floating_point())}


def _up_to_date(prof: profiles.Profile, out: Path, present: list[str]) -> dict | None:
    """The manifest of the archive at ``out`` when it was packed from exactly the weights now in the run cache
    (every present run, its config key and the SHA-256 of its weights file); else None."""
    try:
        tar, manifest = _open(prof.name, out)
    except ZooError:
        return None
    tar.close()
    models = manifest["models"]
    if sorted(models) != sorted(present):
        return None
    same = all(isinstance(models[n], dict) and models[n].get("key") == prof.run(n).key and "test_images" in models[n]
               and models[n].get("source") == _source(prof.run(n)) for n in present)
    return manifest if same else None


def _write_archive(out: Path, manifest: dict, files: list) -> int:
    """Write the manifest and ``files`` as an uncompressed tar (fixed times and modes: the same input gives the
    same bytes); return its size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for member, payload in [(MANIFEST, store.json_bytes(manifest))] + files:
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
    store.atomic_write_bytes(out, buf.getvalue())
    return len(buf.getvalue())


def pack(profile: str, out: Path | None = None, check_images: int = 2000, force: bool = False) -> dict:
    """Write ``results/<profile>-models.tar`` (or ``out``) from the run cache: the final weights of every
    finished run of the profile's first training seed (:func:`_pack_run`). Returns the manifest, with
    ``written`` False when the archive already held exactly these weights (nothing rewritten unless ``force``)."""
    from . import runs

    prof = profiles.load(profile)
    out = Path(out) if out is not None else archive_path(prof.name, write=True)
    lacking = [name for name, cfg in prof.runs.items() if not cfg.optional
               and runs.inspect(runs.path_of(cfg), cfg).state != runs.COMPLETE]
    if lacking:
        raise IncompleteCache(f"the run cache lacks the trained weights of {', '.join(lacking)} (profile {prof.name}, "
                              f"training seed {prof.seeds[0]}); train them first (`make paper PROFILE={prof.name}`)")
    present = [n for n, cfg in prof.runs.items() if (runs.path_of(cfg) / runs.WEIGHTS).is_file()]
    current = None if force else _up_to_date(prof, out, present)
    if current is not None:
        return {**current, "bytes": out.stat().st_size, "written": False}
    models, files = {}, []
    for name in present:
        cfg = prof.run(name)
        models[name] = _pack_run(runs.load(cfg, weights=True, device="cpu"), cfg, check_images, files)
    manifest = {"format": FORMAT, "profile": prof.name, "models": models}
    return {**manifest, "bytes": _write_archive(out, manifest, files), "written": True}


__all__ = ["IncompleteCache", "PROBE_IMAGES", "ZooError", "archive_path", "load", "names", "pack", "test_images"]
