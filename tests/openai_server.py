"""A real OpenAI-compatible chat endpoint on 127.0.0.1, answering with a real local model (for tests).

`fail` lists HTTP statuses to answer, in order, before serving requests normally: how the tests make the
server rate-limit (429) and fail (500) for a while.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIServer:
    def __init__(self, backend: Any, fail: list[int] | tuple[int, ...] = ()) -> None:
        self.backend = backend
        self.failures = list(fail)
        self.requests = 0
        self.authorizations: set[str] = set()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, body: dict[str, Any], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
            if authorization:
                self.authorizations.add(authorization)
            status = self.failures.pop(0) if self.failures else 200
        if status != 200:
            return status, {"error": {"message": f"injected {status}", "type": "test"}}
        with self._model_lock:
            completion = self.backend.generate([body["messages"]])[0]
        return 200, {
            "id": f"chatcmpl-{self.requests}", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": completion.tokens_in, "completion_tokens": completion.tokens_out},
        }


def _handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            status, reply = server.answer(body, self.headers.get("Authorization"))
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
