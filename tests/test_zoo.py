"""Trained models by name (`cckl_core.zoo`): packed from the cache, served verified, refused when stale
or damaged; and the `quick` models the repository carries reproduce committed numbers."""
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cckl_core import evaluations, fisher, profiles, runs, store, zoo
from cckl_core.paths import cifar10_zip

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def smoke_zoo(smoke_cache, tmp_path, monkeypatch):
    """The smoke profile's models packed from a copy of the fixture into a scratch results folder."""
    monkeypatch.setattr(zoo, "results_root", lambda: tmp_path / "results")
    made = zoo.pack("smoke")
    return made, tmp_path / "results" / "smoke-models.tar"


def test_packed_models_load_by_name_and_predict_as_trained(smoke_zoo):
    made, path = smoke_zoo
    prof = profiles.load("smoke")
    assert zoo.names("smoke") == sorted(made["models"]) and "vgg13_trades" in made["models"]
    assert "resnet20_standard_cifar100" not in made["models"]  # the optional run whose data set is absent
    for name in ("vgg13_trades", "t1_resnet32_standin"):
        model = zoo.load("smoke", name)
        assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
        run = runs.load(prof.run(name), weights=True, device="cpu")
        x = run.dataset("test").float()
        with torch.no_grad():
            same = (model(x).argmax(1) == run.model.eval()(x).argmax(1)).all()
        assert same  # float16 is stored only where it keeps every prediction
        assert made["models"][name]["dtype"] in ("float16", "float32")


