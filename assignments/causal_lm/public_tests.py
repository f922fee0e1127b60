"""Public tests for causal_lm.py: run ``python -m pytest public_tests.py`` next to it.

A few checks of the contract in the docstrings, on a tiny model.  Passing them does not
mean full marks: the grader checks more (e.g. that the model learns, sampling statistics).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from causal_lm import CausalLM, generate

V, T_MAX = 11, 8


def tiny(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return CausalLM(vocab_size=V, d_model=16, n_heads=2, n_layers=2, max_len=T_MAX, dropout=dropout)


def tokens(b, t, seed=0):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_value_error():
    model = tiny()
    logits = model(tokens(3, 5))
    assert logits.shape == (3, 5, V) and logits.dtype == torch.float32
    assert model(tokens(1, T_MAX)).shape == (1, T_MAX, V)
    with pytest.raises(ValueError):
        model(tokens(1, T_MAX + 1))


def test_causal_and_uses_context():
    model = tiny().eval()
    idx = tokens(2, T_MAX, seed=1)
    with torch.no_grad():
        base = model(idx)
        for t in range(T_MAX - 1):
            changed = idx.clone()
            changed[:, t + 1:] = (changed[:, t + 1:] + 1) % V     # change every token after t
            torch.testing.assert_close(model(changed)[:, :t + 1], base[:, :t + 1],
                                       rtol=1e-5, atol=1e-5, msg=f"position {t} sees the future")
        changed = idx.clone()
        changed[:, 0] = (changed[:, 0] + 1) % V
        assert not torch.allclose(model(changed)[:, -1], base[:, -1]), "the last position ignores token 0"


def test_initial_loss_near_ln_vocab():
    model = tiny(seed=3)
    idx = tokens(16, T_MAX, seed=3)
    with torch.no_grad():
        loss = F.cross_entropy(model(idx).reshape(-1, V), tokens(16, T_MAX, seed=4).reshape(-1))
    assert abs(loss.item() - math.log(V)) < 1.0, loss.item()


def test_generate_greedy_and_crop():
    model = tiny(seed=5).eval()
    prompt = tokens(2, 6, seed=5)
    out = generate(model, prompt, max_new_tokens=5, temperature=0)
    assert out.shape == (2, 11) and out.dtype == torch.int64
    assert torch.equal(out[:, :6], prompt)
    seq = prompt
    with torch.no_grad():
        for _ in range(5):     # greedy by hand, cropping the context to max_len
            nxt = model(seq[:, -T_MAX:])[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(out, seq)
    top1 = generate(model, prompt, max_new_tokens=5, temperature=1.0, top_k=1)
    assert torch.equal(top1, seq), "top_k=1 is not greedy"


def test_generate_long_prompt_mode_and_no_grad():
    model = tiny(seed=6, dropout=0.1).train()
    out = generate(model, tokens(1, T_MAX + 3, seed=6), max_new_tokens=4, temperature=0.8, top_k=3)
    assert out.shape == (1, T_MAX + 7)
    assert ((out >= 0) & (out < V)).all()
    assert model.training, "generate did not restore training mode"
    model.eval()
    generate(model, tokens(1, 2), max_new_tokens=1)
    assert not model.training, "generate did not restore eval mode"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast_logits_finite(dtype):
    model = tiny(seed=7)
    with torch.autocast("cpu", dtype=dtype):
        logits = model(tokens(2, T_MAX, seed=7))
    assert torch.isfinite(logits).all()
