"""The Train page's settings as query parameters (cae.views.train_link): every setting of every registered model
type goes into an address and comes back; the defaults write nothing; each kind of bad value gives its default and
one sentence; keys the module does not own (the workspace `w` among them) are left alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cae.engine.train_config import PAGE_DEFAULTS, TrainConfig
from cae.models.autoencoder import ModelConfig
from cae.models.config import ConfigError
from cae.models.registry import MODEL_TYPES
from cae.views import train_link as link
from cae.views.train_link import Setting, decode, encode

TYPES = list(MODEL_TYPES.values())
TYPE_IDS = list(MODEL_TYPES)


def other_value(setting: Setting, default):
    """A value the page offers for this setting that is not its default."""
    if setting.choices:
        return next(choice for choice in reversed(setting.choices) if choice != default)
    if setting.kind is bool:
        return not default
    value = setting.high if default != setting.high else setting.low
    return setting.kind(value)


def every_setting_changed(kind):
    """A config of this type and a TrainConfig with every setting the page offers away from its default."""
    model_defaults = link.default_model(kind)
    model = replace(model_defaults, **{setting.field: other_value(setting, getattr(model_defaults, setting.field))
                                       for setting in link.type_settings(kind)})
    train = replace(PAGE_DEFAULTS.train, **{setting.field: other_value(setting, getattr(PAGE_DEFAULTS.train,
                                                                                         setting.field))
                                            for setting in link.train_settings(kind)})
    return model.validate(), train.validate()


@pytest.mark.parametrize("kind", TYPES, ids=TYPE_IDS)
def test_every_setting_of_every_type_goes_into_the_address_and_comes_back(kind):
    model, train = every_setting_changed(kind)
    params = encode(model, train)
    settings = link.type_settings(kind) + link.train_settings(kind)
    assert set(params) - {link.TYPE_PARAM} == {setting.param for setting in settings}  # one each, nothing else
    assert (link.TYPE_PARAM in params) == (kind is not link.default_type())
    assert all(isinstance(text, str) and text for text in params.values())
    decoded = decode(params)
    assert decoded.problems == ()
    assert decoded.kind is kind
    assert decoded.model == model and decoded.train == train


@pytest.mark.parametrize("kind", TYPES, ids=TYPE_IDS)
def test_a_link_that_spells_out_every_setting_at_its_default_gives_the_defaults(kind):
    model_defaults = link.default_model(kind)
    params = {link.TYPE_PARAM: kind.name}
    params.update({setting.param: setting.written(getattr(model_defaults, setting.field))
                   for setting in link.type_settings(kind)})
    params.update({setting.param: setting.written(getattr(PAGE_DEFAULTS.train, setting.field))
                   for setting in link.train_settings(kind)})
    decoded = decode(params)
    assert decoded.problems == ()
    assert decoded.model == model_defaults and decoded.train == PAGE_DEFAULTS.train


def test_the_page_defaults_give_no_parameters_and_a_bare_address_gives_the_defaults():
    assert encode(PAGE_DEFAULTS.model, PAGE_DEFAULTS.train) == {}
    decoded = decode({})
    assert decoded.model == PAGE_DEFAULTS.model and decoded.train == PAGE_DEFAULTS.train and decoded.problems == ()


@pytest.mark.parametrize("kind", TYPES, ids=TYPE_IDS)
def test_another_type_at_its_defaults_writes_only_its_type(kind):
    expected = {} if kind is link.default_type() else {link.TYPE_PARAM: kind.name}
    assert encode(link.default_model(kind), PAGE_DEFAULTS.train) == expected


def test_a_sliders_float_is_written_as_people_read_it_and_reads_back_the_same():
    model = replace(PAGE_DEFAULTS.model, dropout=0.1 + 0.2)  # 0.30000000000000004, as step arithmetic gives
    params = encode(model, PAGE_DEFAULTS.train)
    assert params == {"dropout": "0.3"}
    assert encode(decode(params).model, PAGE_DEFAULTS.train) == params  # the address settles: no endless rewrites


@pytest.mark.parametrize("kind", TYPES, ids=TYPE_IDS)
def test_each_types_parameters_are_distinct_and_none_is_the_workspace(kind):
    params = [setting.param for setting in link.type_settings(kind) + link.train_settings(kind)]
    assert len(params) == len(set(params)) and link.TYPE_PARAM not in params
    assert "w" not in link.setting_params()


def test_keys_it_does_not_own_are_ignored():
    decoded = decode({"w": "someone's workspace", "utm_source": "mail", "code": "16", "future_knob": "7"})
    assert decoded.problems == ()
    assert decoded.model == replace(PAGE_DEFAULTS.model, code_size=16) and decoded.train == PAGE_DEFAULTS.train


def test_choices_are_read_as_stored_or_as_people_read_them_in_any_case():
    decoded = decode({"opt": "SGD with momentum", "schedule": "COSINE", "loss": "Binary cross-entropy",
                      "digits": "all", "act": "ReLU", "tied": "No", "lr": "3E-4", "batch": "256"})
    assert decoded.problems == ()
    assert decoded.train == replace(PAGE_DEFAULTS.train, optimizer="sgd", schedule="cosine", loss="bce",
                                    train_subset=0, learning_rate=3e-4, batch_size=256)
    assert decoded.model.activation == "relu" and decoded.model.tied_weights is False
    assert decode({"digits": "1,000"}).train.train_subset == decode({"digits": "1000"}).train.train_subset == 1000
    for kind in TYPES:
        assert decode({link.TYPE_PARAM: kind.title.upper()}).kind is kind
        for setting in link.type_settings(kind):
            for choice, name in zip(setting.choices, setting.names or setting.choices):
                as_read = decode({link.TYPE_PARAM: kind.name, setting.param: name.upper()})
                as_stored = decode({link.TYPE_PARAM: kind.name, setting.param: str(choice)})
                assert as_read.problems == as_stored.problems == ()
                assert getattr(as_read.model, setting.field) == getattr(as_stored.model, setting.field) == choice


@pytest.mark.parametrize(("params", "field", "sentence"), [
    ({"lr": "abc"}, "learning_rate", "learning rate 'abc' is not a number: using the default 0.003"),
    ({"lr": "nan"}, "learning_rate", "learning rate 'nan' is not a number: using the default 0.003"),
    ({"lr": "0.0007"}, "learning_rate",
     "learning rate '0.0007' is not one the page offers (1e-05, 3e-05, 0.0001, 0.0003, 0.001, 0.002, 0.003, "
     "0.01, 0.03, 0.1, 0.3, 1, 3, 10): using the default 0.003"),
    ({"code": "1.5"}, "code_size", "code size '1.5' is not a whole number: using the default 32"),
    ({"code": "500"}, "code_size", "code size '500' is outside 1 to 128: using the default 32"),
    ({"code": ""}, "code_size", "code size '' is not a number: using the default 32"),
    ({"dropout": "-0.1"}, "dropout", "dropout '-0.1' is outside 0 to 0.9: using the default 0"),
    ({"epochs": "0"}, "epochs", "epochs '0' is outside 1 to 50: using the default 4"),
    ({"batch": "100"}, "batch_size",
     "batch size '100' is not one the page offers (16, 32, 64, 128, 256, 512): using the default 64"),
    ({"digits": "some"}, "train_subset", "training digits 'some' is not a number: using the default 5,000"),
    ({"tied": "maybe"}, "tied_weights", "tied weights 'maybe' is not yes or no: using the default yes"),
    ({"act": "softmax"}, "activation",
     "activation 'softmax' is not one of tanh, relu, sigmoid: using the default tanh"),
    ({"opt": "lbfgs"}, "optimizer",
     "optimizer 'lbfgs' is not one of Adam, SGD with momentum: using the default Adam"),
    ({"seed": "-1"}, "seed", "random seed '-1' is outside 0 to 2147483647: using the default 0"),
])
def test_a_bad_value_gives_its_default_and_one_sentence(params, field, sentence):
    neighbour = {"seed": "7"} if field == "code_size" else {"code": "16"}  # a good value beside it
    decoded = decode({**params, **neighbour})
    assert decoded.problems == (sentence,)
    model_field = field in ModelConfig.__dataclass_fields__
    config, defaults = (decoded.model, PAGE_DEFAULTS.model) if model_field else (decoded.train, PAGE_DEFAULTS.train)
    assert getattr(config, field) == getattr(defaults, field)
    assert decoded.train.seed == 7 if field == "code_size" else decoded.model.code_size == 16


def test_an_unknown_model_type_gives_the_default_type_and_says_so():
    decoded = decode({link.TYPE_PARAM: "gan", "code": "8"})
    default = link.default_type()
    assert decoded.kind is default and decoded.model.code_size == 8
    assert decoded.problems == (f"model type 'gan' is not one of {', '.join(MODEL_TYPES)}: using the default "
                                f"{default.name}",)


@pytest.mark.parametrize("kind", [kind for kind in TYPES if kind.config_class.KNOBS], ids=lambda kind: kind.name)
def test_a_types_own_bad_knob_value_gives_its_default_and_the_knobs_of_another_type_are_not_used(kind):
    knob = link.knob_setting(kind.config_class.KNOBS[0])
    default = getattr(link.default_model(kind), knob.field)
    decoded = decode({link.TYPE_PARAM: kind.name, knob.param: "999"})
    assert getattr(decoded.model, knob.field) == default
    (sentence,) = decoded.problems
    assert sentence.startswith(f"{link.lower(knob.label)} '999' is ") and sentence.endswith(
        f": using the default {knob.name_of(default)}")
    others = [other for other in TYPES if knob.param not in {s.param for s in link.type_settings(other)}]
    for other in others:
        decoded = decode({link.TYPE_PARAM: other.name, knob.param: knob.written(default)})
        assert decoded.kind is other and decoded.model == link.default_model(other)
        assert decoded.problems == (f"{link.lower(knob.label)} {knob.written(default)!r} is not used: it is a "
                                    f"setting of the {kind.title.casefold()}, not of the {other.title.casefold()}",)


def test_a_loss_is_not_used_by_a_type_with_an_objective_of_its_own():
    kind = next(kind for kind in TYPES if not kind.network_class.USES_TRAINER_LOSS)
    decoded = decode({link.TYPE_PARAM: kind.name, "loss": "bce"})
    assert decoded.train.loss == PAGE_DEFAULTS.train.loss
    assert decoded.problems == (f"loss 'bce' is not used: the {kind.title.casefold()} has an objective of its own",)
    assert "loss" not in encode(decoded.model, replace(decoded.train, loss="bce"))


def test_a_value_its_config_rejects_beside_the_others_gives_its_default_and_the_configs_message(monkeypatch):
    check_alone = ModelConfig.validate

    def validate(self):
        if self.code_size > 64 and not self.tied_weights:
            raise ConfigError("untied weights need a code of at most 64 here")
        return check_alone(self)

    monkeypatch.setattr(ModelConfig, "validate", validate)
    decoded = decode({"code": "100", "tied": "no", "act": "relu"})
    assert decoded.model == replace(PAGE_DEFAULTS.model, code_size=100, activation="relu")  # taken in the page's order
    assert decoded.problems == ("tied weights 'no' does not go with the other settings (untied weights need a code "
                                "of at most 64 here): using the default yes",)


def test_a_trainer_setting_its_config_rejects_beside_the_others_falls_back_too(monkeypatch):
    check_alone = TrainConfig.validate

    def validate(self):
        if self.optimizer == "sgd" and self.learning_rate > 1:
            raise ConfigError("SGD above a learning rate of 1 is not allowed here")
        return check_alone(self)

    monkeypatch.setattr(TrainConfig, "validate", validate)
    decoded = decode({"opt": "sgd", "lr": "3"})
    assert decoded.train.optimizer == "sgd" and decoded.train.learning_rate == PAGE_DEFAULTS.train.learning_rate
    assert decoded.problems == ("learning rate '3' does not go with the other settings (SGD above a learning rate of "
                                "1 is not allowed here): using the default 0.003",)


def test_the_page_offers_only_values_its_configs_allow():
    for kind in TYPES:
        for setting in link.type_settings(kind):
            if setting.field in kind.config_class.RANGES:
                low, high = kind.config_class.RANGES[setting.field]
                assert low <= setting.low <= setting.high <= high, setting.field
    for setting in link.TRAIN_SETTINGS:
        if setting.field in TrainConfig.RANGES:
            low, high = TrainConfig.RANGES[setting.field]
            values = setting.choices or (setting.low, setting.high)
            assert values and all(low <= value <= high for value in values), setting.field


def test_numbers_are_written_bare_and_every_training_digit_as_all():
    assert encode(PAGE_DEFAULTS.model, replace(PAGE_DEFAULTS.train, train_subset=1000)) == {"digits": "1000"}
    assert encode(PAGE_DEFAULTS.model, replace(PAGE_DEFAULTS.train, train_subset=0)) == {"digits": "all"}
    assert encode(replace(PAGE_DEFAULTS.model, tied_weights=False), PAGE_DEFAULTS.train) == {"tied": "no"}
