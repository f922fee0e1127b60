"""Mutant: accepts max_grad_norm but never clips.

expect-fail: test_clipping_on_unscaled_gradients
expect-message: not clipped
"""
import torch


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        with torch.autocast(device_type, dtype=dtype):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if scaler.is_enabled():
            scaler.step(optimizer)
        elif all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            optimizer.step()
        scaler.update()
        losses.append(loss.item())
    return losses
