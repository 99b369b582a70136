"""A vLLM server as a child process that never outlives the trainer.

The child runs in its own session (process group), so stopping it stops vLLM's engine-core processes too. It is
stopped at ``stop()`` (teardown, an exception, a graceful stop), at interpreter exit, and — when the trainer is
killed outright — by a watchdog in the child (``r1lit.rollout.vllm.serve``) that sees its parent vanish and kills its
own group.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from r1lit.errors import EngineError

# Variables through which torch.distributed / Lightning ranks find each other: the engine must not join them.
RENDEZVOUS_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                   "ROLE_RANK", "ROLE_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # `-m` runs this r1lit, not one in the working directory


def child_environment(extra: dict[str, str], cuda_visible_devices: str | None) -> dict[str, str]:
    """The trainer's environment without its rendezvous variables, with the engine's GPU and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in RENDEZVOUS_VARS and not k.startswith(("TORCHELASTIC_", "PL_TRAINER_"))}
    if cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    env["VLLM_SERVER_DEV_MODE"] = "1"  # the /collective_rpc and /reset_prefix_cache routes
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def request(method: str, url: str, payload: dict | None = None, timeout: float = 60.0) -> dict | list | None:
    """One JSON request; returns the decoded body (None when empty). HTTP errors raise with the server's text."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {url} → HTTP {error.code}: {error.read().decode(errors='replace')[:2000]}") from None
    return json.loads(body) if body else None


def log_tail(path: Path | str, lines: int = 40) -> str:
    """The last ``lines`` lines of an engine's log ("(no log)" where it cannot be read, e.g. on another node)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EngineProcess:
    """``python -m r1lit.rollout.vllm.serve`` with vLLM's server arguments, its output in ``log_path``."""

    def __init__(self, server_args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = Path(log_path).resolve()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "r1lit.rollout.vllm.serve", "--parent-pid", str(os.getpid()), "--", *server_args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=PACKAGE_ROOT)
            log.write(f"r1lit: started the engine process (pid={self.proc.pid}), its own process group\n".encode())
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def wait_ready(self, url: str, timeout: float) -> None:
        """Poll ``/health`` until it answers; a child that dies or a deadline that passes raises with the log's tail."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                cause, context = root_cause(self.log_path)
                raise EngineError(
                    f"the vLLM engine process exited with code {code} while starting: {cause}{memory_hint(cause)} "
                    f"(its log: {self.log_path})\n{context}"
                )
            try:
                request("GET", f"{url}/health", timeout=5)
                return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EngineError(
                    f"the vLLM engine process did not answer at {url}/health within {timeout:.0f} s "
                    f"(VLLMServerEngine startup_timeout); it was stopped. Its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds. Safe to call more than once."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # engine-core children left behind by a fast-exiting server
        if self.proc.poll() is None:
            self.proc.wait(timeout=grace)
        atexit.unregister(self.stop)


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")  # an exception's last traceback line
_PREFIX = re.compile(r"^(\(\w+ pid=\d+\)\s*)?(\w+ \d\d-\d\d [\d:]+ \[[^\]]*\]\s*)?")  # "(Worker pid=N) ERROR date [file]"
_NOT_A_CAUSE = ("see root cause above", "Engine core initialization failed", "Traceback (most recent call last)")


def root_cause(log_path: Path, context_lines: int = 8) -> tuple[str, str]:
    """The first line of the engine's log that names an exception with a message (the real cause; later ones
    wrap it: "Engine core initialization failed. See root cause above"), and the lines just before it."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)", ""
    for number, line in enumerate(lines):
        text = _PREFIX.sub("", line.strip())
        if _ERROR_LINE.match(text) and not any(s.lower() in text.lower() for s in _NOT_A_CAUSE):
            return text, "\n".join(lines[max(0, number - context_lines):number + 1])
    tail = [ln.strip() for ln in lines if ln.strip()]
    return (tail[-1] if tail else "(empty log)"), "\n".join(lines[-context_lines:])


def memory_hint(cause: str) -> str:
    """What to lower when the cause is memory (KV cache, GPU or host memory)."""
    words = r"memory|kv[ _]cache(?!_dtype)|\boom\b|cannot allocate|max_model_len"
    if re.search(words, cause.lower()):  # kv_cache_dtype names a dtype, not a size (vLLM prints it in other errors)
        return ("; lower model.engine's kv_cache_memory_bytes (or gpu_memory_utilization, max_model_len) until it "
                "fits the device")
    return ""


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
