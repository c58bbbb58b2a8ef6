"""Profiles: every key type-checked, unknown sections and TOML errors named with the file; frozen
run configs whose keys (the cache folders' names) are those the old dict configs hashed to."""
import dataclasses
import json
from pathlib import Path

import pytest

from cckl_core import profiles
from conftest import tiny_run

GOOD = """{top}
description = "a test profile"
[defaults]
dataset = "synthetic"
n_train = 64
n_test = 32
epochs = 2
milestones = [1]
lr = 0.05
{defaults}
[runs.a]
model = "resnet20"
objective = "standard"
{run}
[runs.b]
model = "resnet20"
objective = "trades"
[runs.c]
model = "vgg13"
objective = "pgd_at"
[runs.d]
model = "vgg13"
objective = "trades"
[runs.e]
model = "resnet32"
objective = "trades"
[roles]
fig2_standard = "a"
fig6_cifar10 = "a"
fig6_cifar100 = "a"
fig3_standard = "a"
fig3_pgd_at = "a"
fig3_trades = "a"
fig8_standard = "a"
fig8_pgd_at = "a"
fig8_trades = "a"
fig9_robust = "a"
table2 = "a"
table1 = ["a", "b", "c", "d", "e"]
fig5 = ["b", "e"]
[evaluation]
n_pairs = 8
{evaluation}
{extra}
"""


def _write(tmp_path, defaults="", run="", evaluation="", extra="", top="", text=None):
    path = tmp_path / "mine.toml"
    path.write_text(text if text is not None else GOOD.format(defaults=defaults, run=run, evaluation=evaluation,
                                                              extra=extra, top=top))
    return path


def test_a_good_profile_parses(tmp_path):
    prof = profiles.parse(_write(tmp_path))
    assert prof.name == "mine" and prof.runs["a"].lr == 0.05 and prof.seeds == (0,)
    assert prof.evaluation.n_pairs == 8 and prof.evaluation.pgd_steps == 20  # default filled in
    assert prof.run("a", seed=3).seed == 3 and prof.runs["a"].seed == 0
    cfg = prof.run("a")
    assert (cfg.name, cfg.profile, cfg.folder) == ("a", "mine", f"a-{cfg.key}")
    assert cfg.milestones == (1,) and cfg.as_dict()["milestones"] == [1]
    assert "name" not in cfg.as_dict() and "profile" not in cfg.as_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3
    assert [c.seed for c in prof.configs(["a"], [0, 4])] == [0, 4]


def test_roles_are_optional(tmp_path):
    """A profile may give roles to some notebooks only (the gpu profile: table1, fig5, table2)."""
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="")
    roles = text[text.index("[roles]"):text.index("[evaluation]")]
    prof = profiles.parse(_write(tmp_path, text=text.replace(roles, '[roles]\ntable2 = "a"\n')))
    assert dict(prof.roles) == {"table2": "a"} and prof.roles_of("a") == ["table2"]
    assert prof.has_roles(["table2"]) and not prof.has_roles(["fig5"])
    with pytest.raises(profiles.ProfileError, match="gives no run the role 'fig5'"):
        prof.role("fig5")
    gpu = profiles.load("gpu")
    assert set(gpu.roles) == {"table1", "fig5", "table2"}


def test_fractional_milestones_are_kept(tmp_path):
    prof = profiles.parse(_write(tmp_path, run="milestones = [0.5, 1, 1.25]"))
    assert prof.runs["a"].milestones == (0.5, 1, 1.25)


def test_keys_are_the_old_config_hashes():
    """The key of a run (its cache folder's name) is the hash the old dict configs had: a cache
    trained before the frozen configs is still found. Values computed with `runs.config_hash` of the dict
    configs, before the frozen configs replaced them."""
    smoke = profiles.load("smoke")
    assert smoke.run("vgg13_standard").key == "03688ddaa3a4"
    assert smoke.run("vgg13_standard", seed=1).key == "3caf8180fcbe"
    assert smoke.run("resnet20_trades").key == "14ba8a1d46f9"
    cfg = smoke.run("resnet20_trades")
    assert cfg.key == profiles.config_key(cfg.as_dict())
    assert dataclasses.replace(cfg, optional=True).key == cfg.key  # where it may be skipped is not what it is
    assert dataclasses.replace(cfg, epochs=3).key != cfg.key
    assert cfg.with_seed(None) is cfg and cfg.with_seed(2) == smoke.run("resnet20_trades", 2)


