"""The Train page's sweeps (cae.views.train_sweep): what a sweep can vary, the values it starts with, and the runs it
makes from the page's other settings, checked as a link's values are."""

from __future__ import annotations

import dataclasses

import pytest

from cae.engine.train_config import PAGE_DEFAULTS
from cae.models.config import ConfigError
from cae.models.registry import MODEL_TYPES, type_of
from cae.views import train_link as link
from cae.views import train_sweep

DEFAULT_TYPE = link.default_type()


def page_configs(kind):
    """The page's configs for a type with every knob at its default (the page's own configs_for)."""
    return link.default_model(kind), PAGE_DEFAULTS.train


def setting(label: str, kind=DEFAULT_TYPE) -> train_sweep.SweepSetting:
    return train_sweep.sweep_settings(kind)[label]


@pytest.mark.parametrize("kind", list(MODEL_TYPES.values()), ids=list(MODEL_TYPES))
def test_every_type_offers_the_model_type_its_own_knobs_and_the_trainers_settings(kind):
    labels = list(train_sweep.sweep_settings(kind))
    assert labels[0] == "Model type"
    assert {knob.label for knob in kind.config_class.KNOBS} <= set(labels)
    assert {"Code size", "Dropout", "Tied weights", "Learning rate", "Batch size"} <= set(labels)
    assert ("Loss" in labels) == kind.network_class.USES_TRAINER_LOSS


@pytest.mark.parametrize("kind", list(MODEL_TYPES.values()), ids=list(MODEL_TYPES))
def test_each_settings_suggested_values_make_a_valid_sweep_of_the_page_defaults(kind):
    """Whatever a learner picks, pressing Start sweep at once starts runs the configs accept."""
    model_config, train_config = page_configs(kind)
    for swept in train_sweep.sweep_settings(kind).values():
        values = swept.suggested(train_sweep.current_value(swept, kind, model_config, train_config))
        assert len(values) >= 2, swept.label
        if not swept.listed:  # typed: the suggestions read back as the same values
            assert swept.parse(", ".join(map(swept.written, values))) == values
        runs = train_sweep.sweep_runs(swept, values, kind, page_configs, prefix="sweep")
        assert len({run.name for run in runs}) == len(values)


def test_a_code_size_sweep_changes_the_code_size_only():
    swept = setting("Code size")
    runs = train_sweep.sweep_runs(swept, swept.parse("2, 4,8"), DEFAULT_TYPE, page_configs, prefix="sweep 10:00")
    model_config, train_config = page_configs(DEFAULT_TYPE)
    assert [run.model_config.code_size for run in runs] == [2, 4, 8]
    assert all(dataclasses.replace(run.model_config, code_size=model_config.code_size) == model_config
               and run.train_config == train_config for run in runs)
    assert [run.name for run in runs] == ["sweep 10:00: code_size=2", "sweep 10:00: code_size=4",
                                          "sweep 10:00: code_size=8"]
    assert [run.shown for run in runs] == ["2", "4", "8"]


def test_a_trainer_setting_sweep_changes_the_train_config():
    swept = setting("Learning rate")
    runs = train_sweep.sweep_runs(swept, [1e-3, 1e-2], DEFAULT_TYPE, page_configs, prefix="s")
    assert [run.train_config.learning_rate for run in runs] == [1e-3, 1e-2]
    assert all(run.model_config == page_configs(DEFAULT_TYPE)[0] for run in runs)


def test_a_model_type_sweep_makes_each_types_own_config():
    swept = setting("Model type")
    runs = train_sweep.sweep_runs(swept, list(MODEL_TYPES), DEFAULT_TYPE, page_configs, prefix="s")
    assert [type_of(run.model_config) for run in runs] == list(MODEL_TYPES.values())
    assert [run.shown for run in runs] == [kind.title for kind in MODEL_TYPES.values()]


def test_the_learning_rate_starts_spread_around_the_pages_value():
    swept = setting("Learning rate")
    suggested = swept.suggested(PAGE_DEFAULTS.train.learning_rate)
    assert PAGE_DEFAULTS.train.learning_rate in suggested and len(suggested) == 3
    assert suggested == sorted(suggested) and suggested[-1] / suggested[0] >= 10


@pytest.mark.parametrize(("text", "reason"), [("2, x", "code size 'x' is not a number"),
                                              ("2, 2.5", "code size '2.5' is not a whole number"),
                                              ("2, 4, 2", "code size '2' is listed twice"),
                                              ("2, 100000", "code size '100000' is outside")])
def test_a_bad_typed_value_is_named(text, reason):
    with pytest.raises(ValueError, match=reason):
        setting("Code size").parse(text)


def test_too_few_or_too_many_values_are_refused():
    swept = setting("Random seed")
    with pytest.raises(ConfigError, match="at least two"):
        train_sweep.sweep_runs(swept, [1], DEFAULT_TYPE, page_configs, prefix="s")
    with pytest.raises(ConfigError, match=f"at most {train_sweep.MOST_RUNS}"):
        train_sweep.sweep_runs(swept, list(range(train_sweep.MOST_RUNS + 1)), DEFAULT_TYPE, page_configs, prefix="s")


def test_a_value_the_config_refuses_beside_the_other_settings_is_named():
    """The configs' own check runs on every run of the sweep, after the page's ranges: here the other settings
    themselves are refused (a page's configs never are), and the sentence names the swept value it was checking."""
    def refused(kind):
        model_config, _ = page_configs(kind)
        return model_config, dataclasses.replace(PAGE_DEFAULTS.train, epochs=0)

    with pytest.raises(ConfigError, match="batch size 16 does not go with the other settings: epochs"):
        train_sweep.sweep_runs(setting("Batch size"), [16, 64], DEFAULT_TYPE, refused, prefix="s")
