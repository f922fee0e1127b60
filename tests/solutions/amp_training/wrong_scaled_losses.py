"""Mutant: records the scaled loss (scaler.scale(loss)) instead of the loss itself.

expect-fail: test_returns_unscaled_losses
expect-message: scaled
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
        scaled = scaler.scale(loss)
        scaled.backward()
        scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler.is_enabled():
            scaler.step(optimizer)
        elif all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            optimizer.step()
        scaler.update()
        losses.append(scaled.item())
    return losses
