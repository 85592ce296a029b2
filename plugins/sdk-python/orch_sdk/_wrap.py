"""A host resource whose methods raise the SDK's exceptions instead of `Err`."""

import functools

from componentize_py_types import Err


def call(convert, fn, *args, **kwargs):
    """`fn(*args)`, with a host error converted by `convert` (payload → exception or None)."""
    try:
        return fn(*args, **kwargs)
    except Err as e:
        converted = convert(e.value)
        if converted is None:
            raise
        raise converted from None


class Resource:
    """A host resource held in `_inner`; close it with `close()` or use it as a context manager."""

    def __init__(self, inner):
        self._inner = inner

    def close(self) -> None:
        """Release the host resource (also done when the step ends)."""
        if self._inner is not None:
            self._inner.__exit__(None, None, None)
            self._inner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Wrapped(Resource):
    """Forwards every method of a generated resource, converting its errors."""

    def __init__(self, inner, convert):
        super().__init__(inner)
        self._convert = convert

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        return functools.partial(call, self._convert, attr)
