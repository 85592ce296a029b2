"""Blocking HTTP over the host's gated wasi:http outgoing-handler.

Every request is checked by the host: a URL must be granted in the step's `allow`
(`"https://api.example.com"`), or be `http://NAME/path` for a granted `kind = "http"`
connection NAME (the host adds the base URL and credentials). During `plan` only GET, HEAD
and OPTIONS leave the sandbox. Redirects are not followed. Bodies are read whole, up to
`max_size` bytes.
"""

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as _t

from . import plugin as _plugin
from .errors import Denied, Failed, InvalidConfig, Retryable

MAX_SIZE = 16 * 1024 * 1024
"""Default bound on a response body."""

_METHODS = {
    "GET": _t.Method_Get, "HEAD": _t.Method_Head, "POST": _t.Method_Post,
    "PUT": _t.Method_Put, "DELETE": _t.Method_Delete, "CONNECT": _t.Method_Connect,
    "OPTIONS": _t.Method_Options, "TRACE": _t.Method_Trace, "PATCH": _t.Method_Patch,
}

# The transient wasi:http error codes, the same table in the Rust and JavaScript SDKs.
_TRANSIENT = (
    _t.ErrorCode_DnsTimeout, _t.ErrorCode_DnsError, _t.ErrorCode_DestinationUnavailable,
    _t.ErrorCode_ConnectionRefused, _t.ErrorCode_ConnectionTerminated,
    _t.ErrorCode_ConnectionTimeout, _t.ErrorCode_ConnectionReadTimeout,
    _t.ErrorCode_ConnectionWriteTimeout, _t.ErrorCode_ConnectionLimitReached,
    _t.ErrorCode_HttpResponseTimeout, _t.ErrorCode_HttpResponseIncomplete,
)


