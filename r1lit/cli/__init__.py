"""The ``r1lit`` command (``r1lit fit --config …``, ``r1lit export``): LightningCLI over GRPOModule and MathDataModule,
with the whole-config checks and ``--ckpt_path last`` resolution that run before anything loads."""

from r1lit.cli.command import R1LitCLI, main

__all__ = ["R1LitCLI", "main"]
