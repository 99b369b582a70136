"""r1lit: R1-Zero-style GRPO for small language models, on PyTorch Lightning."""

__version__ = "0.1.0"
