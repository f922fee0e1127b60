"""Correct: one code path; the GradScaler is always built, enabled only for float16.

A disabled scaler makes scale/unscale_/update no-ops and its step() a plain
optimizer.step(), so the bfloat16 skip is done by hand from the gradients.
Clipping through clip_grad_norm_ on model.parameters() with foreach=False.
"""
import torch
from torch import amp
from torch.nn.utils import clip_grad_norm_


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    scaler = amp.GradScaler(device_type, enabled=(dtype == torch.float16))
    history = []
    for inputs, targets in batches:
        with amp.autocast(device_type=device_type, dtype=dtype):
            prediction = model(inputs)
            loss = loss_fn(prediction, targets)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            clip_grad_norm_(model.parameters(), max_grad_norm, foreach=False)
        if scaler.is_enabled():
            scaler.step(optimizer)
        else:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if torch.stack([torch.isfinite(g).all() for g in grads]).all():
                optimizer.step()
        scaler.update()
        history.append(loss.item())
    return history
