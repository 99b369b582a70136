"""The default optimizer: the recipe's AdamW through torch's fused kernel, the same update as the per-parameter loop."""

import torch

from r1lit.training.optim import default_optimizer


def test_default_optimizer_is_the_recipes_adamw_fused_with_the_loops_update():
    """Three steps on two CPU parameters with fixed gradients: the fused default moves them as AdamW's reference
    loop (``foreach=False``) with the same hyper-parameters does, within float32 rounding."""
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(7)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(3)]
    fused_params = [torch.nn.Parameter(p.clone()) for p in start]
    loop_params = [torch.nn.Parameter(p.clone()) for p in start]
    fused = default_optimizer(fused_params)
    loop = torch.optim.AdamW(loop_params, lr=3e-6, betas=(0.9, 0.99), weight_decay=0.0, foreach=False)
    assert fused.defaults["fused"] and fused.defaults["lr"] == 3e-6 and fused.defaults["betas"] == (0.9, 0.99)
    for step in grads:
        for opt, params in ((fused, fused_params), (loop, loop_params)):
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
    for a, b, s in zip(fused_params, loop_params, start):
        assert not torch.equal(a.detach(), s)  # it moved
        torch.testing.assert_close(a.detach(), b.detach(), atol=1e-7, rtol=1e-6)
