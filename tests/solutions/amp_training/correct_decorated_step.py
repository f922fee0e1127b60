"""Correct: the forward is a helper decorated with torch.autocast; get_total_norm for the checks.

Gradients are zeroed (not set to None) before each step; bfloat16 skips a
step when torch.nn.utils.get_total_norm of the gradients is not finite.
"""
import torch
import torch.nn.utils as nn_utils


def train_amp(model, loss_fn, batches, optimizer, *, device_type, dtype=torch.float16,
              max_grad_norm=None):

    @torch.autocast(device_type=device_type, dtype=dtype)
    def forward(x, y):
        return loss_fn(model(x), y)

    params = list(model.parameters())
    scaler = torch.amp.GradScaler(device=device_type) if dtype == torch.float16 else None

    def one_step(x, y):
        optimizer.zero_grad(set_to_none=False)
        loss = forward(x, y)
        if scaler is None:
            loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            if not torch.isfinite(nn_utils.get_total_norm(grads)):
                return loss
            if max_grad_norm is not None:
                nn_utils.clip_grad_norm_(params, max_norm=max_grad_norm)
            optimizer.step()
            return loss
        scaler.scale(loss).backward()
        if max_grad_norm is not None:
            scaler.unscale_(optimizer)
            nn_utils.clip_grad_norm_(params, max_norm=max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        return loss

    return [one_step(x, y).item() for x, y in batches]
