"""Unpacking a results bundle is confined: no bundle, however crafted or damaged, writes, replaces or
deletes anything but run folders of its profile under the artifacts root, nor reads past its limits;
a refused bundle leaves every local file byte-identical and ends in one BundleError (one CLI line); a
bundle does not overwrite another training of a run unless asked."""
import copy
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from cckl_core import bundle, evaluations, profiles, runs, store, trainer
from cckl_core.__main__ import main as cli_main
from conftest import private_copy, train_smoke_once

RUN = "vgg13_standard"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A root with two finished, evaluated smoke runs (seeds 0 and 1) and their bundle ``good.tar.gz``."""
    root = train_smoke_once(tmp_path_factory, RUN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CCKL_ARTIFACTS", str(root / "artifacts"))
        mp.setenv("CCKL_DATA_ROOT", str(root / "data"))
        prof = profiles.load("smoke")
        trainer.train(prof.run(RUN, 1), device="cpu", progress=False)
        for seed in (0, 1):
            evaluations.evaluate_run(prof, prof.run(RUN, seed), device="cpu", progress=False)
        made = bundle.create("smoke", root / "good.tar.gz")
    assert len(made["runs"]) == 2
    return root


@pytest.fixture
def cache(trained, tmp_path, monkeypatch):
    """A private copy of the trained cache (``tmp_path/artifacts``), with an ``outside`` folder beside
    it and the launcher's ``.launch`` folder in it, all of which no bundle may touch."""
    private_copy(trained, tmp_path, monkeypatch)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "complete.json").write_text("{}\n")
    (outside / "keep.txt").write_text("precious\n")
    launch = tmp_path / "artifacts" / "smoke" / ".launch"
    launch.mkdir()
    (launch / "result.pkl").write_bytes(b"local result")
    (tmp_path / "bundles").mkdir()
    shutil.copy(trained / "good.tar.gz", tmp_path / "bundles" / "good.tar.gz")
    return tmp_path / "artifacts"


def snapshot(base: Path) -> dict:
    """Every path under ``base`` (bar the crafted bundles): files by SHA-256, links by target, folders."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        if here.name == "bundles" and here.parent == base:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            rel = str(p.relative_to(base))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def folders_of(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "smoke").iterdir() if not p.name.startswith("."))


def unpack_good(trained) -> tuple[dict, list[tuple[str, bytes]]]:
    """The good bundle's manifest and its other members, in order."""
    with tarfile.open(trained / "good.tar.gz") as tar:
        manifest = json.loads(tar.extractfile(bundle.MANIFEST).read())
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.name != bundle.MANIFEST]
    return manifest, members


def seal(manifest: dict, members) -> dict:
    """``manifest`` listing exactly the plain-file ``members`` ((name, bytes) pairs), as an attacker would."""
    manifest = copy.deepcopy(manifest)
    manifest["members"] = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                           for n, b in members if isinstance(b, bytes)}
    manifest["files"] = len(manifest["members"])
    return manifest


