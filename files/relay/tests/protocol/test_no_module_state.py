"""The protocol core keeps no state in its modules: what lives between calls lives in objects the
owner creates (links, sessions, TimestampIssuer, ReorderWindow). Checked by inspecting every
module's globals and classes, before and after real work."""

from __future__ import annotations

import collections
import enum
import importlib
import inspect
import pkgutil
import types
import weakref
from typing import Any

import altmesh.protocol
from altmesh.protocol import events as ev

from .helpers import destination, make_pair
from .test_e2e import established_sessions

MUTABLE = (
    dict,
    list,
    set,
    bytearray,
    collections.deque,
    collections.defaultdict,
    collections.OrderedDict,
    collections.Counter,
    weakref.WeakKeyDictionary,
    weakref.WeakValueDictionary,
    weakref.WeakSet,
)


def core_modules() -> list[types.ModuleType]:
    names = [
        info.name for info in pkgutil.walk_packages(altmesh.protocol.__path__, "altmesh.protocol.")
    ]
    return [altmesh.protocol, *(importlib.import_module(name) for name in names)]


def own_classes(module: types.ModuleType) -> list[type]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and value.__module__ == module.__name__
    ]


def snapshot() -> dict[str, Any]:
    """Every module global and class attribute of the core, by identity."""
    state: dict[str, Any] = {}
    for module in core_modules():
        for name, value in vars(module).items():
            state[f"{module.__name__}.{name}"] = id(value)
        for cls in own_classes(module):
            for name, value in vars(cls).items():
                state[f"{module.__name__}.{cls.__name__}.{name}"] = id(value)
    return state


def test_the_core_has_more_than_a_few_modules_to_check() -> None:
    names = {m.__name__.rsplit(".", 1)[-1] for m in core_modules()}
    assert {"link", "e2e", "tai64n", "replay", "streams", "framing", "rekey", "timers"} <= names


def test_no_module_of_the_core_holds_a_mutable_container() -> None:
    offenders = []
    for module in core_modules():
        for name, value in vars(module).items():
            if name.startswith("__") and name.endswith("__"):
                continue  # the import system's own (__path__, __spec__...)
            if isinstance(value, MUTABLE):
                offenders.append(f"{module.__name__}.{name}: {type(value).__name__}")
    assert offenders == []


def test_no_class_of_the_core_holds_a_mutable_container() -> None:
    offenders = []
    for module in core_modules():
        for cls in own_classes(module):
            if issubclass(cls, enum.Enum):
                continue  # enum machinery keeps its members in dicts of its own
            for name, value in vars(cls).items():
                if name.startswith("__") and name.endswith("__"):
                    continue
                if isinstance(value, MUTABLE):
                    offenders.append(f"{module.__name__}.{cls.__name__}.{name}")
    assert offenders == []


def test_real_work_rebinds_no_global_and_no_class_attribute() -> None:
    """Handshakes, streams, a rekey, pings and end-to-end sessions change only their objects
    (the old TAI64N issuer was a class attribute rebound on every handshake: caught here)."""
    before = snapshot()
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 80)
    pair.initiator.send_stream_data(stream, b"x" * 100_000)
    pair.initiator.ping(pair.now)
    pair.initiator.rekey(pair.now)
    pair.pump()
    assert any(isinstance(e, ev.Rekeyed) for e in pair.take("i"))
    client, service = established_sessions()
    assert service.receive(client.encrypt(b"hello")) == [b"hello"]
    after = snapshot()
    changed = sorted(
        key for key in before.keys() | after.keys() if before.get(key) != after.get(key)
    )
    assert changed == []
