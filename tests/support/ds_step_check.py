"""Test-only: a real ``deepspeed.initialize`` of one DeepSpeed JSON on CPU (world 1, gloo), through the CPU strategy's
own ``_setup_model_and_optimizer``, then the GRPO step path: a clean update, an update whose gradient (or loss) is
NaN, another clean update. Prints one JSON line: the engine's data types, the guard's count, and the weights.

    python ds_step_check.py CONFIG.json {none|nan_grad|nan_loss}
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))


class NaNGradient(torch.autograd.Function):
    """Identity forward (a finite loss), NaN backward: a gradient that is not finite while the loss is."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class Stepper:
    """What Lightning's optimizer hands the module under DeepSpeed: step = the engine's step."""

    def __init__(self, engine):
        self.engine = engine

    def step(self):
        self.engine.step()

    def zero_grad(self, set_to_none=True):
        self.engine.optimizer.zero_grad(set_to_none=set_to_none)


def main(path: str, fault: str) -> None:
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    from ds_cpu import CPUDeepSpeedStrategy
    from r1lit.training.deepspeed import configure_deepspeed
    from r1lit.training.nonfinite import NonFiniteGuard, guarded_step

    strategy = CPUDeepSpeedStrategy(config=path)
    configure_deepspeed(strategy, max_grad_norm=1.0e6, micro_batch_size=4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    engine, _ = strategy._setup_model_and_optimizer(model, optimizer)
    guard, stepper = NonFiniteGuard(max_consecutive=3), Stepper(engine)
    dtype = next(engine.module.parameters()).dtype
    stepped = []
    for k, kind in enumerate(["clean", fault, "clean"]):
        if kind == "none":
            continue
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(k if kind == "clean" else 99)).to(dtype)
        for micro in range(2):  # two micro-batches make one update, as GRPO's optimise stage does
            engine.set_gradient_accumulation_boundary(micro == 1)
            out = engine(x[micro * 2:(micro + 1) * 2])
            if kind == "nan_grad":
                out = NaNGradient.apply(out)
            loss = out.float().pow(2).mean()
            if kind == "nan_loss":
                loss = loss * float("nan")
            engine.backward(loss)
        ok, norm = guarded_step(guard, stepper, float(loss), None, None, engine)
        stepped.append(ok)
    from deepspeed.utils import safe_get_full_fp32_param

    weights = [safe_get_full_fp32_param(p).flatten().tolist() if safe_get_full_fp32_param(p) is not None
               else p.detach().float().flatten().tolist() for p in engine.module.parameters()]
    model_dtype, accum_dtype = engine.get_data_types()
    print(json.dumps({
        "model_dtype": str(model_dtype), "grad_accum_dtype": str(accum_dtype),
        "optimizer_accum_dtype": str(getattr(engine.optimizer, "gradient_accumulation_dtype", None)),
        "stepped": stepped, "skipped": guard.skipped, "weights": weights,
    }))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
