"""Plain-Python tests of the parts that need no component: python3 -m unittest discover tests"""

import dataclasses
import json
import unittest
from dataclasses import dataclass, field
from typing import Literal, Optional

import orch_sdk
from orch_sdk import InvalidConfig


@dataclass
class Server:
    host: str
    port: int = 5432


@dataclass
class Tree:
    name: str
    children: list["Tree"] = field(default_factory=list)


@dataclass
class Config:
    """Test config."""

    action: Literal["a", "b"] = "a"
    name: str = field(default="x", metadata={"description": "the name"})
    ratio: float = 0.5
    tags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    limit: Optional[int] = None
    servers: list[Server] = field(default_factory=list)
    tree: Optional[Tree] = None


@dataclass
class Required:
    who: str

    def __post_init__(self):
        if not self.who:
            raise ValueError("`who` must not be empty")


class Probe(orch_sdk.Plugin):
    Config = Required

    def step(self, cx, config):
        if cx.change("create", f"thing {config.who}", "detail"):
            cx.output("created", True)
            cx.output("token", "a-long-secret", secret=True)


class SchemaTest(unittest.TestCase):
    def test_types(self):
        s = orch_sdk.schema(Config)
        props = s["properties"]
        self.assertEqual(s["$schema"], "http://json-schema.org/draft-07/schema#")
        self.assertFalse(s["additionalProperties"])
        self.assertEqual(s["description"], "Test config.")
        self.assertEqual(props["action"], {"type": "string", "enum": ["a", "b"], "default": "a"})
        self.assertEqual(props["name"]["description"], "the name")
        self.assertEqual(props["ratio"]["type"], "number")
        self.assertEqual(props["tags"]["items"], {"type": "string"})
        self.assertEqual(props["env"]["additionalProperties"], {"type": "string"})
        self.assertEqual(props["limit"]["type"], ["integer", "null"])
        self.assertEqual(props["servers"]["items"]["required"], ["host"])
        self.assertEqual(s["definitions"]["Tree"]["properties"]["children"]["items"],
                         {"$ref": "#/definitions/Tree"})
        self.assertNotIn("required", s)
        self.assertEqual(orch_sdk.schema(Required)["required"], ["who"])
        json.dumps(s)

    def test_unsupported_type_names_the_field(self):
        @dataclass
        class Bad:
            pair: tuple[int, int]

        with self.assertRaisesRegex(TypeError, r"Bad\.pair"):
            orch_sdk.schema(Bad)


class ParseTest(unittest.TestCase):
    def bad(self, text, message):
        with self.assertRaises(InvalidConfig) as caught:
            orch_sdk.parse(Config, text)
        self.assertIn(message, str(caught.exception))

    def test_ok(self):
        c = orch_sdk.parse(Config, '{"action": "b", "ratio": 2, "servers": [{"host": "h"}],'
                                   ' "tree": {"name": "r", "children": [{"name": "c"}]}}')
        self.assertEqual(c.action, "b")
        self.assertEqual(c.ratio, 2.0)
        self.assertEqual(c.servers, [Server("h")])
        self.assertEqual(c.tree.children[0].name, "c")
        self.assertEqual(orch_sdk.parse(Config, ""), Config())

    def test_errors(self):
        self.bad('{"acton": "a"}', "unknown field `acton`; did you mean `action`?")
        self.bad('{"action": "c"}', '`action` must be one of "a", "b", got a string')
        self.bad('{"ratio": true}', "`ratio` must be a number, got a boolean")
        self.bad('{"limit": "3"}', '`limit` must be an integer or null, got a string')
        self.bad('{"servers": [{"host": "h"}, {"port": 1}]}', "missing required field `servers[1].host`")
        self.bad('{"env": {"A": 1}}', "`env.A` must be a string, got an integer")
        self.bad('{"tree": {"name": "r", "children": [{"name": 2}]}}',
                 "`tree.children[0].name` must be a string")
        self.bad("[1]", "`config` must be an object")
        self.bad("{", "the config is not JSON")

    def test_post_init_rejects(self):
        with self.assertRaisesRegex(InvalidConfig, "must not be empty"):
            orch_sdk.parse(Required, '{"who": ""}')


class ContextTest(unittest.TestCase):
    def test_plan_records_changes_and_ignores_outputs(self):
        cx = orch_sdk.call(Probe, "plan", '{"who": "x"}')
        self.assertEqual(cx.changes, [("create", "thing x", "detail")])
        self.assertEqual(cx.outputs, {})

    def test_apply_returns_outputs(self):
        cx = orch_sdk.call(Probe, "apply", '{"who": "x"}', step_id="s", attempt=2)
        self.assertEqual(cx.outputs, {"created": ("true", False),
                                      "token": ('"a-long-secret"', True)})
        self.assertEqual((cx.step_id, cx.attempt), ("s", 2))

    def test_bad_kind(self):
        with self.assertRaises(ValueError):
            orch_sdk.Context("plan").change("make", "x")

    def test_name_default(self):
        from orch_sdk.plugin import plugin_name

        self.assertEqual(plugin_name(Probe), "probe")
        self.assertEqual(plugin_name(type("MyGreatPlugin", (orch_sdk.Plugin,), {})),
                         "my-great-plugin")

    def test_dataclass_output(self):
        cx = orch_sdk.Context("apply")
        cx.output("server", Server("h"))
        self.assertEqual(json.loads(cx.outputs["server"][0]), dataclasses.asdict(Server("h")))


if __name__ == "__main__":
    unittest.main()