def test_run_config_checks_a_custom_config():
    cfg = profiles.run_config("tiny", "test", {"model": "resnet20", "objective": "standard", "lr": 0.1, "epochs": 2,
                                               "milestones": [1]})
    assert cfg.dataset == profiles.RUN_KEYS["dataset"] and cfg.batch_size == profiles.RUN_KEYS["batch_size"]
    for bad, words in ((dict(lr=None), "lr must be set"), (dict(colour=1), "unknown keys"),
                       (dict(epochs=2, milestones=[2]), "not before the last epoch")):
        with pytest.raises(ValueError, match=words):
            profiles.run_config("tiny", "test", {"model": "resnet20", "objective": "standard", "lr": 0.1, **bad})


@pytest.mark.parametrize("run, key, words", [
    ('batch_norm = "no"', "batch_norm", "True, False or None"),
    ("lr = true", "lr", "must be a number"),
    ('lr = "0.1"', "lr", "must be a number"),
    ("lr = -0.1", "lr", "must be positive"),
    ('epochs = "10"', "epochs", "positive integer, got '10' (str); pass epochs=10, not a string"),
    ("epochs = 2.5", "epochs", "positive integer"),
    ("epochs = 0", "epochs", "positive integer"),
    ("milestones = 80", "milestones", "must be a list"),
    ("milestones = [1, 0.5]", "milestones", "increasing"),
    ("milestones = [2]", "milestone", "not before the last epoch"),
    ("milestones = [0]", "milestones", "must be positive"),
    ('milestones = ["1"]', "milestones", "must be a number"),
    ("seed = 1.5", "seed", "an integer"),
    ("seed = 4294967296", "seed", "<= 4294967295"),
    ("seed = -1", "seed", ">= 0"),
    ("width = 0", "width", "must be positive"),
    ("eps = 8", "eps", "[0, 1]"),
    ("momentum = 1.5", "momentum", "[0, 1]"),
    ('precision = "fp16"', "precision", "fp32, bf16"),
    ("augment = 1", "augment", "True or False"),
    ("batch_size = 0", "batch_size", "positive integer"),
    ("robust_n = 2.0", "robust_n", "positive integer"),
    ("step = 0", "step", "must be in (0, 1]"),
    ("lr = inf", "lr", "must be finite and positive"),
    ("learning_rate = 0.1", "learning_rate", "unknown keys"),
    ("batch_norm = false", "batch_norm", "always has BatchNorm"),
])
def test_bad_run_setting_names_key_and_file(tmp_path, run, key, words):
    path = _write(tmp_path, run=run)
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse(path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and words in msg


@pytest.mark.parametrize("kwargs, words", [
    (dict(extra="[trainig]\nx = 1"), "unknown section"),
    (dict(top="seeds = 0"), "seeds must be a non-empty list"),
    (dict(top='seeds = [0, "1"]'), "seeds must be an integer"),
    (dict(top="seeds = [0, -1]"), "seeds must be >= 0"),
    (dict(top="seeds = [1, 1]"), "duplicates"),
    (dict(evaluation="n_eval = 1.5"), "evaluation.n_eval"),
    (dict(evaluation='autoattack = "yes"'), "evaluation.autoattack"),
    (dict(evaluation="n_pair = 3"), "unknown keys"),
    (dict(defaults="colour = 1"), "[defaults] has unknown keys"),
])
def test_bad_profile_structure(tmp_path, kwargs, words):
    path = _write(tmp_path, **kwargs)
    with pytest.raises(profiles.ProfileError, match=None) as err:
        profiles.parse(path)
    assert words in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("old, new, words", [
    ('model = "resnet20"', 'model = "vgg99"', "unknown model 'vgg99'; use one of resnet20, "),
    ('model = "resnet20"', "model = 13", "model must be a string, got 13 (int)"),
    ('objective = "standard"', 'objective = "mixup"', "unknown objective 'mixup'; use one of standard, pgd_at, trades"),
])
def test_bad_model_or_objective(tmp_path, old, new, words):
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="").replace(old, new)
    path = _write(tmp_path, text=text)
    with pytest.raises(profiles.ProfileError, match=None) as err:
        profiles.parse(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_role_naming_a_missing_run(tmp_path):
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="").replace('table2 = "a"', 'table2 = "z"')
    with pytest.raises(profiles.ProfileError, match="role 'table2' names run 'z'"):
        profiles.parse(_write(tmp_path, text=text))


