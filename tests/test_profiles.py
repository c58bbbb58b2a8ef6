"""Profiles: every key type-checked, unknown sections and TOML errors named with the file."""
import pytest

from cckl_core import profiles

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
table1 = ["a", "a", "a", "a", "a"]
fig5 = ["a", "a"]
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
    assert prof.name == "mine" and prof.runs["a"]["lr"] == 0.05 and prof.seeds == [0]
    assert prof.evaluation["n_pairs"] == 8 and prof.evaluation["pgd_steps"] == 20  # default filled in
    assert prof.run("a", seed=3)["seed"] == 3 and prof.runs["a"]["seed"] == 0


@pytest.mark.parametrize("run, key, words", [
    ('batch_norm = "no"', "batch_norm", "true or false"),
    ("lr = true", "lr", "must be a number"),
    ('lr = "0.1"', "lr", "must be a number"),
    ("lr = -0.1", "lr", "must be positive"),
    ('epochs = "10"', "epochs", "whole number"),
    ("epochs = 2.5", "epochs", "whole number"),
    ("epochs = 0", "epochs", ">= 1"),
    ("milestones = 80", "milestones", "must be a list"),
    ("milestones = [2, 1]", "milestones", "increasing"),
    ("milestones = [1.5]", "milestones", "whole number"),
    ("seed = 1.5", "seed", "whole number"),
    ("seed = -1", "seed", ">= 0"),
    ("width = 0", "width", "must be positive"),
    ("eps = 8", "eps", "[0, 1]"),
    ("momentum = 1.5", "momentum", "[0, 1]"),
    ('precision = "fp16"', "precision", "fp32, bf16"),
    ("augment = 1", "augment", "true or false"),
    ("batch_size = 0", "batch_size", ">= 1"),
    ("robust_n = 2.0", "robust_n", "whole number"),
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
    (dict(top='seeds = [0, "1"]'), "whole number"),
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
    ('model = "resnet20"', 'model = "vgg99"', "unknown model 'vgg99'; valid:"),
    ('model = "resnet20"', "model = 13", "model must be a model name"),
    ('objective = "standard"', 'objective = "mixup"', "unknown objective 'mixup'; valid: standard, pgd_at, trades"),
])
def test_bad_model_or_objective(tmp_path, old, new, words):
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="").replace(old, new)
    path = _write(tmp_path, text=text)
    with pytest.raises(profiles.ProfileError, match=None) as err:
        profiles.parse(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_role_naming_a_missing_run(tmp_path):
    text = GOOD.format(defaults="", run="", evaluation="", extra="", top="").replace('table2 = "a"', 'table2 = "b"')
    with pytest.raises(profiles.ProfileError, match="role 'table2' names run 'b'"):
        profiles.parse(_write(tmp_path, text=text))


def test_toml_syntax_error_names_the_file(tmp_path):
    path = _write(tmp_path, text="[defaults\nlr = 0.1\n")
    with pytest.raises(profiles.ProfileError, match="TOML syntax error") as err:
        profiles.parse(path)
    assert str(path) in str(err.value)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(profiles.ProfileError, match="valid profiles: gpu, paper, quick, smoke"):
        profiles.load("nope")


@pytest.mark.parametrize("name", profiles.names())
def test_shipped_profiles_are_valid(name):
    from cckl_core import runs
    prof = profiles.load(name)
    assert prof.runs and prof.seeds and prof.evaluation["pgd_steps"] >= 1
    built = set()
    for cfg in prof.runs.values():  # every run's model can be built as configured
        key = (cfg["model"], cfg["width"], cfg["batch_norm"], cfg["dataset"])
        if key not in built:
            built.add(key)
            assert runs.build_model(cfg) is not None