def test_unknown_stale_or_damaged_models_are_refused(smoke_zoo, monkeypatch):
    made, path = smoke_zoo
    with pytest.raises(zoo.ZooError, match="carries no trained model 'nope'; its models: "):
        zoo.load("smoke", "nope")
    real = profiles.load("smoke")
    from dataclasses import replace
    changed = replace(real, runs={**real.runs, "vgg13_trades": replace(real.runs["vgg13_trades"], lr=0.5)})
    monkeypatch.setattr(profiles, "load", lambda name=None: changed)
    with pytest.raises(zoo.ZooError, match="trained with other settings"):
        zoo.load("smoke", "vgg13_trades")
    monkeypatch.setattr(profiles, "load", lambda name=None: real)
    raw = bytearray(path.read_bytes())
    member = made["models"]["vgg13_trades"]
    with tarfile.open(path) as tar:
        offset = tar.getmember(member["file"]).offset_data
    raw[offset + member["bytes"] // 2] ^= 0xFF  # one flipped byte in the weights
    path.write_bytes(bytes(raw))
    with pytest.raises(zoo.ZooError, match="does not match its checksum"):
        zoo.load("smoke", "vgg13_trades")
    path.write_bytes(b"not a tar")
    with pytest.raises(zoo.ZooError, match="not a readable model archive"):
        zoo.names("smoke")
    path.unlink()
    with pytest.raises(zoo.ZooError, match="make paper PROFILE=smoke"):
        zoo.names("smoke")


def test_a_member_outside_the_manifest_or_a_link_is_never_read(smoke_zoo):
    made, path = smoke_zoo
    buf = io.BytesIO()
    manifest = {"format": zoo.FORMAT, "profile": "smoke",
                "models": {"vgg13_trades": {**made["models"]["vgg13_trades"], "file": "../../etc/passwd"}}}
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo(zoo.MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("../../etc/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    path.write_bytes(buf.getvalue())
    with pytest.raises(zoo.ZooError, match="not the regular file"):
        zoo.load("smoke", "vgg13_trades")


def test_packing_a_cache_without_weights_is_refused(smoke_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "results_root", lambda: tmp_path / "results")
    for folder in (smoke_cache / "smoke").iterdir():
        runs.remove_weights(folder)
    with pytest.raises(zoo.IncompleteCache, match="lacks the trained weights"):
        zoo.pack("smoke")
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- the models this repository carries
CARRIED = REPO / "results" / "quick-models.tar"


@pytest.mark.skipif(not CARRIED.is_file(), reason="the repository carries no quick models")
def test_every_carried_quick_model_loads():
    names = zoo.names("quick")
    assert set(names) == {n for n, c in profiles.load("quick").runs.items() if not c.optional}
    assert CARRIED.stat().st_size <= 25 * 2 ** 20
    for name in names:
        assert not zoo.load("quick", name).training


@pytest.mark.slow
@pytest.mark.skipif(not CARRIED.is_file() or not cifar10_zip().is_file(),
                    reason="needs the carried quick models and the offline CIFAR-10 copy")
def test_carried_models_reproduce_committed_numbers(tmp_path, monkeypatch):
    """Table 1's clean accuracy of resnet20x1 (the cached per-image correctness) and the final mean
    ||F_x||_F of vgg13_standard (its history), recomputed from the carried weights."""
    from cckl_core import bundle
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    bundle.extract(REPO / "results" / "quick.tar.gz", "quick")
    prof = profiles.load("quick")
    run = runs.load(prof.run("resnet20_trades"))
    s = evaluations.settings(prof, "table1")
    ev = evaluations.read(run, s)
    images = run.dataset("test", seed=run.seed).subset(s["n_eval"] or None, s["sample_seed"])
    assert np.array_equal(images.indices.numpy(), np.asarray(ev["index"]))  # the images Table 1 was computed on
    model = zoo.load("quick", "resnet20_trades")
    with torch.no_grad():
        correct = (model(images.float()).argmax(1) == images.labels).numpy()
    assert np.array_equal(correct, np.asarray(ev["correct_clean"]).astype(bool))
    std = runs.load(prof.run("vgg13_standard"))
    from cckl_core.trainer import fixed_points
    fisher_x = fixed_points(std.dataset("test", seed=std.seed), std.config, torch.device("cpu")).fisher_x
    fro = fisher.fisher_stats(zoo.load("quick", "vgg13_standard"), fisher_x)["frobenius"].mean()
    assert float(fro) == pytest.approx(std.history[-1]["fisher_fro_mean"], rel=1e-3)


@pytest.mark.skipif(not CARRIED.is_file(), reason="the repository carries no quick models")
def test_the_carried_models_are_found_from_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a script run from a folder that is no project
    assert zoo.archive_path("quick") == CARRIED and "resnet20_trades" in zoo.names("quick")
    assert zoo.archive_path("quick", write=True) == tmp_path / "results" / "quick-models.tar"  # writes stay here


def test_the_first_test_images_of_each_run_travel_with_the_models(smoke_zoo, monkeypatch):
    """The archive carries the first PROBE_IMAGES images of each run's test split, equal to the data's; the
    probes use them where the data set is not here, and say how to get it for a position beyond them."""
    from cckl_core import data, probes
    made, path = smoke_zoo
    carried = zoo.test_images("smoke", "vgg13_trades")
    here = probes._test_split(profiles.load("smoke").run("vgg13_trades"))
    n = min(zoo.PROBE_IMAGES, len(here))
    assert len(carried) == n and carried.classes == list(here.classes)
    assert torch.equal(carried.images, here.images[:n]) and torch.equal(carried.labels, here.labels[:n].long())

    def no_data(cfg):
        raise data.DataNotFoundError("CIFAR-10 is not here: run `make data`")
    monkeypatch.setattr(probes, "_test_split", no_data)
    got = probes.test_images("smoke", "vgg13_trades", [0, n - 1])
    assert torch.equal(got.images, carried.take(torch.tensor([0, n - 1])).float())
    with pytest.raises(IndexError, match=rf"carries the first {n} test images .*make data"):
        probes.test_images("smoke", "vgg13_trades", [n])
    raw = bytearray(path.read_bytes())
    member = made["models"]["vgg13_trades"]["test_images"]
    with tarfile.open(path) as tar:
        offset = tar.getmember(member["file"]).offset_data
    raw[offset + member["bytes"] - 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(zoo.ZooError, match="test images of 'vgg13_trades' does not match its checksum"):
        zoo.test_images("smoke", "vgg13_trades")


def test_packing_again_rewrites_only_when_the_cached_weights_changed(smoke_zoo, monkeypatch):
    made, path = smoke_zoo
    prof = profiles.load("smoke")
    weights = runs.path_of(prof.run("vgg13_trades")) / runs.WEIGHTS
    assert made["written"] and made["models"]["vgg13_trades"]["source"] == store.sha256_file(weights)
    before = path.read_bytes()
    again = zoo.pack("smoke")
    assert not again["written"] and path.read_bytes() == before
    real = zoo._source  # a retrained run (new weights, same config key): its weights file has another checksum
    monkeypatch.setattr(zoo, "_source", lambda cfg: "0" * 64 if cfg.name == "vgg13_trades" else real(cfg))
    assert zoo.pack("smoke")["written"]
    monkeypatch.setattr(zoo, "_source", real)
    assert zoo.pack("smoke")["written"] and not zoo.pack("smoke")["written"]
    assert zoo.pack("smoke", force=True)["written"]
