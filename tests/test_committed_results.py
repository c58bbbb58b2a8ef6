"""The results the repository carries (`results/<profile>.tar.gz`): each still matches its profile and
this code (its runs' keys, its evaluations' keys, the formats), so it cannot go stale silently; and
unpacked into a fresh cache it renders exactly the claims committed under `figures/<profile>/`."""
import json
from pathlib import Path

import pytest

from cckl_core import bundle, paper

REPO = Path(__file__).resolve().parent.parent
BUNDLES = sorted((REPO / "results").glob("*.tar.gz"))


def test_the_repository_carries_the_quick_results():
    assert REPO / "results" / "quick.tar.gz" in BUNDLES


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name)
def test_a_committed_bundle_matches_the_current_profile_and_code(path):
    assert bundle.stale(path) == []
    manifest = bundle.read_manifest(path)
    assert manifest["profile"] == path.name.removesuffix(".tar.gz")
    assert not any(m.endswith(".safetensors") for m in manifest["members"])  # no weights travel


@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name)
def test_a_committed_bundle_renders_the_committed_claims(path, tmp_path, monkeypatch):
    """Unpacked into a fresh cache, the notebooks (their cells run in order, as papermill runs them) write
    every claims file and table committed under figures/<profile>/, byte for byte."""
    from conftest import run_notebook
    profile = path.name.removesuffix(".tar.gz")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "no-data"))  # rendering reads no data
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path / "figures"))
    bundle.extract(path, profile)
    for name in paper.notebooks_of(profile):
        run_notebook(name, profile=profile, seed=0)
    written = sorted(p.name for p in (tmp_path / "figures" / profile).iterdir() if p.suffix in (".csv", ".md", ".json"))
    assert {f"claims_{name}.json" for name in paper.notebooks_of(profile)} <= set(written)
    for name in written:
        assert (tmp_path / "figures" / profile / name).read_bytes() == (REPO / "figures" / profile / name).read_bytes(), name


def test_a_bundle_of_an_older_profile_or_code_is_found_stale(smoke_cache, tmp_path, monkeypatch):
    from dataclasses import replace

    from cckl_core import evaluations, profiles
    made = tmp_path / "smoke.tar.gz"
    bundle.create("smoke", made)
    assert bundle.stale(made) == []
    real = profiles.load("smoke")
    changed_eval = replace(real, evaluation=replace(real.evaluation, n_pairs=real.evaluation.n_pairs + 1))
    monkeypatch.setattr(profiles, "load", lambda name=None: changed_eval)
    assert any("fig5" in p and "missing" in p for p in bundle.stale(made))
    changed_run = replace(real, runs={**real.runs, "vgg13_standard": replace(real.runs["vgg13_standard"], lr=0.02)})
    monkeypatch.setattr(profiles, "load", lambda name=None: changed_run)
    assert any(p.startswith("run vgg13_standard: no folder") for p in bundle.stale(made))
    monkeypatch.setattr(profiles, "load", lambda name=None: real)
    monkeypatch.setitem(evaluations._REGISTRY, "theorem",
                        replace(evaluations._REGISTRY["theorem"], version=evaluations._REGISTRY["theorem"].version + 1))
    assert any("theorem" in p for p in bundle.stale(made))