def test_role_naming_a_run_twice(tmp_path):
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="").replace('fig5 = ["b", "e"]', 'fig5 = ["b", "b"]')
    with pytest.raises(profiles.ProfileError, match="role 'fig5' names the same run twice"):
        profiles.parse(_write(tmp_path, text=text))


def test_toml_syntax_error_names_the_file(tmp_path):
    path = _write(tmp_path, text="[defaults\nlr = 0.1\n")
    with pytest.raises(profiles.ProfileError, match="TOML syntax error") as err:
        profiles.parse(path)
    assert str(path) in str(err.value)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(profiles.ProfileError, match="valid profiles: paper, gpu, quick, smoke"):
        profiles.load("nope")


@pytest.mark.parametrize("name", profiles.names())
def test_shipped_profiles_are_valid(name):
    from cckl_core import models
    prof = profiles.load(name)
    assert prof.runs and prof.seeds and prof.evaluation.pgd_steps >= 1
    assert profiles.load(name) is prof  # parsed once
    built = set()
    for cfg in prof.runs.values():  # every run's model can be built as configured
        assert all(m < cfg.epochs for m in cfg.milestones)
        key = (cfg.model, cfg.width, cfg.batch_norm, cfg.dataset)
        if key not in built:
            built.add(key)
            assert models.of_run(cfg) is not None


SIZING = """[sizing]
device = "one test card"
margin = 1.5
overhead_s = 30
[sizing.runs]
a = [10, 5]
b = [20, 1]
"""


def test_sizing_sums_what_each_run_was_sized_to_take(tmp_path):
    sz = profiles.parse(_write(tmp_path, extra=SIZING)).sizing
    assert sz.device == "one test card" and dict(sz.runs) == {"a": (10.0, 5.0), "b": (20.0, 1.0)}
    assert sz.compute_s() == 36 and sz.expected_s() == 66 and sz.with_margin_s() == 1.5 * 36 + 30
    assert profiles.parse(_write(tmp_path)).sizing is None


@pytest.mark.parametrize("old, new, words", [
    ("a = [10, 5]", "z = [10, 5]", "sizing.runs names run 'z', which the profile does not define"),
    ("a = [10, 5]", "a = 15", "sizing.runs.a must be [training seconds, evaluation seconds]"),
    ("a = [10, 5]", "a = [10, -5]", "sizing.runs.a must be in [0, 1e+09]"),
    ("margin = 1.5", "margin = 0.5", "sizing.margin must be in [1, 100]"),
    ("a = [10, 5]", "a = [1e308, 1e308]", "sizing.runs.a must be in [0, 1e+09]"),  # the sums would overflow
    ("overhead_s = 30", "overhead_s = 1.7e308", "sizing.overhead_s must be in [0, 1e+09]"),
    ("margin = 1.5", "margin = 1e308", "sizing.margin must be in [1, 100]"),
    ('device = "one test card"', 'device = ""', "sizing.device must name the device"),
    ("overhead_s = 30", "overheads = 30", "[sizing] has unknown keys ['overheads']"),
])
def test_bad_sizing_is_one_line_naming_the_key(tmp_path, old, new, words):
    path = _write(tmp_path, extra=SIZING.replace(old, new))
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_the_gpu_profile_is_sized_run_by_run_to_fit_one_device_command():
    """Every gpu run is sized; the comment's arithmetic (training 175 s, evaluations 114 s, start-up 30 s)
    is what the [sizing] section adds up to, and with its margin the profile fits the 540 s that
    scripts/offline_gpu_node.sh gives it inside one 10-minute command."""
    prof = profiles.load("gpu")
    sz = prof.sizing
    assert set(sz.runs) == set(prof.runs)
    assert sum(t for t, _ in sz.runs.values()) == 175 and sum(e for _, e in sz.runs.values()) == 114
    assert sz.expected_s() == 319 and sz.with_margin_s() == 1.5 * 289 + 30 <= 540
    text = prof.path.read_text()
    assert "319 s = 5.3 min" in text and "464 s = 7.7 min" in text
    assert profiles.rehearsal(prof).sizing is None