def write(path: Path, manifest: dict, members, pax: dict | None = None) -> Path:
    """A ``.tar.gz`` of ``manifest`` first, then ``members``: (name, bytes) pairs or (name, TarInfo) for
    data-less members (links, folders, devices); ``pax`` gives a member extra pax header records."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [(bundle.MANIFEST, json.dumps(manifest).encode()), *members]:
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = (pax or {}).get(name, {})
            tar.addfile(info, io.BytesIO(data))
    return path


def rename_folder(members, old: str, new: str):
    return [(n.replace(f"/{old}/", f"/{new}/"), b) for n, b in members]


def assert_refused(cache: Path, before: dict, path: Path, *words, **kwargs) -> None:
    """One BundleError (naming ``words``) from the API and one error line from the CLI, and nothing changed."""
    base = cache.parent
    with pytest.raises(bundle.BundleError) as err:
        bundle.extract(path, **kwargs)
    assert snapshot(base) == before
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    if not kwargs.get("max_members") and not kwargs.get("max_bytes") and not kwargs.get("max_member_bytes"):
        argv = ["unbundle", str(path)] + (["--replace"] if kwargs.get("replace") else [])
        assert cli_main(argv) == 2
        assert snapshot(base) == before


def cli_one_line(capsys, *words) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- good bundles
def test_a_good_bundle_round_trips_and_a_second_unpack_is_a_no_op(trained, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("CCKL_ARTIFACTS", str(fresh))
    got = bundle.extract(trained / "good.tar.gz", "smoke")
    assert len(got["runs"]) == 2 and not any(k.startswith("_") for k in got) and got["format"] == bundle.FORMAT
    assert len(got["members"]) == got["files"] == sum(1 for _ in (fresh / "smoke").rglob("*") if _.is_file())
    assert folders_of(fresh) == folders_of(trained / "artifacts")
    for folder in folders_of(fresh):
        here, there = fresh / "smoke" / folder, trained / "artifacts" / "smoke" / folder
        assert runs.inspect(here).state == runs.NO_WEIGHTS
        for p in here.rglob("*"):
            if p.is_file():
                assert p.read_bytes() == (there / p.relative_to(here)).read_bytes()
    assert sorted(p.name for p in (fresh / "smoke").iterdir()) == folders_of(fresh)  # no staging left
    before = snapshot(tmp_path)
    bundle.extract(trained / "good.tar.gz", "smoke")
    assert snapshot(tmp_path) == before


def test_the_same_training_here_only_gains_the_evaluations_it_lacks(cache):
    before = snapshot(cache.parent)
    bundle.extract(_good(cache))
    assert snapshot(cache.parent) == before  # weights, checkpoints, .lock files: all kept as they were
    folder = cache / "smoke" / folders_of(cache)[0]
    pair = sorted((folder / "evaluations").glob("*"))
    for p in pair:
        p.unlink()
    bundle.extract(_good(cache))
    assert snapshot(cache.parent) == before


def test_another_training_here_is_replaced_only_when_asked(cache):
    folder = cache / "smoke" / folders_of(cache)[0]
    done = json.loads((folder / "complete.json").read_text())
    done["finished"] = "x" + done["finished"]  # another training of the same config: its own, valid record
    store.atomic_write_json(folder / "complete.json", store.sealed(done))
    before = snapshot(cache.parent)
    assert_refused(cache, before, _good(cache), "another training", "--replace")
    bundle.extract(_good(cache), replace=True)
    assert runs.inspect(folder).state == runs.NO_WEIGHTS
    assert not (folder / runs.WEIGHTS).exists()
    assert sorted(p.name for p in (cache / "smoke").iterdir()) == [".launch", *folders_of(cache)]
    assert (cache / "smoke" / ".launch" / "result.pkl").read_bytes() == b"local result"


def test_a_run_in_use_here_is_not_replaced(cache):
    folder = cache / "smoke" / folders_of(cache)[0]
    done = json.loads((folder / "complete.json").read_text())
    done["finished"] = "x" + done["finished"]
    store.atomic_write_json(folder / "complete.json", store.sealed(done))
    before = snapshot(cache.parent)
    with store.locked(folder):  # what a trainer or an evaluation of this run holds while it works
        assert_refused(cache, before, _good(cache), str(folder), "in use by another process", replace=True)
    bundle.extract(_good(cache), replace=True)
    assert runs.inspect(folder).state == runs.NO_WEIGHTS


def test_staging_folders_of_a_killed_unpack_are_removed_and_live_ones_kept(cache):
    import time
    smoke = cache / "smoke"
    dead, live, young, old = (smoke / f"{bundle._STAGING_PREFIX}{name}" for name in ("dead", "live", "young", "old"))
    for path in (dead, live, young, old):
        (path / "x-0123456789ab").mkdir(parents=True)
        (path / "x-0123456789ab" / "history.json").write_text("[]\n")
    (dead / ".lock").write_text("")   # its unpack was killed: nobody holds the lock
    (live / ".lock").write_text("")   # its unpack runs (below: this test holds the lock)
    an_hour_ago = time.time() - 2 * bundle._ORPHAN_AGE
    os.utime(old, (an_hour_ago, an_hour_ago))  # killed before it took its lock, long ago
    (smoke / ".unbundle-file").write_text("not a folder: left alone\n")
    with store.locked(live):
        bundle.extract(_good(cache))
    left = sorted(p.name for p in smoke.iterdir() if p.name.startswith(bundle._STAGING_PREFIX))
    assert left == [".unbundle-file", live.name, young.name]
    assert (live / "x-0123456789ab" / "history.json").is_file()


def _good(cache: Path) -> Path:
    """The good bundle of the trained runs (the ``cache`` fixture put a copy beside the cache)."""
    return cache.parent / "bundles" / "good.tar.gz"


# --------------------------------------------------------------------------- crafted manifests
def test_a_manifest_folder_outside_the_root_is_refused(trained, cache):
    manifest, members = unpack_good(trained)
    outside = cache.parent / "outside"
    # a folder named by an absolute path, its members reached through a listed folder named after the
    # path's first component: unpacked with `--replace`, an unconfined unpacker would delete `outside`
    first = outside.parts[1]
    crafted_members = [(f"smoke/{outside}/complete.json", b"{}\n1"), (f"smoke/{first}/complete.json", b"{}")]
    crafted = seal({**manifest, "runs": [{"run": RUN, "seed": 0, "folder": str(outside)},
                                         {"run": RUN, "seed": 0, "folder": first}]}, crafted_members)
    before = snapshot(cache.parent)
    assert_refused(cache, before, write(cache.parent / "bundles" / "abs.tar.gz", crafted, crafted_members),
                   "invalid run entry", replace=True)
    for folder in ("../outside", "../../outside", "smoke/../../outside"):
        crafted = seal({**manifest, "runs": [{"run": RUN, "seed": 0, "folder": folder}]}, members)
        assert_refused(cache, before, write(cache.parent / "bundles" / "up.tar.gz", crafted, members),
                       "invalid run entry", replace=True)


def test_the_launchers_folder_is_not_a_run_folder(trained, cache):
    manifest, _ = unpack_good(trained)
    members = [("smoke/.launch/result.pkl", b"crafted pickle"), ("smoke/.launch/complete.json", b"{}")]
    crafted = seal({**manifest, "runs": [{"run": RUN, "seed": 0, "folder": ".launch"}]}, members)
    before = snapshot(cache.parent)
    assert_refused(cache, before, write(cache.parent / "bundles" / "launch.tar.gz", crafted, members),
                   "invalid run entry", replace=True)


@pytest.mark.parametrize("name", ["smoke/evil.txt", "quick/{folder}/config.json", "{folder}/config.json",
                                  "smoke/{folder}/notes/evil.py", "smoke/{folder}/model.safetensors",
                                  "smoke/{folder}/.lock", "smoke/{folder}/evaluations/sub/x.json",
                                  "/smoke/{folder}/extra.json", "smoke/{folder}/evaluations/evil.pkl"])
def test_a_member_outside_the_run_files_is_refused(trained, cache, name):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    members = members + [(name.format(folder=folder), b"crafted")]
    before = snapshot(cache.parent)
    path = write(cache.parent / "bundles" / "outside-member.tar.gz", seal(manifest, members), members)
    assert_refused(cache, before, path, "refusing to unpack", replace=True)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE])
def test_links_folders_and_devices_are_refused(trained, cache, kind):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    link = tarfile.TarInfo(f"smoke/{folder}/evaluations/theorem-000000000000.json")
    link.type, link.linkname = kind, str(cache.parent / "outside" / "keep.txt")
    crafted = seal(manifest, members)
    crafted["members"][link.name] = {"size": 0, "sha256": "0" * 64}
    before = snapshot(cache.parent)
    path = write(cache.parent / "bundles" / "link.tar.gz", crafted, members + [(link.name, link)])
    assert_refused(cache, before, path, "not a plain file", replace=True)


def test_a_local_run_folder_that_links_outside_is_not_written_through(trained, cache):
    folder = folders_of(cache)[0]
    shutil.move(cache / "smoke" / folder, cache.parent / "outside" / folder)
    (cache / "smoke" / folder).symlink_to(cache.parent / "outside" / folder)
    before = snapshot(cache.parent)
    assert_refused(cache, before, _good(cache), "not a run folder")
    assert_refused(cache, before, _good(cache), "not a run folder", replace=True)


# --------------------------------------------------------------------------- sizes and counts
def test_members_beyond_the_limits_are_not_read(trained, cache):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    big = [*members, (f"smoke/{folder}/evaluations/theorem-000000000000.npz", bytes(3 << 20))]
    path = write(cache.parent / "bundles" / "big.tar.gz", seal(manifest, big), big)
    before = snapshot(cache.parent)
    assert_refused(cache, before, path, "outside 0..", max_member_bytes=1 << 20)
    assert_refused(cache, before, path, "more than the limit", max_bytes=1 << 20)
    assert_refused(cache, before, path, "more than the limit", max_members=len(members))


def test_a_member_larger_than_declared_is_refused(trained, cache):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    name = next(n for n, _ in members if n.endswith(".npz") and f"/{folder}/" in n)
    crafted = seal(manifest, members)
    members = [(n, b + bytes(1 << 20) if n == name else b) for n, b in members]
    before = snapshot(cache.parent)
    path = write(cache.parent / "bundles" / "larger.tar.gz", crafted, members)
    assert_refused(cache, before, path, "its bundle.json says")


def test_a_header_bomb_is_cut_off_at_the_declared_size(trained, cache):
    """A pax header of 8 MiB of one repeated byte compresses to a few KiB: reading stops at what the
    manifest declares (plus header room), long before tarfile has it all."""
    manifest, members = unpack_good(trained)
    path = write(cache.parent / "bundles" / "bomb.tar.gz", seal(manifest, members), members,
                 pax={members[0][0]: {"comment": "x" * (8 << 20)}})
    assert path.stat().st_size < 1 << 20
    before = snapshot(cache.parent)
    assert_refused(cache, before, path, "more than its manifest allows")


# --------------------------------------------------------------------------- what the manifest lists
@pytest.mark.parametrize("how", ["extra", "twice", "missing"])
def test_members_must_be_exactly_those_listed(trained, cache, how):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    listed = seal(manifest, members)
    if how == "extra":
        members = members + [(f"smoke/{folder}/evaluations/theorem-000000000000.json", b"{}")]
        words = ("not listed",)
    elif how == "twice":
        name, _ = next((n, b) for n, b in members if n.endswith(".json") and "/evaluations/" in n)
        members = members + [(name, b"{}")]
        words = ("appears twice",)
    else:
        members = [(n, b) for n, b in members if not (n.endswith(".npz") and f"/{folder}/" in n)]
        words = ("lacks 1 file",)
    before = snapshot(cache.parent)
    assert_refused(cache, before, write(cache.parent / "bundles" / "listed.tar.gz", listed, members), *words)


# --------------------------------------------------------------------------- run folders from their config
def _recrafted(manifest, members, folder, new_folder, config=None):
    """Members and manifest with ``folder`` renamed ``new_folder`` and its config replaced by ``config``,
    its complete.json updated to match (what a careful attacker would do)."""
    members = rename_folder(members, folder, new_folder)
    if config is not None:
        blob = json.dumps(config, indent=1, sort_keys=True).encode()
        done = json.loads(dict(members)[f"smoke/{new_folder}/complete.json"])
        done["files"]["config.json"] = hashlib.sha256(blob).hexdigest()
        patched = {f"smoke/{new_folder}/config.json": blob,
                   f"smoke/{new_folder}/complete.json": json.dumps(done).encode()}
        members = [(n, patched.get(n, b)) for n, b in members]
    runs_ = [{**e, "folder": new_folder, "run": new_folder.rsplit("-", 1)[0]} if e["folder"] == folder else e
             for e in manifest["runs"]]
    return seal({**manifest, "runs": runs_}, members), members


@pytest.mark.parametrize("how", ["wrong hash", "not the profile's config", "not a run of the profile"])
def test_a_run_folder_must_be_named_after_its_verified_config(trained, cache, how):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    config = json.loads(dict(members)[f"smoke/{folder}/config.json"])
    if how == "wrong hash":
        crafted, members = _recrafted(manifest, members, folder, f"{RUN}-0123456789ab")
        words = ("not named after its config",)
    elif how == "not the profile's config":
        config["epochs"] = 7
        crafted, members = _recrafted(manifest, members, folder, f"{RUN}-{profiles.config_key(config)}", config)
        words = ("is not the config of run", "in profile 'smoke'")
    else:
        crafted, members = _recrafted(manifest, members, folder, f"some_run-{profiles.config_key(config)}")
        words = ("is not a run of profile",)
    before = snapshot(cache.parent)
    assert_refused(cache, before, write(cache.parent / "bundles" / "named.tar.gz", crafted, members), *words,
                   replace=True)
    shutil.rmtree(cache / "smoke")  # into an empty cache too: nothing but the staging folder, then nothing
    (cache / "smoke").mkdir()
    assert_refused(cache, snapshot(cache.parent), cache.parent / "bundles" / "named.tar.gz", *words)


@pytest.mark.parametrize("what", ["history", "history, manifest resealed", "evaluation json",
                                  "evaluation npz, manifest resealed",
                                  "complete.json, manifest resealed, beside a new run"])
def test_a_tampered_bundle_leaves_the_local_runs_byte_identical(trained, cache, what):
    manifest, members = unpack_good(trained)
    folder = manifest["runs"][0]["folder"]
    sealed = seal(manifest, members)

    def patch(pred, fn):
        return [(n, fn(b) if pred(n) else b) for n, b in members]

    if what.startswith("history"):
        members = patch(lambda n: n == f"smoke/{folder}/history.json",
                        lambda b: b.replace(b'"epoch": 2', b'"epoch": 9'))
        words = ("checksum in its bundle.json",) if "resealed" not in what else ("does not verify",)
    elif what == "evaluation json":
        members = patch(lambda n: n.startswith(f"smoke/{folder}/evaluations/") and n.endswith(".json"),
                        lambda b: b.replace(b'"device": "cpu"', b'"device": "gpu"'))
        words = ("checksum in its bundle.json",)
    elif what.startswith("evaluation npz"):
        members = patch(lambda n: n.startswith(f"smoke/{folder}/evaluations/") and n.endswith(".npz"),
                        lambda b: b[:-1] + bytes([b[-1] ^ 1]))
        words = ("does not verify",)
    else:
        shutil.rmtree(cache / "smoke" / manifest["runs"][1]["folder"])  # a run new here, and a tampered one
        members = patch(lambda n: n == f"smoke/{folder}/complete.json", lambda b: b + b" ")
        words = ("another training",)
    if "resealed" in what:
        sealed = seal(manifest, members)
    before = snapshot(cache.parent)
    assert before[f"artifacts/smoke/{folder}/{runs.WEIGHTS}"]
    assert_refused(cache, before, write(cache.parent / "bundles" / "tampered.tar.gz", sealed, members), *words)


def test_an_older_bundle_without_member_checksums_is_refused(trained, cache):
    manifest, members = unpack_good(trained)
    old = {k: v for k, v in manifest.items() if k not in ("format", "members")}
    before = snapshot(cache.parent)
    assert_refused(cache, before, write(cache.parent / "bundles" / "v1.tar.gz", old, members), "format 1")


# --------------------------------------------------------------------------- unreadable files, bad --out
@pytest.mark.parametrize("cut", [0.5, 0.9, -8])
def test_a_truncated_bundle_is_one_error(cache, capsys, cut):
    good = _good(cache).read_bytes()
    path = cache.parent / "bundles" / "truncated.tar.gz"
    path.write_bytes(good[:int(len(good) * cut)] if cut > 0 else good[:cut])
    before = snapshot(cache.parent)
    assert_refused(cache, before, path, "not a readable .tar.gz bundle")
    capsys.readouterr()
    assert cli_main(["unbundle", str(path)]) == 2
    cli_one_line(capsys, "not a readable .tar.gz bundle")


@pytest.mark.parametrize("payload", [b"not a tarball", b"", "plain tar"])
def test_a_file_that_is_not_a_gzip_bundle_is_one_error(cache, capsys, payload):
    path = cache.parent / "bundles" / "junk.tar.gz"
    if payload == "plain tar":
        with tarfile.open(path, "w") as tar:
            tar.add(cache / "smoke" / folders_of(cache)[0] / "config.json", arcname="bundle.json")
    else:
        path.write_bytes(payload)
    before = snapshot(cache.parent)
    assert_refused(cache, before, path, "not a readable .tar.gz bundle")
    capsys.readouterr()
    assert cli_main(["unbundle", str(path)]) == 2
    cli_one_line(capsys, "not a readable .tar.gz bundle")


def test_bundle_out_must_be_a_file_outside_the_run_folders(cache, capsys):
    folder = cache.parent / "bundles"
    before = snapshot(cache.parent)
    assert cli_main(["bundle", "--profile", "smoke", "--out", str(folder)]) == 2
    cli_one_line(capsys, "is a folder")
    run_folder = cache / "smoke" / folders_of(cache)[0]
    for out in (run_folder / "b.tar.gz", cache / "smoke" / "b.tar.gz", run_folder):
        assert cli_main(["bundle", "--profile", "smoke", "--out", str(out)]) == 2
        cli_one_line(capsys)
    assert snapshot(cache.parent) == before
    assert cli_main(["bundle", "--profile", "smoke", "--out", str(cache / "b.tar.gz")]) == 0


def test_bundle_refuses_to_overwrite_another_training(smoke_cache, tmp_path):
    bundle.create(profiles.load("smoke"), tmp_path / "b.tar.gz")
    folder = runs.path_of(profiles.load("smoke").run("vgg13_standard"))
    manifest = store.read_json(folder / "complete.json")  # another training of the same config: valid, resealed
    store.atomic_write_json(folder / "complete.json", store.sealed({**manifest, "finished": "x" + manifest["finished"]}))
    assert runs.inspect(folder).state == runs.COMPLETE
    with pytest.raises(bundle.BundleError, match="another training"):
        bundle.extract(tmp_path / "b.tar.gz")
    assert store.read_json(folder / "complete.json")["finished"].startswith("x")  # left as it was
    bundle.extract(tmp_path / "b.tar.gz", replace=True)
    assert runs.inspect(folder).state == runs.NO_WEIGHTS
    assert store.read_json(folder / "complete.json") == manifest
