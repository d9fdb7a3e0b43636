"""Fixtures for messa.ai tests (see ai_support for the skip-or-fail rule)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ai_support import OpenAIStub, require_debian, require_python

from messa.ai.engines.intents import IntentSet, load_intents
from messa.ai.engines.langdetect import LangidDetector


@pytest.fixture(scope="session")
def intents() -> IntentSet:
    return load_intents()


@pytest.fixture(scope="session")
def langid_detector() -> LangidDetector:
    require_python("langid")
    detector = LangidDetector()
    detector.load()
    return detector


@pytest.fixture
def apertium_installed() -> None:
    require_debian("apertium", "apertium-eng-spa", "apertium-fr-es")


# --- a stand-in for llama-server: a real HTTP server on loopback -----------------


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    state: OpenAIStub

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._send(200, json.dumps({"object": "list", "data": [{"id": "stub"}]}).encode())
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            state.requests.append({"path": self.path, "body": body})
            if state.redirect_to:
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path != "/v1/chat/completions":
                self._send(404, b"{}")
                return
            payload = (
                state.raw_body
                or json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": state.reply},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
            )
            self._send(state.status, payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = OpenAIStub(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
