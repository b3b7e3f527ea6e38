from pathlib import Path

import msgspec
import pytest

from bandit.config import Config, ConfigError, parse_override
from bandit.contracts.slots import SlotKind
from storage.config_file import load_config

REPO = Path(__file__).resolve().parents[2]


def test_zero_configuration_gives_every_slot_kind():
    config = load_config(environ={})
    assert {s.kind for s in config.slots.values()} == set(SlotKind)
    assert config.kafka.bootstrap_servers == "embedded"


def test_default_toml_documents_exactly_the_builtin_defaults():
    from_file = load_config(REPO / "configs" / "default.toml", environ={})
    assert msgspec.to_builtins(from_file) == msgspec.to_builtins(Config())


def test_file_then_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[serving]\nport = 9000\n[slots.artwork.exploration]\nepsilon = 0.2\n")
    config = load_config(path, ["serving.port=9001"], environ={})
    assert config.serving.port == 9001
    assert config.slots["artwork"].exploration.epsilon == 0.2
    assert config.slots["hero"].exploration.epsilon == 0.05  # untouched default


def test_environment_variable_names_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nbootstrap_servers = "k1:9092"\n')
    assert load_config(environ={"ARTBANDIT_CONFIG": str(path)}).kafka.bootstrap_servers == "k1:9092"


def test_override_values_are_toml_else_strings():
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert parse_override('a.b=["UA"]') == ("a.b", ["UA"])
    assert parse_override("a.b=127.0.0.1:9092") == ("a.b", "127.0.0.1:9092")


@pytest.mark.parametrize(
    ("override", "key", "problem"),
    [
        ("slots.artwork.exploration.epsilon=1.5", "slots.artwork.exploration.epsilon", "<= 1.0"),
        ("slots.artwork.exploration.epsilon=-0.1", "slots.artwork.exploration.epsilon", ">= 0.0"),
        ("slots.hero.holdout_fraction=2", "slots.hero.holdout_fraction", "<= 1.0"),
        ("serving.port=70000", "serving.port", "<= 65535"),
        ('serving.port="eighty"', "serving.port", "Expected `int`, got `str`"),
        ("serving.colour=1", "serving.colour", "unknown key"),
        ("nonsense=1", "nonsense", "unknown key"),
        ('slots.extra.policy="vw"', "slots.extra.kind", "missing required key"),
        ('slots.rows.kind="carousel"', "slots.rows.kind", "Invalid enum value 'carousel'"),
        ('slots.rows.interactions=["UX"]', "slots.rows.interactions[0]", "regex"),
        (
            'slots.rows.exploration.strategy="thompson"',
            "slots.rows.exploration.strategy",
            "thompson",
        ),
        ("slots.hero.vw_args=--no_such_option", "slots.hero.vw_args", "unrecognised option"),
        ("slots.hero.vw_args='unterminated", "slots.hero", "not a valid argument string"),
        ('slots.hero.vw_args="--cb_type dm -l 0.3"', "slots.hero", "set learning_rate instead"),
        ("slots.hero.learning_rate=0", "slots.hero.learning_rate", "> 0"),
        # VW builds these, but a learner of the wrong kind for the slot: caught by a probe
        ('slots.artwork.vw_args="--cb_explore 4"', "slots.artwork.vw_args", "cannot decide"),
        ('slots.artwork.vw_args="--ccb_explore_adf"', "slots.artwork.vw_args", "cannot decide"),
        ("serving=3", "serving", "is a table"),
        ("novalue", "novalue", "dotted.key=value"),
    ],
)
def test_bad_config_is_refused_naming_the_key(override, key, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override], environ={})
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[serving\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, environ={})


@pytest.mark.parametrize(
    "strategy", ["greedy", "epsilon", "softmax", "bag", "cover", "squarecb", "rnd"]
)
@pytest.mark.parametrize("slot", ["artwork", "rows"])
def test_every_exploration_strategy_is_accepted_by_vw(strategy, slot):
    config = load_config(overrides=[f'slots.{slot}.exploration.strategy="{strategy}"'], environ={})
    assert config.slots[slot].exploration.strategy == strategy


def test_low_rank_interactions_are_accepted_by_vw():
    config = load_config(overrides=['slots.artwork.lrq=["UA4"]'], environ={})
    assert config.slots["artwork"].lrq == ["UA4"]
