"""Correct: heads folded into the batch for torch.bmm, torch.where with a tril bool mask,
post-attention reshape through contiguous views, ModuleList of explicit Linear layers,
and a top-k threshold via kthvalue."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, max_len, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.wq = nn.Linear(d_model, d_model)
        self.wk = nn.Linear(d_model, d_model)
        self.wv = nn.Linear(d_model, d_model)
        self.wo = nn.Linear(d_model, d_model)
        self.p = dropout
        self.register_buffer("keep", torch.tril(torch.ones(max_len, max_len)).bool(), persistent=False)

    def split(self, t):
        B, T, C = t.shape
        return t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2).reshape(
            B * self.n_heads, T, C // self.n_heads)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.split(self.wq(x)), self.split(self.wk(x)), self.split(self.wv(x))
        s = torch.bmm(q * (C // self.n_heads) ** -0.5, k.transpose(1, 2))
        s = torch.where(self.keep[:T, :T], s, torch.tensor(float("-inf"), dtype=s.dtype, device=s.device))
        a = F.dropout(F.softmax(s, dim=-1), self.p, self.training)
        y = torch.bmm(a, v).view(B, self.n_heads, T, C // self.n_heads).transpose(1, 2).contiguous()
        return F.dropout(self.wo(y.view(B, T, C)), self.p, self.training)


class CausalLM(nn.Module):
    def __init__(self, vocab_size, d_model=64, n_heads=4, n_layers=2, max_len=128, dropout=0.0):
        super().__init__()
        self.vocab_size, self.max_len, self.p = vocab_size, max_len, dropout
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_len, d_model)
        self.ln_a = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.attn = nn.ModuleList(SelfAttention(d_model, n_heads, max_len, dropout) for _ in range(n_layers))
        self.ln_b = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.up = nn.ModuleList(nn.Linear(d_model, 4 * d_model) for _ in range(n_layers))
        self.down = nn.ModuleList(nn.Linear(4 * d_model, d_model) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx):
        b, t = idx.shape
        if t > self.max_len:
            raise ValueError("sequence longer than max_len")
        h = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))[None]
        h = F.dropout(h, self.p, self.training)
        for ln_a, attn, ln_b, up, down in zip(self.ln_a, self.attn, self.ln_b, self.up, self.down):
            h = h + attn(ln_a(h))
            h = h + F.dropout(down(F.gelu(up(ln_b(h)))), self.p, self.training)
        return self.head(self.ln_f(h))


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None):
    was_training = model.training
    model.train(False)
    out = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            z = model(out[:, -model.max_len:])[:, -1, :]
            if temperature <= 0:
                nxt = z.max(dim=-1).indices[:, None]
            else:
                z = z / temperature
                if top_k:
                    cut = z.kthvalue(z.shape[-1] - top_k + 1, dim=-1, keepdim=True).values
                    z = z.masked_fill(z < cut, float("-inf"))
                nxt = torch.multinomial(z.softmax(-1), 1)
            out = torch.cat([out, nxt], dim=-1)
    model.train(was_training)
    return out
