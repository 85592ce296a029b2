"""PostgreSQL through a connection the step is granted by name (`allow = ["NAME"]`).

The URL and password stay in the host. Python values map to SQL values as: None ↔ NULL,
bool ↔ boolean, int ↔ int8, float ↔ float8, str ↔ text, bytes ↔ bytea, dict/list ↔ jsonb
(columns of other types come back as the host converts them, usually text).
"""

import contextlib
import functools
import json

from wit_world.imports import postgres as _pg

from . import _wrap
from .errors import Denied, Failed, Retryable

_S64 = (-(2**63), 2**63 - 1)


def convert_error(error):
    """The SDK exception for a postgres `error`, or None if it is not one."""
    if isinstance(error, _pg.Error_Denied):
        return Denied(error.value)
    if isinstance(error, _pg.Error_Unavailable):
        return Retryable(f"postgres unavailable: {error.value}")
    if isinstance(error, _pg.Error_Database):
        return Failed(f"postgres error {error.value.code}: {error.value.message}")
    if isinstance(error, _pg.Error_Other):
        return Failed(error.value)
    return None


_call = functools.partial(_wrap.call, convert_error)


def to_value(value):
    """A Python value as a WIT `value` (for parameters)."""
    if value is None:
        return _pg.Value_Null()
    if isinstance(value, bool):
        return _pg.Value_Boolean(value)
    if isinstance(value, int):
        if not _S64[0] <= value <= _S64[1]:
            raise ValueError(f"integer {value} does not fit a 64-bit parameter")
        return _pg.Value_Int(value)
    if isinstance(value, float):
        return _pg.Value_Float(value)
    if isinstance(value, str):
        return _pg.Value_Text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _pg.Value_Bytes(bytes(value))
    if isinstance(value, (dict, list, tuple)):
        return _pg.Value_Json(json.dumps(value))
    raise TypeError(
        f"cannot bind a {type(value).__name__} parameter "
        "(use None, bool, int, float, str, bytes, dict or list; str(x) for dates)"
    )


def from_value(value):
    """A WIT `value` (a result cell) as a Python value."""
    if isinstance(value, _pg.Value_Null):
        return None
    if isinstance(value, _pg.Value_Json):
        return json.loads(value.value)
    return value.value


class Connection(_wrap.Resource):
    """One open session; statements autocommit unless `begin()` (or `transaction()`) was used.

    Close it with `close()` (also done when the step ends) or use it as a context manager.
    """

    def execute(self, sql: str, params=()) -> int:
        """Run a statement with `$1`... bound to `params`; the number of rows affected."""
        return _call(self._inner.execute, sql, [to_value(p) for p in params])

    def query(self, sql: str, params=(), limit: int | None = None) -> list[dict]:
        """Run a query; its rows (at most `limit`) as dicts of column → value."""
        rows = _call(self._inner.query, sql, [to_value(p) for p in params], limit)
        return [dict(zip(rows.columns, map(from_value, row))) for row in rows.rows]

    def query_one(self, sql: str, params=()) -> dict | None:
        """The first row of a query, or None."""
        rows = self.query(sql, params, limit=1)
        return rows[0] if rows else None

    def copy_in(self, sql: str, data) -> int:
        """`COPY ... FROM STDIN` with `data` (bytes or str) in the statement's format."""
        if isinstance(data, str):
            data = data.encode()
        return _call(self._inner.copy_in, sql, bytes(data))

    def copy_json(self, sql: str, rows, columns=None) -> int:
        """`COPY ... FROM STDIN` (text format) of `rows`, dicts keyed by column; rows copied.

        The fast way to bulk load: the host encodes the rows and streams them to the server.
        `columns` is the statement's column order (`COPY t (a, b) FROM STDIN`); it defaults to
        the first row's keys. A missing key is NULL; a key not in `columns` fails the call and
        nothing is copied. `rows` may also be their JSON text (a list of objects), with
        `columns` given.
        """
        if isinstance(rows, (bytes, bytearray)):
            rows = rows.decode()
        if isinstance(rows, str):
            if columns is None:
                raise ValueError("copy_json: pass `columns` when `rows` is JSON text")
            text = rows
        else:
            rows = rows if isinstance(rows, list) else list(rows)
            if columns is None:
                columns = list(rows[0]) if rows else []
            try:
                text = json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            except (TypeError, ValueError) as e:
                raise TypeError(f"copy_json: a row is not JSON ({e}); str(x) for dates") from e
        return _call(self._inner.copy_json, sql, [str(c) for c in columns], text)

    def begin(self) -> None:
        """Start a transaction."""
        _call(self._inner.begin)

    def commit(self) -> None:
        """Commit the transaction."""
        _call(self._inner.commit)

    def rollback(self) -> None:
        """Roll the transaction back."""
        _call(self._inner.rollback)

    @contextlib.contextmanager
    def transaction(self):
        """`with conn.transaction():` commits at the end, rolls back on an exception."""
        self.begin()
        try:
            yield self
        except BaseException:
            with contextlib.suppress(Exception):
                self.rollback()
            raise
        self.commit()


def open(connection: str) -> Connection:  # noqa: A001 - mirrors the WIT name
    """Open the named connection; Denied unless the step's `allow` lists it."""
    return Connection(_call(_pg.open, connection))
