"""Reference solution for amp_training (hidden from students).

Written fresh (the notes use the deprecated torch.cuda.amp API and clip
scaled gradients).  float16: GradScaler with default settings, gradients
unscaled in place before clipping, scaler.step skips steps whose gradients
are not finite.  bfloat16: no scaler; the step is skipped by hand when any
gradient is not finite (checked after clipping, which keeps NaN/inf as they are).
"""
import torch


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):
    use_scaler = dtype == torch.float16
    scaler = torch.amp.GradScaler(device_type) if use_scaler else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=dtype):
            loss = loss_fn(model(x), y)
        losses.append(float(loss.detach()))
        if scaler is not None:
            scaler.scale(loss).backward()
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            scaler.step(optimizer)   # skipped when the unscaled gradients are not finite
            scaler.update()
        else:
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            finite = all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)
            if finite:
                optimizer.step()
    return losses
