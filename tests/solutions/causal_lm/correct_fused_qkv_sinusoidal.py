"""Correct: fused qkv projection split with one permute, an additive -inf mask buffer,
fixed sinusoidal positions, ReLU MLP, generation under inference_mode with sorted top-k."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal(max_len, d_model):
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class Attention(nn.Module):
    def __init__(self, d, h, max_len, p):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(p)
        bias = torch.full((max_len, max_len), float("-inf")).triu(1)
        self.register_buffer("bias", bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-1, -2) / math.sqrt(C // self.h) + self.bias[:T, :T]
        a = self.drop(F.softmax(s, dim=-1))
        return self.drop(self.proj((a @ v).permute(0, 2, 1, 3).reshape(B, T, C)))


class CausalLM(nn.Module):
    def __init__(self, vocab_size, d_model=64, n_heads=4, n_layers=2, max_len=128, dropout=0.0):
        super().__init__()
        self.max_len = max_len
        self.emb = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pe", sinusoidal(max_len, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            self.layers.append(nn.ModuleDict(dict(
                n1=nn.LayerNorm(d_model), att=Attention(d_model, n_heads, max_len, dropout),
                n2=nn.LayerNorm(d_model),
                ff=nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(),
                                 nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)))))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, idx):
        T = idx.size(1)
        if T > self.max_len:
            raise ValueError("too long")
        x = self.drop(self.emb(idx) + self.pe[:T])
        for layer in self.layers:
            x = x + layer["att"](layer["n1"](x))
            x = x + layer["ff"](layer["n2"](x))
        return self.out(self.norm(x))


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None):
    mode = model.training
    model.eval()
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            z = model(idx[:, -model.max_len:])[:, -1]
            if temperature == 0:
                nxt = z.argmax(-1, keepdim=True)
            else:
                z, order = torch.sort(z / temperature, dim=-1, descending=True)
                if top_k is not None:
                    z[:, top_k:] = float("-inf")
                pick = torch.multinomial(torch.softmax(z, -1), 1)
                nxt = order.gather(-1, pick)
            idx = torch.cat((idx, nxt), 1)
    model.train(mode)
    return idx