def test_a_run_may_train_its_own_seeds(tmp_path):
    prof = profiles.parse(_write(tmp_path, run="seeds = [0, 1, 2]"))
    assert prof.seeds_of("a") == (0, 1, 2) and prof.seeds_of("b") == (0,)
    assert [(c.name, c.seed) for c in prof.configs(["a", "b"])] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert [c.seed for c in prof.configs(["a"], [5])] == [5]  # an explicit selection wins
    assert prof.runs["a"].seed == 0 and "seeds" not in prof.runs["a"].as_dict()  # not part of the run's key
    for bad, words in (("seeds = [1, 2]", "must start with the profile's first seed 0"), ("seeds = [0, 0]", "duplicates"),
                       ("seeds = []", "non-empty list"), ('seeds = ["0"]', "seeds must be an integer")):
        with pytest.raises(profiles.ProfileError, match=words):
            profiles.parse(_write(tmp_path, run=bad))


def test_quick_trains_the_seeds_its_verdicts_use():
    quick = profiles.load("quick")
    for name in ("vgg13_standard", "vgg13_pgd_at", "vgg13_trades"):
        assert quick.seeds_of(name) == (0, 1, 2)
    assert all(quick.seeds_of(n) == (0,) for n in quick.runs if not n.startswith("vgg13_"))


# --------------------------------------------------------------------------- names that become paths
@pytest.mark.parametrize("name", ["../../x", "", "a/b", ".hidden", "-dash", "a b", "x" * 101, "é"])
def test_a_run_name_that_is_not_path_safe_is_refused(tmp_path, name):
    """A run's name becomes its folder (artifacts/<profile>/<name>-<key>/): `../../x` would train outside
    the artifacts root, `""` could never be selected; both, and every other unsafe name, are one line."""
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="").replace("[runs.e]", f"[runs.{_quoted(name)}]")
    text = text.replace('table1 = ["a", "b", "c", "d", "e"]', f'table1 = ["a", "b", "c", "d", {_quoted(name)}]')
    text = text.replace('fig5 = ["b", "e"]', f'fig5 = ["b", {_quoted(name)}]')
    path = _write(tmp_path, text=text)
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse(path)
    assert "cannot be used as a file or folder name" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(profiles.ProfileError, match="cannot be used as a file or folder name"):
        profiles.run_config(name, "smoke", {"model": "resnet20", "objective": "standard", "lr": 0.1})


def _quoted(name: str) -> str:
    import json
    return json.dumps(name)


def test_the_bundle_and_the_profiles_share_one_safe_name_rule():
    from cckl_core import bundle
    assert profiles.SAFE_NAME in bundle._FOLDER.pattern


def test_a_profile_file_named_like_a_rehearsal_is_refused_not_shadowed(monkeypatch, tmp_path):
    """`quick-rehearsal.toml` would be silently shadowed by the rehearsal derived from `quick`: it is not
    listed as a profile, and asking for it says why."""
    import shutil
    folder = tmp_path / "profiles"
    shutil.copytree(profiles._DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "quick-rehearsal.toml").write_text((folder / "smoke.toml").read_text())
    (folder / "my profile.toml").write_text((folder / "smoke.toml").read_text())
    monkeypatch.setattr(profiles, "_DIR", folder)
    assert "quick-rehearsal" not in profiles.names() and "my profile" not in profiles.names()
    with pytest.raises(profiles.ProfileError, match="ends with '-rehearsal'.*rename the file"):
        profiles.load("quick-rehearsal")
    with pytest.raises(profiles.ProfileError, match="not a safe folder name"):
        profiles.check_name("my profile")


# --------------------------------------------------------------------------- seeds and [seed_spread]
@pytest.mark.parametrize("top, defaults, run", [
    ("seeds = [1, 2]", "seed = 0", ""),       # [defaults] seed disagrees with the seeds list
    ("seeds = [0, 1]", "", "seed = 3"),       # one run's seed disagrees
    ("", "", "seed = 3"),                     # no list: run a's seed 3 against the others' 0
])
def test_the_default_seed_and_the_seeds_list_must_agree(tmp_path, top, defaults, run):
    """`train` without --seed trains a run's `seed`; `make paper` trains the profile's seeds: they must
    agree, or the README's "the first is the default" would not hold."""
    path = _write(tmp_path, top=top, defaults=defaults, run=run)
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse(path)
    assert "default training seed" in str(err.value) and str(path) in str(err.value)


