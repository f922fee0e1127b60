"""Correct: clipping and the finite check written by hand, gradients set to None after each step.

float16: scaler.unscale_ then a hand-written global-norm clip; the skip is
left to scaler.step.  bfloat16: the same norm decides both the clip and the
skip (a non-finite norm means a non-finite gradient somewhere).
"""
import math

import torch


def _global_norm(params):
    total = torch.zeros((), dtype=torch.float64)
    for p in params:
        if p.grad is not None:
            total = total + p.grad.detach().double().pow(2).sum().cpu()
    return math.sqrt(float(total)) if math.isfinite(float(total)) else math.inf


def _clip(params, max_norm, norm):
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for p in params:
            if p.grad is not None:
                p.grad.detach().mul_(coef)


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    params = [p for g in optimizer.param_groups for p in g["params"]]
    half = dtype is torch.float16
    scaler = torch.amp.GradScaler(device_type) if half else None
    out = [0.0] * len(batches)
    i = 0
    while i < len(batches):
        x, y = batches[i]
        with torch.autocast(device_type=device_type, dtype=dtype):
            loss = loss_fn(model(x), y)
        out[i] = float(loss.detach().cpu())
        (scaler.scale(loss) if half else loss).backward()
        if half:
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                norm = _global_norm(params)
                if math.isfinite(norm):
                    _clip(params, max_grad_norm, norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            norm = _global_norm(params)
            if math.isfinite(norm):
                if max_grad_norm is not None:
                    _clip(params, max_grad_norm, norm)
                optimizer.step()
        for p in params:
            p.grad = None
        i += 1
    return out
