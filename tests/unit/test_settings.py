"""DistQ's settings are defined once (``DistQConfig``); every compressor's signature, defaults and
documentation must show the same ones, so that ``help()`` and IDEs tell users the truth."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc
from typing import Any

import pytest
import torch

from horovod_distq import LocalAdam
from horovod_distq.compressor import DistQCompressor, NamesRole
from horovod_distq.config import DistQConfig, setting_names, settings_documentation
from horovod_distq.tensorflow import DistQ as TensorFlowDistQ
from horovod_distq.torch import DistQ as TorchDistQ
from horovod_distq.torch.ddp import DistQState
from horovod_distq.torch.ddp_exchange import TwoPhaseGroupExchange

# Each compressor users make, and the arguments it takes besides the settings.
COMPRESSORS = {
    TorchDistQ: {"process_set"},
    TensorFlowDistQ: {"process_set"},
    DistQState: {"module", "process_group"},
}


def _config_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(DistQConfig) if f.name != "family_params"}


@pytest.mark.parametrize("compressor", list(COMPRESSORS), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_signature_matches_the_config(compressor: type) -> None:
    parameters = inspect.signature(compressor).parameters
    settings = [name for name in parameters if name not in COMPRESSORS[compressor] and name != "family_params"]
    assert settings == setting_names(), "the settings, in DistQConfig's order"
    defaults = _config_defaults()
    for name in settings:
        expected = inspect.Parameter.empty if defaults[name] is dataclasses.MISSING else defaults[name]
        assert parameters[name].default == expected, f"{compressor.__name__}({name}=...) default drifted"
        assert parameters[name].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert parameters["family_params"].kind == inspect.Parameter.VAR_KEYWORD
    assert all(parameters[name].kind == inspect.Parameter.KEYWORD_ONLY for name in COMPRESSORS[compressor] - {"module"})


@pytest.mark.parametrize("compressor", list(COMPRESSORS), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_help_documents_every_setting(compressor: type) -> None:
    text = pydoc.render_doc(compressor, renderer=pydoc.plaintext)
    assert "{settings}" not in text
    for name in [*setting_names(), *COMPRESSORS[compressor]]:
        assert f"{name}:" in text, f"help({compressor.__name__}) does not document {name}"
    assert f"{compressor.__name__}{inspect.signature(compressor)}" in text  # the real signature, with defaults


def test_settings_documentation_covers_every_field() -> None:
    documented = settings_documentation()
    for field in dataclasses.fields(DistQConfig):
        assert f"\n        {field.name}:" in "\n" + documented, field.name


# A value other than the default for every setting; momentum correction and local Adam exclude
# each other (a second set), and error feedback, on by default, goes off in a third (both need it on).
NOT_DEFAULT = {"ratio": 0.05, "distribution": "student_t", "error_feedback": True, "min_numel": 7, "sample_size": 100,
               "value_encoding": "float16", "stages": 2, "closed_loop": False, "exchange": "sparse", "warmup": 3,
               "momentum": 0.5, "adam": None, "dof": 4.0}
LOCAL_ADAM = {**NOT_DEFAULT, "momentum": 0.0, "adam": LocalAdam(beta2=0.99)}
WITHOUT_ERROR_FEEDBACK = {**NOT_DEFAULT, "error_feedback": False, "momentum": 0.0}


def _made(compressor: type, settings: dict[str, Any]) -> Any:
    return compressor(None, **settings) if compressor is DistQState else compressor(**settings)


@pytest.mark.parametrize("settings", [NOT_DEFAULT, LOCAL_ADAM, WITHOUT_ERROR_FEEDBACK],
                         ids=["momentum", "local_adam", "no_error_feedback"])
@pytest.mark.parametrize("compressor", list(COMPRESSORS), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_setting_reaches_the_config(compressor: type, settings: dict[str, Any]) -> None:
    """A setting a signature takes but does not pass on would leave its default in force, silently."""
    assert set(settings) - {"dof"} == set(setting_names())
    config = _made(compressor, settings).config
    assert config.settings() == {**settings, "warmup": config.warmup}
    assert config.warmup is not None and config.warmup.steps == 3
    assert _made(compressor, config.settings()).config == config


def test_a_missing_role_fails_at_construction() -> None:
    """The base class checks its roles when made, not at the first step."""

    class Incomplete:  # a names role without ``of``
        how_to_name = "name it"

    made = TorchDistQ(0.01)
    roles = {role: getattr(made, role) for role in ("names", "memory", "controller", "schedule", "exchange")}
    with pytest.raises(TypeError, match=r"names=.*NamesRole.*Incomplete lacks of"):
        DistQCompressor.__init__(made, made.config, **{**roles, "names": Incomplete()})
    assert isinstance(made.names, NamesRole)


def test_two_phase_exchange_runs_under_torch_and_is_refused_by_tensorflow() -> None:
    with pytest.raises(ValueError, match=r"two_phase.*not TensorFlow"):
        TensorFlowDistQ(0.01, exchange="two_phase")
    assert isinstance(DistQState(torch.nn.Linear(4, 4), 0.01, exchange="two_phase").exchange, TwoPhaseGroupExchange)
    assert TorchDistQ(0.01, exchange="two_phase").config.exchange == "two_phase"
