"""The ``r1lit`` command (``r1lit fit --config …``, ``r1lit export``): LightningCLI over GRPOModule and MathDataModule,
with the whole-config checks and ``--ckpt_path last`` resolution that run before anything loads."""

from r1lit.training.host_memory import huge_pages_for_large_tensors

huge_pages_for_large_tensors()  # before torch is imported: it reads the switch at its first allocation

from r1lit.cli.command import R1LitCLI, main  # noqa: E402

__all__ = ["R1LitCLI", "main"]