@dataclass
class Response:
    """A whole response: `status`, `headers` (lower-case names; repeated ones joined by ", "),
    `body` (bytes) and the `url` it came from."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    url: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded (undecodable bytes replaced)."""
        return self.body.decode(encoding, errors="replace")

    def json(self):
        """The body parsed as JSON; Failed if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise Failed(f"response of {self.url} is not JSON: {e}") from None

    def raise_for_status(self) -> "Response":
        """Self if 2xx; else Retryable for 429 and 5xx, Failed for the rest."""
        if self.ok:
            return self
        snippet = self.text()[:200]
        message = f"{self.url} answered {self.status}: {snippet}"
        raise Retryable(message) if self.status == 429 or self.status >= 500 else Failed(message)


def _code_name(code) -> str:
    name = type(code).__name__.split("_", 1)[-1]  # ErrorCode_ConnectionRefused → ConnectionRefused
    name = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    payload = getattr(code, "value", None)
    return f"{name} ({payload})" if payload is not None else name


def _error(method: str, url: str, code) -> Exception:
    """The SDK exception for a wasi:http error code."""
    if isinstance(code, _t.ErrorCode_HttpRequestDenied):
        cx = _plugin.current()
        if cx is not None and not cx.applying and method not in ("GET", "HEAD", "OPTIONS"):
            return Denied(
                f"{method} {url} refused by the host: a plan sends only GET, HEAD and OPTIONS; "
                "make the request under `if cx.change(...):`"
            )
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return Denied(
            f"{method} {url} refused by the host: {origin} is not granted to this step; add "
            f'`allow = ["{origin}"]` (or the name of a granted http connection) to the step'
        )
    if isinstance(code, _t.ErrorCode_HttpResponseBodySize):
        return Failed(f"response of {url} is over the host's size limit: {_code_name(code)}")
    if isinstance(code, _TRANSIENT):
        return Retryable(f"{method} {url} failed: {_code_name(code)}")
    return Failed(f"{method} {url} failed: {_code_name(code)}")


def _split(url: str):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidConfig(f"`{url}` is not an http(s) URL")
    if not parts.netloc:
        raise InvalidConfig(f"`{url}` has no host")
    if "@" in parts.netloc:
        # Credentials belong in a connection, which keeps them in the host.
        raise InvalidConfig(
            f"`{parts.scheme}://...@{parts.hostname}` carries credentials in the URL: put them in "
            "a `kind = \"http\"` connection and request `http://NAME/path`"
        )
    scheme = _t.Scheme_Http() if parts.scheme == "http" else _t.Scheme_Https()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.netloc, path


def _body(body, headers: dict[str, str]):
    """Request body bytes; dicts and lists are sent as JSON."""
    if body is None:
        return None
    if isinstance(body, (dict, list)):
        headers.setdefault("content-type", "application/json")
        return json.dumps(body).encode()
    if isinstance(body, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        return body.encode()
    return bytes(body)


def _must(result_fn, what: str):
    """Call a setter that returns result<_, _>; InvalidConfig naming `what` if it refuses."""
    try:
        return result_fn()
    except Err:
        raise InvalidConfig(f"invalid request {what}") from None


def request(method: str, url: str, headers: dict[str, str] | None = None, body=None, *,
            max_size: int = MAX_SIZE, timeout: float | None = None) -> Response:
    """Send a request and read the whole response.

    `body` may be bytes, str (sent as text/plain) or a dict/list (sent as JSON). `timeout`
    (seconds) bounds connecting and each wait for data. Raises Denied when the host refuses
    the URL, Retryable on connection errors and timeouts, Failed when the body is over
    `max_size` bytes, InvalidConfig for a malformed URL. Any status is returned: call
    `raise_for_status()` to fail on non-2xx.
    """
    method = method.upper()
    scheme, authority, path = _split(url)
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    data = _body(body, headers)
    if data is not None:
        # A known length, not chunked: simple servers read bodies by Content-Length only.
        headers["content-length"] = str(len(data))
    fields = _t.Fields()
    for name, value in headers.items():
        try:
            fields.append(name, str(value).encode())
        except Err as e:
            fields.__exit__(None, None, None)
            raise Failed(f"header `{name}`: {_code_name(e.value)}") from None
    req = _t.OutgoingRequest(fields)
    _must(lambda: req.set_method(_METHODS[method]() if method in _METHODS
                                 else _t.Method_Other(method)), f"method {method}")
    _must(lambda: req.set_scheme(scheme), "scheme")
    _must(lambda: req.set_authority(authority), f"host {authority}")
    _must(lambda: req.set_path_with_query(path), f"path {path}")
    out = req.body()
    options = None
    if timeout is not None:
        ns = int(timeout * 1e9)
        options = _t.RequestOptions()
        for setter in (options.set_connect_timeout, options.set_first_byte_timeout,
                       options.set_between_bytes_timeout):
            try:
                setter(ns)
            except Err:
                pass  # the host keeps its own bound
    try:
        future = outgoing_handler.handle(req, options)
    except Err as e:
        out.__exit__(None, None, None)
        raise _error(method, url, e.value) from None
    # The request is on its way: stream the body, then wait for the answer.
    send_error = None
    try:
        if data:
            with out.write() as stream:
                for i in range(0, len(data), 4096):
                    stream.blocking_write_and_flush(data[i:i + 4096])
        _t.OutgoingBody.finish(out, None)
    except Err as e:
        send_error = e.value
    with future:
        with future.subscribe() as ready:
            ready.block()
        got = future.get()
    if got is None or isinstance(got, Err):
        raise Failed(f"{method} {url}: no response")
    outcome = got.value  # Ok(response) or Err(error-code)
    if isinstance(outcome, Err):
        raise _error(method, url, outcome.value)
    if send_error is not None:
        raise Retryable(f"{method} {url}: sending the body failed: {send_error}")
    with outcome.value as response:
        return _read(method, url, response, max_size)


def _read(method: str, url: str, response, max_size: int) -> Response:
    with response.headers() as fields:
        headers: dict[str, str] = {}
        for name, value in fields.entries():
            text = value.decode("latin-1")
            name = name.lower()
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
    body = response.consume()
    data = bytearray()
    try:
        with body.stream() as stream:
            while True:
                try:
                    data += stream.blocking_read(64 * 1024)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    with e.value.value as io_error:
                        code = _t.http_error_code(io_error)
                        text = io_error.to_debug_string()
                    if code is not None:
                        raise _error(method, url, code) from None
                    raise Retryable(f"reading the response of {url}: {text}") from None
                if len(data) > max_size:
                    raise Failed(f"response of {url} is over {max_size} bytes "
                                 "(pass a larger max_size)")
    finally:
        _t.IncomingBody.finish(body).__exit__(None, None, None)
    return Response(response.status(), headers, bytes(data), url)


def get(url: str, headers: dict[str, str] | None = None, **kwargs) -> Response:
    """`GET url`; see `request` for the keyword arguments and errors."""
    return request("GET", url, headers, **kwargs)


def post(url: str, body=None, headers: dict[str, str] | None = None, **kwargs) -> Response:
    """`POST url` with `body` (bytes, str, or dict/list as JSON); see `request`."""
    return request("POST", url, headers, body, **kwargs)
