"""Both engines implement every member of the ``Engine`` contract (engines/base.py), so the
pipeline never has to ask which engine it holds."""

from __future__ import annotations

import inspect

import pytest

from vidcolor.engines.base import Engine
from vidcolor.engines.classic.engine import ClassicEngine
from vidcolor.engines.devc.engine import DevcEngine


def contract_members() -> tuple[set[str], set[str]]:
    """(declared attributes, methods) of the protocol."""
    attributes = set(Engine.__annotations__)
    methods = {name for name, value in vars(Engine).items()
               if inspect.isfunction(value) and not name.startswith("_")}
    return attributes, methods


def test_contract_declares_the_postprocess_flag_and_the_poor_match_threshold():
    attributes, methods = contract_members()
    assert {"name", "device", "dtype", "official_postprocess", "low_confidence"} <= attributes
    assert {"prepare_reference", "correspond", "initial_state", "step"} <= methods


@pytest.mark.parametrize("engine_class", [DevcEngine, ClassicEngine])
def test_engine_implements_every_member(engine_class):
    attributes, methods = contract_members()
    for name in methods:
        assert inspect.isfunction(getattr(engine_class, name, None)), f"{engine_class.__name__}.{name}"
        expected = list(inspect.signature(getattr(Engine, name)).parameters)
        assert list(inspect.signature(getattr(engine_class, name)).parameters)[:len(expected)] \
            == expected, name
    # Class-level attributes; device and dtype are set per instance.
    for name in attributes - {"device", "dtype"}:
        assert hasattr(engine_class, name), f"{engine_class.__name__}.{name}"


def test_classic_instance_has_every_attribute():
    engine = ClassicEngine()
    attributes, _ = contract_members()
    for name in attributes:
        assert hasattr(engine, name), name
    assert isinstance(engine.official_postprocess, bool)
    assert engine.low_confidence is None or 0 < engine.low_confidence < 1
