"""Write orch plugins in Python.

A plugin declares a `Plugin` subclass with a dataclass `Config` and one `step(cx, config)`
body that serves both plan and apply; the app module exports it for componentize-py:

    from dataclasses import dataclass
    import orch_sdk

    @dataclass
    class Config:
        who: str = "world"

    class Hello(orch_sdk.Plugin):
        name = "hello"
        description = "Say hello"
        Config = Config

        def step(self, cx, config):
            if cx.change("run", "greeting", f"hello {config.who}"):
                orch_sdk.log.info(f"hello {config.who}")
                cx.output("greeting", f"hello {config.who}")

    WitWorld = orch_sdk.export(Hello)

Submodules: `log`, `http`, `postgres`, `kafka`, `docker` (the last four talk to the host
and exist only inside a component; `log` falls back to stderr on plain Python).
"""

import importlib

from .config import parse, schema
from .errors import Denied, Failed, InvalidConfig, Retryable, StepError
from .plugin import CHANGE_KINDS, Context, Plugin, call, export

__version__ = "0.2.0"

__all__ = [
    "CHANGE_KINDS", "Context", "Denied", "Failed", "InvalidConfig", "Plugin", "Retryable",
    "StepError", "call", "docker", "export", "http", "kafka", "log", "parse", "postgres",
    "schema",
]

_SUBMODULES = ("log", "http", "postgres", "kafka", "docker")


def __getattr__(name):
    """`orch_sdk.http` etc. without importing them first (they need the component bindings)."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
