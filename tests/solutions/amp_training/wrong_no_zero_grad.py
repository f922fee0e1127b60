"""Mutant: never zeroes the gradients: each step applies the sum of all gradients so far.

With float16 this hides behind the scaler (old, already unscaled gradients are
divided by the scale again at each step, so they fade by 65536x), until a
non-finite batch leaves NaN gradients behind that every later step adds to.

expect-fail: test_matches_reference_bfloat16, test_nonfinite_batch_skipped
expect-message: parameter
"""
import torch


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)
    losses = []
    for x, y in batches:
        with torch.autocast(device_type, dtype=dtype):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler.is_enabled():
            scaler.step(optimizer)
        elif all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            optimizer.step()
        scaler.update()
        losses.append(loss.item())
    return losses
