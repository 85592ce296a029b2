"""{{name}}: an orch plugin in Python. See README.md."""

from dataclasses import dataclass, field

import orch_sdk


@dataclass
class Config:
    who: str = field(default="world", metadata={"description": "Who to greet"})
    shout: bool = field(default=False, metadata={"description": "Greet in capitals"})


class Greeter(orch_sdk.Plugin):
    name = "{{name}}"
    description = "Greets someone"
    Config = Config

    def step(self, cx, config):
        greeting = f"hello {config.who}"
        if config.shout:
            greeting = greeting.upper() + "!"
        # `orch plan` records the change; `orch run` logs it and returns True: act then.
        # (This plugin's only action is the greeting itself.)
        cx.change("run", "greeting", greeting)
        cx.output("greeting", greeting)


WitWorld = orch_sdk.export(Greeter)