def test_notebooks_started_together_unpack_the_committed_results_once(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from cckl_core import profiles
    from cckl_core.paper import inputs
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    quick = profiles.load("quick")
    with ThreadPoolExecutor(3) as pool:
        notes = list(pool.map(lambda _: inputs._unpack_committed(quick), range(3)))
    assert sum(n.startswith("[cckl] unpacked the results") for n in notes) == 1 and notes.count("") == 2, notes
    assert inputs.results_present("quick", "cache")


def test_a_killed_unpack_does_not_stop_the_next_one(tmp_path, monkeypatch):
    """A profile folder holding only what an interrupted unpack left (a staging folder, the lock
    file) holds no results: the next notebook unpacks the committed ones."""
    from cckl_core import profiles
    from cckl_core.paper import inputs
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    left = tmp_path / "artifacts" / "quick" / f"{bundle._STAGING_PREFIX}killed"
    left.mkdir(parents=True)
    (left / ".lock").write_text("")
    (left.parent / ".lock").write_text("")
    assert inputs._unpack_committed(profiles.load("quick")).startswith("[cckl] unpacked the results")
    assert inputs.results_present("quick", "cache") and not left.exists()


def test_a_bundle_lacking_a_seed_the_profile_trains_is_found_stale(smoke_cache, tmp_path, monkeypatch):
    from dataclasses import replace
    from types import MappingProxyType

    from cckl_core import profiles
    made = tmp_path / "smoke.tar.gz"
    bundle.create("smoke", made)
    real = profiles.load("smoke")
    more = replace(real, run_seeds=MappingProxyType({"vgg13_trades": (0, 1)}))
    monkeypatch.setattr(profiles, "load", lambda name=None: more)
    assert any(p.startswith("run vgg13_trades (seed 1): no folder") for p in bundle.stale(made))


def _bundle_of(manifest: bytes, extra=()) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in [("bundle.json", manifest), *extra]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _bad_bundles() -> dict:
    good = (REPO / "results" / "quick.tar.gz").read_bytes()
    manifest = bundle.read_manifest(REPO / "results" / "quick.tar.gz")
    complete = next(m for m in manifest["members"] if m.endswith("/complete.json"))
    return {
        "empty": b"",
        "truncated": good[: len(good) // 3],
        "not a tar": b"this is not a bundle\n" * 10,
        "gzip of no tar": __import__("gzip").compress(b"plain text, not a tar archive" * 20),
        "manifest a list": _bundle_of(b"[1, 2, 3]"),
        "runs an object": _bundle_of(json.dumps({**manifest, "runs": {"a": 1}}).encode()),
        "runs of numbers": _bundle_of(json.dumps({**manifest, "runs": [1, 2]}).encode()),
        "members a list": _bundle_of(json.dumps({**manifest, "members": [1]}).encode()),
        "complete.json a list": _bundle_of(json.dumps(manifest).encode(), [(complete, b"[]")]),
        "complete.json not JSON": _bundle_of(json.dumps(manifest).encode(), [(complete, b"{")]),
    }


@pytest.mark.parametrize("kind", list(_bad_bundles()))
def test_a_bad_committed_bundle_is_one_line_in_a_notebooks_set_up(tmp_path, monkeypatch, capsys, kind):
    """The committed bundle is checked before anything in it is parsed: an empty, truncated or non-tar
    `results/quick.tar.gz`, or a member of the wrong JSON shape, is one line, then the usual message
    naming what is missing, never a traceback."""
    from cckl_core import profiles
    from cckl_core.paper import inputs
    bad = tmp_path / "quick.tar.gz"
    bad.write_bytes(_bad_bundles()[kind])
    monkeypatch.setattr(inputs, "bundle_path", lambda name: bad)
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    note = inputs._unpack_committed(profiles.load("quick"))
    assert note.startswith("[cckl] could not unpack") and "\n" not in note, note
    with pytest.raises(bundle.BundleError):
        bundle.stale(bad)
    with pytest.raises(paper.ResultsMissing):
        paper.render("03_capacity_study", "quick")
    assert "Traceback" not in capsys.readouterr().out


def test_a_linked_profile_lock_is_not_truncated_by_the_automatic_unpack(tmp_path, monkeypatch):
    """A profile folder's `.lock` that links to another file: the notebook's automatic unpack refuses it
    in one line and the file keeps its bytes."""
    from cckl_core import profiles
    from cckl_core.paper import inputs
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    (tmp_path / "artifacts" / "quick").mkdir(parents=True)
    (tmp_path / "artifacts" / "quick" / ".lock").symlink_to(victim)
    note = inputs._unpack_committed(profiles.load("quick"))
    assert note.startswith("[cckl] could not unpack") and "symbolic link" in note, note
    assert victim.read_text() == "keep me"
