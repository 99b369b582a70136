"""The transport's deadline, the trainer address it gives the engine, and the world size it reads from the server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1lit.errors import EngineError
from r1lit.rollout.vllm.transports import GlooTransport, NCCLTransport, run_with_deadline, trainer_address


def test_a_call_that_hangs_fails_within_the_deadline_naming_the_engine():
    never = threading.Event()
    start = time.monotonic()
    with pytest.raises(EngineError, match=r"the weight push did not finish within 1 s .*not serving the pushed weights"):
        run_with_deadline(never.wait, 1.0, "the weight push")
    assert time.monotonic() - start < 3


def test_a_call_that_fails_raises_its_error_with_the_engine_named():
    def broken():
        raise ValueError("metadata() disagrees")

    with pytest.raises(EngineError, match=r"failed \(ValueError: metadata\(\) disagrees\): the engine is not serving"):
        run_with_deadline(broken, 5.0, "the weight push")


def test_a_call_that_finishes_returns():
    done = []
    run_with_deadline(lambda: done.append(1), 5.0, "the weight push")
    assert done == [1]


def test_trainer_address_is_loopback_for_a_local_server():
    assert trainer_address("http://127.0.0.1:8000") == "127.0.0.1"
    assert trainer_address("http://localhost:8000") == "127.0.0.1"


class WorldSize(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"world_size": 4}).encode() if self.path == "/get_world_size" else b"{}"
        self.send_response(200 if self.path == "/get_world_size" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.vllm
@pytest.mark.parametrize("transport", [NCCLTransport(master_address="10.1.2.3"), GlooTransport()],
                         ids=["nccl", "gloo"])
def test_the_group_spans_the_trainer_and_every_worker_the_server_reports(transport, monkeypatch):
    """A server with TP × DP = 4 workers: the transfer group is 1 + 4, not 2; the address is the configured one
    (or loopback for a local server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), WorldSize)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen = []
    monkeypatch.setattr(type(transport), "_trainer_init", lambda self, info: seen.append(info))
    try:
        transport.connect(f"http://127.0.0.1:{server.server_address[1]}", timeout=10)
    finally:
        server.shutdown()
    (info,) = seen
    assert info.world_size == 5 and info.rank == 0
    assert info.master_address == ("127.0.0.1" if isinstance(transport, GlooTransport) else "10.1.2.3")
    assert info.backend == transport.backend
    if isinstance(transport, GlooTransport):
        assert info.timeout_s == 10 and info.packed is False
