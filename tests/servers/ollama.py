"""A local server speaking Ollama's documented HTTP API (github.com/ollama/ollama/blob/main/docs/api.md),
for tests and the demo: no Ollama binary is reachable here. Loopback only; prints its port.

Models are fake: a small "registry" of known names can be pulled (progress streamed as NDJSON
with status/digest/total/completed), then listed, shown, deleted, and used by
/api/generate, /api/chat (streaming or not) and /api/embed, which answer deterministically.
"""
import hashlib
import json
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REGISTRY = {  # name -> (family, parameter size, bytes)
    "llama3.2:latest": ("llama", "3.2B", 2_019_393_189),
    "qwen2.5:0.5b": ("qwen2", "494M", 397_821_319),
    "nomic-embed-text:latest": ("nomic-bert", "137M", 274_302_450),
}
INSTALLED = {}
LOCK = threading.Lock()
PULLS = {"count": 0}


def full(name):
    return name if ":" in name else f"{name}:latest"


def now():
    return datetime.now(timezone.utc).isoformat()


def digest(name):
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            self.reply(400, {"error": f"invalid JSON: {e}"})
            return None

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, lines):
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for obj in lines:
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def model(self, req):
        name = req.get("model") or req.get("name") or ""
        return full(name) if name else ""

    def not_found(self, name):
        self.reply(404, {"error": f"model '{name}' not found"})

    def do_GET(self):
        if self.path == "/api/tags":
            with LOCK:
                models = [
                    {"name": n, "model": n, "modified_at": m["modified_at"], "size": REGISTRY[n][2],
                     "digest": digest(n),
                     "details": {"format": "gguf", "family": REGISTRY[n][0], "families": [REGISTRY[n][0]],
                                 "parameter_size": REGISTRY[n][1], "quantization_level": "Q4_K_M"}}
                    for n, m in sorted(INSTALLED.items())
                ]
            return self.reply(200, {"models": models})
        if self.path == "/api/version":
            return self.reply(200, {"version": "0.5.7"})
        if self.path == "/test/pulls":  # for tests: how many pulls were started
            return self.reply(200, PULLS)
        return self.reply(404, {"error": "not found"})

    def do_DELETE(self):
        if self.path != "/api/delete":
            return self.reply(404, {"error": "not found"})
        req = self.body()
        if req is None:
            return
        name = self.model(req)
        with LOCK:
            if INSTALLED.pop(name, None) is None:
                return self.not_found(name)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        req = self.body()
        if req is None:
            return
        name = self.model(req)
        stream = req.get("stream", True)
        if self.path == "/api/pull":
            with LOCK:
                PULLS["count"] += 1
            if name not in REGISTRY:
                error = {"error": "pull model manifest: file does not exist"}
                return self.stream([{"status": "pulling manifest"}, error]) if stream else self.reply(500, error)
            total = REGISTRY[name][2]
            lines = [{"status": "pulling manifest"}]
            for step in range(0, 5):
                lines.append({"status": f"pulling {digest(name)[7:19]}", "digest": digest(name),
                              "total": total, "completed": total * step // 4})
            lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                      {"status": "success"}]
            with LOCK:
                INSTALLED[name] = {"modified_at": now()}
            if not stream:
                return self.reply(200, {"status": "success"})
            return self.stream(lines)
        if self.path == "/api/show":
            with LOCK:
                if name not in INSTALLED:
                    return self.not_found(name)
            family, size, _ = REGISTRY[name]
            return self.reply(200, {
                "modelfile": f"FROM {name}\n", "parameters": "temperature 0.8", "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": family, "families": [family],
                            "parameter_size": size, "quantization_level": "Q4_K_M"},
                "model_info": {"general.architecture": family}, "modified_at": INSTALLED[name]["modified_at"],
            })
        if self.path in ("/api/generate", "/api/chat", "/api/embed"):
            with LOCK:
                if name not in INSTALLED:
                    return self.reply(404, {"error": f"model \"{name}\" not found, try pulling it first"})
        if self.path == "/api/generate":
            text = answer(req.get("prompt", ""), req.get("system"))
            return self.generate(name, text, stream, lambda piece, done: {"response": piece})
        if self.path == "/api/chat":
            messages = req.get("messages") or []
            last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
            text = answer(last, next((m.get("content") for m in messages if m.get("role") == "system"), None))
            return self.generate(name, text, stream,
                                 lambda piece, done: {"message": {"role": "assistant", "content": piece}})
        if self.path == "/api/embed":
            inputs = req.get("input", "")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            return self.reply(200, {"model": name, "embeddings": [embed(t) for t in inputs],
                                    "total_duration": 1000, "load_duration": 100, "prompt_eval_count": len(inputs)})
        return self.reply(404, {"error": "not found"})

    def generate(self, name, text, stream, shape):
        stats = {"done_reason": "stop", "total_duration": 5_000_000, "load_duration": 1_000_000,
                 "prompt_eval_count": 12, "prompt_eval_duration": 1_000_000,
                 "eval_count": len(text.split()), "eval_duration": 3_000_000}
        if not stream:
            return self.reply(200, {"model": name, "created_at": now(), **shape(text, True), "done": True, **stats})
        words = text.split(" ")
        lines = [{"model": name, "created_at": now(), **shape(w + (" " if i < len(words) - 1 else ""), False),
                  "done": False} for i, w in enumerate(words)]
        lines.append({"model": name, "created_at": now(), **shape("", True), "done": True, **stats})
        return self.stream(lines)


def answer(prompt, system):
    words = prompt.split()
    head = " ".join(words[:8])
    prefix = "Summary" if system is None else "Answer"
    return f"{prefix}: {len(words)} words, beginning \"{head}\"."


def embed(text):
    h = hashlib.sha256(text.encode()).digest()
    return [round((b - 128) / 128, 4) for b in h[:8]]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
server = Server(("127.0.0.1", port), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
