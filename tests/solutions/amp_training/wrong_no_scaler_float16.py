"""Mutant: no GradScaler for float16 (skips non-finite steps by hand, as for bfloat16).

Small float16 gradients underflow to zero in the backward pass.

expect-fail: test_float16_small_loss_no_underflow
expect-message: underflow
"""
import torch


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        with torch.autocast(device_type, dtype=dtype):
            loss = loss_fn(model(x), y)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            optimizer.step()
        losses.append(loss.item())
    return losses
