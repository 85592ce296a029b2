"""The plugin declaration, the step context, and the export that componentize-py wires up."""

import dataclasses
import json
import re
import traceback

from . import config as _config
from .errors import Denied, Failed, InvalidConfig, Retryable, StepError

CHANGE_KINDS = ("create", "update", "replace", "delete", "run", "none")


class Context:
    """What a step body sees: where the call comes from, and how to report changes and outputs.

    `mode` is "plan" (dry run: change nothing) or "apply"; `applying` is `mode == "apply"`.
    `run_id`, `workflow`, `step_id`, `attempt` (1 for the first try) and `trigger`
    (cli, cron, http, webhook) describe the call; none of it is secret.
    """

    def __init__(self, mode: str, run_id="", workflow="", step_id="", attempt=1, trigger="cli"):
        if mode not in ("plan", "apply"):
            raise ValueError(f"mode must be 'plan' or 'apply', not {mode!r}")
        self.mode = mode
        self.applying = mode == "apply"
        self.run_id = run_id
        self.workflow = workflow
        self.step_id = step_id
        self.attempt = attempt
        self.trigger = trigger
        self.changes: list[tuple[str, str, str]] = []
        self.outputs: dict[str, tuple[str, bool]] = {}

    def change(self, kind: str, resource: str, detail: str = "") -> bool:
        """Announce a change; True when the body should make it.

        `kind` is one of create, update, replace, delete, run, none; `resource` says what
        changes ("role etl"), `detail` how ("CREATE ROLE etl LOGIN"). In plan mode the change
        is recorded for the plan and False is returned; in apply mode it is logged and True is
        returned.
        """
        kind = str(kind).lower()
        if kind not in CHANGE_KINDS:
            raise ValueError(f"change kind {kind!r} is not one of {', '.join(CHANGE_KINDS)}")
        self.changes.append((kind, str(resource), str(detail)))
        if not self.applying:
            return False
        if kind != "none":
            from . import log

            log.info(f"{kind} {resource}: {detail}" if detail else f"{kind} {resource}")
        return True

    def output(self, name: str, value, secret: bool = False) -> None:
        """Set output `name` (readable as `steps.ID.outputs.NAME`) to JSON-encodable `value`.

        `secret=True` makes the host mask it everywhere. Ignored in plan mode; setting a name
        again replaces the value.
        """
        # NaN and Infinity are not JSON: refuse them rather than hand the host invalid text.
        encoded = json.dumps(value, default=_encode, allow_nan=False)
        if self.applying:
            self.outputs[name] = (encoded, bool(secret))


def _encode(value):
    """JSON for dataclasses and sets in outputs."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("an output cannot hold bytes: decode them, or base64-encode them")
    raise TypeError(f"output value of type {type(value).__name__} is not JSON serializable")


class Plugin:
    """Base class of a plugin: set the class attributes and write `step`.

    - `name`: the plugin's name (default: the class name in kebab-case),
    - `version`: default "0.1.0",
    - `description`: one line,
    - `Config`: a dataclass type for the step's `with` (its JSON Schema is derived from it),
      or None to receive the `with` table as a dict.

    `step(self, cx, config)` is the one body for plan and apply: guard every change with
    `if cx.change(...):` and set results with `cx.output(...)`. Raise InvalidConfig, Denied,
    Retryable or Failed to fail the step; any other exception fails it as Failed.
    """

    name: str = ""
    version: str = "0.1.0"
    description: str = ""
    Config = None

    def step(self, cx: Context, config) -> None:
        """Plan or apply the step; see the class docstring."""
        raise NotImplementedError(f"{type(self).__name__}.step")


def plugin_name(cls) -> str:
    """The declared name, or the class name in kebab-case."""
    return cls.name or re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


_current = None  # the Context of the call in progress


def call(plugin_cls, mode: str, config_json: str, **context) -> Context:
    """Run the plugin's body once, as the `plan`/`run` exports do, and return its context.

    Useful in tests on plain Python: `call(MyPlugin, "plan", '{"who": "x"}').changes`.
    Raises the SDK's step errors.
    """
    global _current
    cx = Context(mode, **context)
    parsed = _config.parse(plugin_cls.Config, config_json)
    _current = cx
    try:
        plugin_cls().step(cx, parsed)
    finally:
        _current = None
    return cx


def current() -> Context | None:
    """The context of the call in progress, if any."""
    return _current


def _step_error(e: BaseException):
    """The WIT step-error for any exception raised by a body."""
    from componentize_py_types import Err
    from wit_world.imports import orch_plugin_types as t

    from . import docker, kafka, log, postgres

    if isinstance(e, Err):
        if isinstance(e.value, (t.StepError_InvalidConfig, t.StepError_Denied,
                                t.StepError_Retryable, t.StepError_Failed)):
            return e.value
        # A raw host call's error that was not converted by a wrapper.
        for module in (postgres, kafka, docker):
            converted = module.convert_error(e.value)
            if converted is not None:
                e = converted
                break
    if isinstance(e, InvalidConfig):
        return t.StepError_InvalidConfig(str(e))
    if isinstance(e, Denied):
        return t.StepError_Denied(str(e))
    if isinstance(e, Retryable):
        return t.StepError_Retryable(str(e))
    if isinstance(e, (Failed, StepError)):
        return t.StepError_Failed(str(e))
    log.debug("".join(traceback.format_exception(e)))
    return t.StepError_Failed(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)


def export(plugin_cls):
    """The `WitWorld` class componentize-py exports for `plugin_cls`.

    In the app module (default `app.py`): `WitWorld = orch_sdk.export(MyPlugin)`.
    The config schema is derived here, so an unsupported field type fails the build.
    """
    from componentize_py_types import Err
    from wit_world.imports import orch_plugin_types as t

    # Load every module a body may use now: only what is imported at build time is in the
    # component (encodings.idna: for socket.create_connection with a tcp:// grant).
    import encodings.idna  # noqa: F401

    from . import docker, http, kafka, log, postgres  # noqa: F401

    if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, Plugin)):
        raise TypeError(f"export() takes a Plugin subclass, not {plugin_cls!r}")
    info = t.PluginInfo(
        name=plugin_name(plugin_cls),
        version=plugin_cls.version,
        description=plugin_cls.description or (plugin_cls.__doc__ or "").strip().split("\n")[0],
        config_schema=json.dumps(_config.schema(plugin_cls.Config)),
    )
    kinds = {k: getattr(t.ChangeKind, k.upper()) for k in CHANGE_KINDS}

    def invoke(mode, ctx, config):
        context = dict(run_id=ctx.run_id, workflow=ctx.workflow, step_id=ctx.step_id,
                       attempt=ctx.attempt, trigger=ctx.trigger)
        try:
            return call(plugin_cls, mode, config, **context)
        except BaseException as e:  # noqa: BLE001 - every failure becomes a step error
            raise Err(_step_error(e)) from None

    class WitWorld:
        """The `step` world's exports, calling the plugin's one body."""

        def describe(self):
            return info

        def plan(self, ctx, config):
            cx = invoke("plan", ctx, config)
            return [t.Change(kinds[k], r, d) for k, r, d in cx.changes]

        def run(self, ctx, config):
            cx = invoke("apply", ctx, config)
            return [t.Output(n, v, s) for n, (v, s) in cx.outputs.items()]

    WitWorld.__qualname__ = WitWorld.__name__ = "WitWorld"
    return WitWorld