def test_a_seeds_list_gives_every_run_its_first_seed_as_the_default(tmp_path):
    prof = profiles.parse(_write(tmp_path, top="seeds = [4, 5]"))
    assert prof.seeds == (4, 5) and all(cfg.seed == 4 for cfg in prof.runs.values())
    assert prof.run("a").seed == 4 and [c.seed for c in prof.configs(["a"])] == [4, 5]
    same = profiles.parse(_write(tmp_path, top="seeds = [0, 1]"))
    assert same.runs["a"].key == profiles.parse(_write(tmp_path)).runs["a"].key  # seed 0: the keys stay


SPREAD = """[seed_spread]
how = "test"
seeds = [0, 1, 2]
[seed_spread.sd]
table1_half_vs_pure_clean = 1.5
"""


@pytest.mark.parametrize("old, new, words", [
    ("table1_half_vs_pure_clean = 1.5", "table1_half_vs_pure_clena = 1.5", "does not declare"),
    ("seeds = [0, 1, 2]", "seeds = [0, 1, 1]", "seed_spread.seeds has duplicates"),
])
def test_bad_seed_spread_is_one_line_naming_the_key(tmp_path, old, new, words):
    assert profiles.parse(_write(tmp_path, extra=SPREAD)).spread.sd == {"table1_half_vs_pure_clean": 1.5}
    path = _write(tmp_path, extra=SPREAD.replace(old, new))
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_a_config_made_by_hand_cannot_name_a_folder_outside_the_root(tmp_path, monkeypatch):
    from cckl_core import runs
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    cfg = profiles.load("smoke").run("vgg13_standard")
    assert runs.path_of(cfg).parent.parent == tmp_path / "artifacts"
    for bad in (dict(name="../../x"), dict(name=""), dict(profile="../elsewhere")):
        with pytest.raises(profiles.ProfileError, match="cannot be used as a file or folder name"):
            runs.path_of(dataclasses.replace(cfg, **bad))


# --------------------------------------------------------------------------- one check, one comparison
def test_a_config_is_checked_however_it_is_made():
    """RunConfig checks its fields itself: a config from a file, from dataclasses.replace (what the rehearsal and
    with_seed do) or by hand is refused the same way, with the words of cckl_core.checks."""
    cfg = profiles.load("smoke").run("vgg13_standard")
    for bad, words in ((dict(lr=0), "lr must be positive, got 0"), (dict(epochs=1.5), "epochs must be a positive integer"),
                       (dict(seed=-1), "seed must be >= 0"), (dict(augment="no"), "augment must be True or False"),
                       (dict(objective="mixup"), "unknown objective 'mixup'")):
        with pytest.raises(profiles.ProfileError, match=f"run 'vgg13_standard' of profile 'smoke': {words}"):
            dataclasses.replace(cfg, **bad)
    with pytest.raises(profiles.ProfileError, match=r"seed must be <= 4294967295"):
        cfg.with_seed(2 ** 32)
    assert dataclasses.replace(cfg, lr=1).lr == 1.0 and isinstance(dataclasses.replace(cfg, lr=1).lr, float)
    with pytest.raises(profiles.ProfileError, match="evaluation.n_pairs must be a positive integer"):
        dataclasses.replace(profiles.load("smoke").evaluation, n_pairs=0)


def test_the_rehearsal_is_checked_like_any_profile(monkeypatch):
    smoke = profiles.load("smoke")
    rehearsal = profiles.rehearsal(smoke)
    assert all(c.profile == "smoke-rehearsal" and c.epochs == 1 for c in rehearsal.select())
    tight = dataclasses.replace(smoke, runs={n: dataclasses.replace(c, epochs=2, milestones=(1.5,))
                                             for n, c in smoke.runs.items()})
    assert profiles.rehearsal(tight).select()  # its one epoch takes the milestone 0.5, not the run's 1.5
    monkeypatch.setattr(profiles, "REHEARSAL", "/rehearsal")  # a rehearsal name that cannot name a folder
    with pytest.raises(profiles.ProfileError, match="cannot be used as a file or folder name"):
        profiles.rehearsal(smoke)


def test_check_seed_is_the_one_bound():
    assert profiles.check_seed(0) == 0 and profiles.check_seed(profiles.MAX_SEED) == 2 ** 32 - 1
    for bad, words in ((-1, "seed must be >= 0, got -1"), (2 ** 32, "seed must be <= 4294967295"),
                       (1.0, "seed must be an integer"), (True, "seed must be an integer"), ("1", "not a string")):
        with pytest.raises(ValueError, match=words):
            profiles.check_seed(bad)


