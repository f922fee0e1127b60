"""Mutant: unscales, then calls optimizer.step() itself: the scaler's skip is bypassed (NaN parameters).

expect-fail: test_nonfinite_batch_skipped
expect-message: NaN
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
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler.is_enabled() or all(torch.isfinite(p.grad).all() for p in model.parameters()):
            optimizer.step()
        scaler.update()
        losses.append(loss.item())
    return losses
