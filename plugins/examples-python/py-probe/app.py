"""py-probe: one Python plugin whose `action` picks what the end-to-end tests check.

hello  log a line, output `greeting`, plan a "run" change
noop   nothing (the per-step cost benchmark)
http   GET `url`, output `status` and `body` (text)
pg     open `connection`, run `query`, output `rows`
load   copy `rows` into a temporary table with copy_json; output `copied` and the table's rows
invalid / retry    fail as invalid-config / retryable
secret output `value` as the secret output `token`
hog    allocate memory without bound          spin   loop forever
env    output the environment and the root directory listing (the sandbox is empty)
create plan `create thing NAME`; only when applying output `created = true`
"""

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import orch_sdk
from orch_sdk import http, log, postgres

Action = Literal["hello", "http", "pg", "load", "invalid", "retry", "secret", "hog", "spin", "env",
                 "create", "noop"]


@dataclass
class Config:
    action: Action = field(default="hello", metadata={"description": "what to do"})
    who: str = field(default="world", metadata={"description": "hello: who to greet"})
    url: str = field(default="", metadata={"description": "http: the URL to GET"})
    connection: str = field(default="", metadata={"description": "pg: a postgres connection"})
    query: str = field(default="SELECT 1 AS one", metadata={"description": "pg: the SQL"})
    rows: list[dict[str, Any]] = field(default_factory=list,
                                       metadata={"description": "load: rows keyed by column"})
    value: str = field(default="py-probe-secret-value",
                       metadata={"description": "secret: the value to output as secret"})
    name: str = field(default="probe", metadata={"description": "create: the thing's name"})


class Probe(orch_sdk.Plugin):
    name = "py-probe"
    version = "0.2.0"
    description = "Python SDK probe for orch's end-to-end tests"
    Config = Config

    def step(self, cx, config):
        getattr(self, "do_" + config.action)(cx, config)

    def do_hello(self, cx, c):
        if cx.change("run", "greeting", f"hello {c.who}"):
            log.info(f"hello {c.who} from {cx.step_id} (attempt {cx.attempt})")
            cx.output("greeting", f"hello {c.who}")

    def do_http(self, cx, c):
        if cx.change("run", f"GET {c.url}"):
            response = http.get(c.url)
            cx.output("status", response.status)
            cx.output("body", response.text())

    def do_pg(self, cx, c):
        if cx.change("run", f"query on {c.connection}", c.query):
            with postgres.open(c.connection) as conn:
                cx.output("rows", conn.query(c.query))

    def do_load(self, cx, c):
        if cx.change("run", f"copy {len(c.rows)} rows on {c.connection}"):
            with postgres.open(c.connection) as conn:
                conn.execute("CREATE TEMP TABLE probe_load (id int8, name text, doc jsonb)")
                copied = conn.copy_json("COPY probe_load (id, name, doc) FROM STDIN", c.rows,
                                        columns=["id", "name", "doc"])
                cx.output("copied", copied)
                cx.output("rows", conn.query("SELECT id, name, doc FROM probe_load ORDER BY id"))

    def do_noop(self, cx, c):
        pass

    def do_invalid(self, cx, c):
        raise orch_sdk.InvalidConfig("py-probe: invalid on purpose")

    def do_retry(self, cx, c):
        raise orch_sdk.Retryable(f"py-probe: retryable on purpose (attempt {cx.attempt})")

    def do_secret(self, cx, c):
        cx.output("token", c.value, secret=True)

    def do_hog(self, cx, c):
        hoard = []
        while True:
            hoard.append(bytearray(1024 * 1024))

    def do_spin(self, cx, c):
        n = 0
        while True:
            n += 1

    def do_env(self, cx, c):
        try:
            root = sorted(os.listdir("/"))
        except OSError as e:
            root = f"{type(e).__name__}: {e}"
        cx.output("env", dict(os.environ))
        cx.output("root", root)

    def do_create(self, cx, c):
        if cx.change("create", f"thing {c.name}", f"make {c.name}"):
            cx.output("created", True)


WitWorld = orch_sdk.export(Probe)
