"""Exercise 11.5 -- a causal (decoder-only) attention language model, and generation.

Fill in ``CausalLM`` and ``generate`` below.  Their docstrings are the whole
contract: the grader checks exactly what they say.  See section 11.4.7 of the
notes for causal masking (its MultiheadAttention example is not allowed here).

Write the attention yourself.  Banned (your file is rejected if it uses them,
and the operators your code runs are traced): ``nn.Transformer`` and all
``nn.Transformer*`` classes, ``nn.MultiheadAttention``,
``F.scaled_dot_product_attention``, ``F.multi_head_attention_forward`` (and
the ATen operators behind them).  Everything else in torch is fine
(``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``, ``torch.tril``, ...).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalLM(nn.Module):
    """A GPT-style decoder-only language model over tokens ``0 .. vocab_size - 1``.

    Architecture (how you organise the code and name the parameters is up to you):

        token embedding (vocab_size -> d_model) + position information for
        positions 0 .. max_len - 1 (learned position embeddings, or fixed
        sinusoidal encodings),
        dropout,
        n_layers pre-LayerNorm blocks, each
            x = x + Attention(LayerNorm(x))   causal multi-head self-attention
                                              with n_heads heads of size
                                              d_model // n_heads, scores scaled
                                              by 1 / sqrt(d_model // n_heads),
                                              and an output projection
            x = x + MLP(LayerNorm(x))         e.g. Linear(d_model, 4 d_model),
                                              GELU, Linear(4 d_model, d_model)
        a final LayerNorm and a linear head (d_model -> vocab_size).

    ``dropout`` (attention weights, residual branches, embeddings) is active
    only in training mode; the grader uses ``dropout=0.0`` except where noted.

    Requirements (all graded):
        * ``forward(idx)``: ``idx`` is an int64 tensor (B, T) with 1 <= T <= max_len.
          Returns float32 logits (B, T, vocab_size) on ``idx``'s device;
          ``logits[:, t]`` scores the token at position t + 1.  Raises
          ``ValueError`` when T > max_len.
        * Causal: the logits at position t depend only on the tokens at
          positions 0 .. t.  Changing any token after t must leave the logits
          at positions <= t unchanged (to float32 rounding), for every t,
          including t = 0.  Mask the scores of future positions *before* the
          softmax.
        * Uses its context: the logits at position t do change when the
          tokens before t change (every position attends to itself and to all
          earlier positions).
        * With PyTorch's default initialization, the mean cross-entropy of the
          logits on uniformly random tokens is within 1 nat of ln(vocab_size)
          (for the default sizes and for small ones such as d_model=32).
        * It learns: built with vocab_size=16, d_model=32, n_heads=4,
          n_layers=2, max_len=32 and trained in training mode with Adam
          (lr 0.01, 400 steps, batches of 32 sequences of 24 tokens, next-token
          cross-entropy) on a synthetic corpus in which every token is a fixed
          function of the token a few positions back, its loss on held-out
          sequences at the predictable positions must be below 0.4 nats
          (ln 16 = 2.77 is chance).  This needs both attention and position
          information.
        * Low precision: under ``torch.autocast`` with bfloat16 or float16 the
          forward pass runs and its logits are finite (no NaN, no infinity,
          no error).  Note that ``scores.masked_fill(mask, -1e9)`` raises in
          float16, whose largest magnitude is 65504: fill with ``float("-inf")``
          (or ``torch.finfo(scores.dtype).min``) instead.
        * No banned API (see the top of the file), also not by another path:
          the ATen operators of the forward and backward passes and of
          ``generate`` are traced.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 max_len: int = 128, dropout: float = 0.0):
        super().__init__()
        raise NotImplementedError("CausalLM.__init__ is not implemented yet")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 token ids -> (B, T, vocab_size) float32 logits; ValueError if T > max_len."""
        raise NotImplementedError("CausalLM.forward is not implemented yet")


def generate(model: CausalLM, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None) -> torch.Tensor:
    """Extend every sequence of ``idx`` (B, T) by ``max_new_tokens`` tokens, one at a time.

    Returns an int64 tensor (B, T + max_new_tokens) on ``idx``'s device whose
    first T columns are ``idx``.  Each step:

        * feeds the model the last ``model.max_len`` tokens at most (the
          context is cropped, so prompts longer than max_len work, and so do
          generations that grow past it: never a ValueError);
        * takes the logits of the last position, ``z`` (B, vocab_size);
        * ``temperature == 0``: greedy, the next token is ``z.argmax(-1)``
          (no division by zero);
        * ``temperature > 0``: samples from ``softmax(z / temperature)``
          (``torch.multinomial``), restricted, when ``top_k`` is given
          (1 <= top_k <= vocab_size), to the ``top_k`` tokens with the largest
          logits (the others get probability zero; the kept ones keep their
          relative probabilities);
        * appends the chosen tokens.

    The model is in eval mode while generating (dropout off; graded with a
    model built with dropout > 0) and is put back in the mode it had before
    (training or eval) on return.  The whole
    generation runs without building an autograd graph (``torch.no_grad()``).

    Graded: shapes and the prompt; greedy output equals the argmax of the
    model's own logits at every step; with ``top_k`` every sample is among the
    model's top_k tokens at that step, and top_k=1 is greedy; the empirical
    distribution of many samples matches ``softmax(z / temperature)``
    (within the top_k when given); cropping; mode restored; no_grad.
    """
    raise NotImplementedError("generate is not implemented yet")
