"""Mutant: the notes' deprecated torch.cuda.amp API: on CPU autocast (and the scaler) silently switch off.

expect-fail: test_autocast_active
expect-message: device_type
"""
import warnings

import torch

warnings.filterwarnings("ignore")


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    scaler = torch.cuda.amp.GradScaler(enabled=dtype == torch.float16)
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        with torch.cuda.amp.autocast(dtype=dtype):
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
