"""A small HTTP server for the `http` plugin's tests (loopback only, port printed on stdout).

GET  /json                 {"items": [{"name": "a"}, {"name": "b"}]}
POST /echo                 the request's JSON body, as JSON
GET  /status/N             status N
GET  /flaky?key=K&fail=N   503 for the first N requests with key K, then {"ok": true}
GET  /count?key=K          {"count": requests seen with key K}
GET  /redirect?to=URL      302 to URL
GET  /big?bytes=N          N bytes of "x"
GET  /delay?key=K&ms=N     counted on arrival, answers {"key": K} after N ms
GET  /whoami               {"authorized": bool, "path": ...}: bool says whether
                           Authorization == "Bearer $HTTPBIN_TOKEN" (never echoed)
ANY  /request              {"method", "authorized" (as /whoami), "body" (bytes received)}
Every route also answers under /v1 (a connection's base path).
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

COUNTS = {}
LOCK = threading.Lock()
TOKEN = os.environ.get("HTTPBIN_TOKEN", "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        url = urlparse(self.path)
        original = url.path
        url = url._replace(path=url.path.removeprefix("/v1"))  # a connection's base path
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        key = q.get("key", "")
        with LOCK:
            if url.path != "/count":  # asking does not count
                COUNTS[key] = COUNTS.get(key, 0) + 1
            seen = COUNTS.get(key, 0)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/json":
            return self.send(200, {"items": [{"name": "a"}, {"name": "b"}]})
        if url.path == "/echo":
            return self.send(200, json.loads(body or b"null"))
        if url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            return self.send(code, {"status": code})
        if url.path == "/flaky":
            if seen <= int(q.get("fail", "1")):
                return self.send(503, {"error": "try later"})
            return self.send(200, {"ok": True, "attempts": seen})
        if url.path == "/count":
            with LOCK:
                return self.send(200, {"count": COUNTS.get(key, 0)})
        if url.path == "/redirect":
            return self.send(302, {}, headers=[("Location", q["to"])])
        if url.path == "/delay":
            time.sleep(int(q.get("ms", "0")) / 1000)
            return self.send(200, {"key": key})
        if url.path == "/big":
            return self.send(200, b"x" * int(q["bytes"]), "text/plain")
        if url.path == "/host":
            return self.send(200, {"host": self.headers.get("Host"), "path": original})
        if url.path == "/request":
            auth = self.headers.get("Authorization", "")
            authorized = bool(TOKEN) and auth == f"Bearer {TOKEN}"
            return self.send(200, {"method": self.command, "authorized": authorized, "body": len(body)})
        if url.path == "/whoami":
            auth = self.headers.get("Authorization", "")
            return self.send(200, {"authorized": bool(TOKEN) and auth == f"Bearer {TOKEN}", "path": original})
        return self.send(404, {"error": "no route"})

    do_GET = do_POST = do_PUT = do_DELETE = route


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up early (size limits, denials) are expected


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
