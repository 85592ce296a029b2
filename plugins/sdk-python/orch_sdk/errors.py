"""The four ways a step can fail; the class tells the host whether to retry."""


class StepError(Exception):
    """Base of the SDK's step errors; raise one of the subclasses."""


class InvalidConfig(StepError):
    """The step's `with` is wrong: fix the workflow. Never retried."""


class Denied(StepError):
    """A grant is missing (an `allow` entry, a connection policy). Never retried."""


class Retryable(StepError):
    """A transient fault (network, lock, busy server). Retried per the step's `retry`."""


class Failed(StepError):
    """A permanent fault. Never retried."""
