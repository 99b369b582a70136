"""Which vLLM server serves which training rank, and which rank starts it and pushes weights into it.

An engine per node (``VLLMServerEngine(engine_per_node=True)``, the default): node n's local rank 0 starts engine n
on that node's reserved GPUs (or attaches to the n-th ``base_url``) and pushes weights into it; the ranks of node n
send it their prompts, so prompts and completions stay on the node. One engine for the job (``engine_per_node=False``
or a single ``base_url``): global rank 0 starts engine 0 on node 0 and pushes into it; every rank sends it prompts,
ranks of other nodes over the network. Pure functions: no process is started here.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1lit.errors import ConfigError


@dataclass(frozen=True)
class EngineSite:
    """One rank's place among the job's engines."""

    index: int
    """The engine that serves this rank's prompts (its node's with an engine per node, else 0)."""
    count: int
    """Engines in the job."""
    owner: bool
    """This rank starts (or attaches to) that engine, pushes the weights into it and stops it."""
    sharing: int
    """Training ranks that send that engine their prompts."""
    node: int
    """The node the engine runs on."""
    base_url: str | None
    """The attached server's URL; None when r1lit starts the server."""

    @property
    def label(self) -> str:
        """``engine_<index>``: the name in metric tags (``time/generate/engine_<i>``) and messages."""
        return f"engine_{self.index}"

    @property
    def log_name(self) -> str:
        """The started server's log file in the run folder: one per engine (a shared run folder keeps them apart)."""
        return "vllm_server.log" if self.count == 1 else f"vllm_server_node{self.node}.log"


def engine_site(global_rank: int, local_rank: int, node_rank: int, num_nodes: int, world_size: int,
                engine_per_node: bool, base_url: str | list[str] | None) -> EngineSite:
    """Where this rank's engine is. ``base_url``: one URL = one attached engine for all nodes; a list = one attached
    engine per node, in node order (its length must be ``num_nodes``), or with ``engine_per_node`` false a list of
    one URL for the job."""
    nodes = max(num_nodes, 1)
    listed = base_url is not None and not isinstance(base_url, str)
    urls = [base_url] if isinstance(base_url, str) else (list(base_url) if listed else None)
    if listed and engine_per_node and len(urls) != nodes:
        raise ConfigError(
            f"VLLMServerEngine base_url lists {len(urls)} server(s) for trainer.num_nodes={nodes}: give one URL per "
            "node, in node order (node n's ranks send their prompts to the n-th), or a single URL for one engine "
            "that serves every node"
        )
    if listed and not engine_per_node and len(urls) != 1:
        raise ConfigError(f"VLLMServerEngine base_url lists {len(urls)} servers but engine_per_node is false (one "
                          "engine for the whole job): give one URL, or set engine_per_node: true with one URL per node")
    if engine_per_node and (urls is None or listed):
        return EngineSite(index=node_rank, count=nodes, owner=local_rank == 0, sharing=max(world_size // nodes, 1),
                          node=node_rank, base_url=None if urls is None else urls[node_rank].rstrip("/"))
    return EngineSite(index=0, count=1, owner=global_rank == 0, sharing=max(world_size, 1), node=0,
                      base_url=None if urls is None else urls[0].rstrip("/"))
