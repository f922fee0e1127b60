"""Correct: one module per head (separate q/k/v Linear per head), einsum scores, a
torch.triu mask built on every call and filled with finfo(dtype).min, learned
position parameter, and top-k sampling among the top-k values."""
import math

import torch
from torch import nn


class Head(nn.Module):
    def __init__(self, d_model, d_head, dropout):
        super().__init__()
        self.q = nn.Linear(d_model, d_head, bias=False)
        self.k = nn.Linear(d_model, d_head, bias=False)
        self.v = nn.Linear(d_model, d_head, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        T = x.shape[1]
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = torch.einsum("bid,bjd->bij", q, k) / math.sqrt(q.shape[-1])
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        w = self.dropout(torch.softmax(scores.float(), dim=-1).to(v.dtype))
        return torch.einsum("bij,bjd->bid", w, v)


class MultiHead(nn.Module):
    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.heads = nn.ModuleList([Head(d_model, d_model // n_heads, dropout) for _ in range(n_heads)])
        self.o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.o(torch.cat([h(x) for h in self.heads], dim=-1)))


class Block(nn.Module):
    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.norm_a = nn.LayerNorm(d_model)
        self.mha = MultiHead(d_model, n_heads, dropout)
        self.norm_m = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.mha(self.norm_a(x))
        return x + self.dropout(self.fc2(torch.nn.functional.gelu(self.fc1(self.norm_m(x)))))


class CausalLM(nn.Module):
    def __init__(self, vocab_size, d_model=64, n_heads=4, n_layers=2, max_len=128, dropout=0.0):
        super().__init__()
        self.max_len = max_len
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(d_model, n_heads, dropout) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size)

    def forward(self, idx):
        if idx.shape[-1] > self.max_len:
            raise ValueError(f"{idx.shape[-1]} tokens, but max_len is {self.max_len}")
        x = self.token(idx) + self.position[: idx.shape[-1]]
        return self.lm_head(self.norm(self.blocks(self.dropout(x))))


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None):
    training = model.training
    model.eval()
    try:
        steps = 0
        while steps < max_new_tokens:
            logits = model(idx[:, max(0, idx.shape[1] - model.max_len):])[:, -1, :]
            if temperature == 0:
                token = torch.argmax(logits, dim=-1).unsqueeze(-1)
            elif top_k is not None:
                values, where = torch.topk(logits, top_k, dim=-1)
                choice = torch.multinomial(torch.softmax(values / temperature, dim=-1), 1)
                token = torch.gather(where, 1, choice)
            else:
                token = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)
            idx = torch.cat([idx, token], dim=1)
            steps += 1
    finally:
        model.train(training)
    return idx