def test_differences_name_each_setting_that_differs():
    """The one comparison of a stored config (JSON, as read) with the profile's: runs.inspect and the bundle use it."""
    import json
    cfg = profiles.load("smoke").run("vgg13_standard")
    stored = json.loads(json.dumps(cfg.as_dict()))
    assert cfg.differences(stored) == []
    assert cfg.differences({**stored, "lr": stored["lr"] * 2}) == [f"lr: {stored['lr'] * 2!r}, not {stored['lr']!r}"]
    assert cfg.differences({**stored, "colour": 1}) == ["colour: 1, not 'missing'"]
    missing = {k: v for k, v in stored.items() if k != "optional"}
    assert cfg.differences(missing) == ["optional: 'missing', not False"]
    assert cfg.differences([1]) == ["not a table of settings but list"]


def test_a_test_split_too_small_for_the_fixed_subsets_is_one_line():
    cfg = profiles.run_config("tiny", "test", {"model": "resnet20", "objective": "standard", "lr": 0.1, "n_test": 0,
                                               "fisher_n": 8, "robust_n": 16})
    cfg.check_fits_test_set(16)
    with pytest.raises(ValueError, match=r"robust_n=16 is more than the run's test set \(10 images; n_test=0\)"):
        cfg.check_fits_test_set(10)


# --------------------------------------------------------------------------- settings that cannot mean what they say
def test_a_milestone_at_or_beyond_the_last_epoch_is_refused():
    for m in ("[2]", "[5]", "[0]"):
        with pytest.raises(profiles.ProfileError, match="milestone"):
            tiny_run("r", epochs=2, milestones=json.loads(m))
    assert tiny_run("r", epochs=1, milestones=[0.5]).milestones == (0.5,)


def test_the_same_run_twice_in_one_role_is_refused(tmp_path):
    text = Path(profiles.__file__).with_name("smoke.toml").read_text().replace(
        'fig5 = ["resnet20_trades", "t1_resnet32_standin"]', 'fig5 = ["resnet20_trades", "resnet20_trades"]')
    path = tmp_path / "twice.toml"
    path.write_text(text)
    with pytest.raises(profiles.ProfileError, match="names the same run twice"):
        profiles.parse(path)


@pytest.mark.parametrize("bad, message", [
    (dict(model="vgg99"), "unknown model"),
    (dict(objective="mixup"), "unknown objective"),
    (dict(eps=2.0), "eps must be in"),
    (dict(eps=-0.1), "eps must be in"),
    (dict(attack_steps=0), "attack_steps must be"),
    (dict(lr=0), "lr must be positive"),
    (dict(milestones=[3]), "not before the last epoch"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(profiles.ProfileError, match=message):
        tiny_run("bad", **bad)


def test_profiles_load_and_reject_unknown():
    for name in profiles.names():
        prof = profiles.load(name)
        assert prof.runs and prof.roles
    with pytest.raises(ValueError, match="valid profiles"):
        profiles.load("nope")


def test_an_empty_profile_variable_is_a_mistake(monkeypatch):
    monkeypatch.setenv("CCKL_PROFILE", "")
    with pytest.raises(profiles.ProfileError, match="CCKL_PROFILE is set but empty"):
        profiles.default_to_compute()


def test_an_unknown_profile_from_the_environment_names_its_variable(monkeypatch):
    monkeypatch.setenv("CCKL_PROFILE", "quik")
    with pytest.raises(profiles.ProfileError, match=r"from \$CCKL_PROFILE"):
        profiles.default_to_compute()


def test_select_checks_the_choice_against_the_profile():
    """Profile.select: every run and seed by default; names and seeds in the order given; a repeat, an empty
    choice, a seed out of bounds or a run the profile lacks is one ProfileError."""
    smoke = profiles.load("smoke")
    assert smoke.select() == smoke.configs()
    assert [(c.name, c.seed) for c in smoke.select(["vgg13_trades"], [2, 1])] == [("vgg13_trades", 2), ("vgg13_trades", 1)]
    for names, seeds, words in ((["vgg13_trades", "vgg13_trades"], None, "given twice"), (None, [1, 1], "seed 1 given"),
                                ([], None, "no runs given"), (None, [-1], "seed must be >= 0"),
                                (None, [2 ** 32], "seed must be <= 4294967295"), (["nope"], None, "has no run 'nope'")):
        with pytest.raises(profiles.ProfileError, match=words):
            smoke.select(names, seeds)
