"""The message format between the trusted judge and a sandboxed worker.

This file is imported on both sides of the trust boundary: by the judge as
``runner.wire`` and, inside the sandbox, by the worker as a top-level ``wire``
module.  It must therefore import nothing but the standard library, torch and
safetensors.

A frame is ``8-byte little-endian length`` + payload.  A payload is a 4-byte
header length, a JSON header and an optional safetensors blob holding every
tensor of the message.  Decoding never unpickles anything: JSON and safetensors
can only produce plain values and plain dense tensors, so whatever a hostile
worker writes, the judge gets data, never code.

Values are JSON primitives or single-key tagged objects:

    {"$list": [...]}, {"$tuple": [...]}, {"$dict": [[key, value], ...]},
    {"$tensor": "t0", "device": "cpu"}, {"$dtype": "float32"},
    {"$device": "cuda:0"}, {"$ref": 7, "type": "UNet"}

``$ref`` names an object that stays inside the worker (a module, an
optimizer, anything that is not plain data).
"""
from __future__ import annotations

import json
import os
import select
import struct
import time

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

FRAME_HEADER = struct.Struct("<Q")
JSON_HEADER = struct.Struct("<I")
MAX_JSON_BYTES = 64 << 20
MAX_DEPTH = 64

# safetensors supports exactly these; anything else is refused with a message.
DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class WireError(Exception):
    """A value cannot be encoded, or a message is malformed or too large."""


class Ref:
    """A handle to an object that lives inside a worker."""

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str):
        self.id = id
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<remote {self.type_name} #{self.id}>"


def describe_type(value) -> str:
    t = type(value)
    mod = t.__module__
    return t.__qualname__ if mod in ("builtins", None) else f"{mod}.{t.__qualname__}"


def check_plain_tensor(t: torch.Tensor) -> None:
    """Refuse tensors the other side could not rebuild as plain dense data."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        raise WireError(f"a tensor subclass ({describe_type(t)}) cannot be returned; "
                        "return a plain torch.Tensor")
    if t.layout != torch.strided or t.is_nested or t.is_quantized:
        raise WireError(f"a {t.layout} tensor cannot be returned; return a dense torch.Tensor")
    if t.device.type == "meta":
        raise WireError("a meta tensor (no data) cannot be returned")
    if t.dtype not in DTYPE_NAMES:
        raise WireError(f"tensors of dtype {t.dtype} are not supported")


class Encoder:
    """Turns a value into a JSON-able tree plus a dict of tensors.

    ``on_unknown(value)`` is called for anything that is not plain data; it
    must return a JSON-able replacement (the worker stores the object and
    returns a ``$ref``) or raise WireError.
    """

    def __init__(self, on_unknown=None, max_bytes: int | None = None):
        self.tensors: dict[str, torch.Tensor] = {}
        self.on_unknown = on_unknown
        self.max_bytes = max_bytes
        self.nbytes = 0

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value is nested too deeply")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and type(value) in (int, bool):
            return value
        if type(value) is float:
            return value
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, torch.dtype):
            if value not in DTYPE_NAMES:
                raise WireError(f"dtype {value} is not supported")
            return {"$dtype": DTYPE_NAMES[value]}
        if isinstance(value, torch.device):
            return {"$device": str(value)}
        if isinstance(value, Ref):
            return {"$ref": value.id, "type": value.type_name}
        if type(value) in (list, tuple, torch.Size) or (isinstance(value, tuple) and hasattr(value, "_fields")):
            tag = "$list" if type(value) is list else "$tuple"
            return {tag: [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict) and type(value).__module__ in ("builtins", "collections"):
            items = []
            for k, v in value.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise WireError(f"dict keys must be str or int, got {describe_type(k)}")
                items.append([k, self.encode(v, depth + 1)])
            return {"$dict": items}
        if self.on_unknown is not None:
            replacement = self.on_unknown(value)  # e.g. a Ref to the object kept in the worker
            if not isinstance(replacement, Ref):
                raise WireError("on_unknown must return a Ref")
            return self.encode(replacement, depth)
        raise WireError(f"cannot send a value of type {describe_type(value)}")

    def _tensor(self, t: torch.Tensor):
        check_plain_tensor(t)
        device = str(t.device)
        self.nbytes += t.numel() * t.element_size()   # checked before any copy is made
        if self.max_bytes is not None and self.nbytes > self.max_bytes:
            raise WireError(f"the value is larger than the {self.max_bytes >> 20} MiB limit")
        data = t.detach().to("cpu", copy=True).resolve_conj().resolve_neg().contiguous()
        name = f"t{len(self.tensors)}"
        self.tensors[name] = data
        return {"$tensor": name, "device": device}


def pack(message: dict, on_unknown=None, max_bytes: int | None = None) -> bytes:
    enc = Encoder(on_unknown, max_bytes)
    tree = enc.encode(message)
    header = json.dumps(tree, allow_nan=True, separators=(",", ":")).encode()
    blob = _st_save(enc.tensors) if enc.tensors else b""
    return JSON_HEADER.pack(len(header)) + header + blob


class Decoder:
    """Rebuilds values from a payload; the inverse of Encoder, strict about shape."""

    def __init__(self, tensors: dict[str, torch.Tensor], on_ref=None, map_device=None):
        self.tensors = tensors
        self.on_ref = on_ref or (lambda id, type_name: Ref(id, type_name))
        self.map_device = map_device or (lambda device: device)

    def decode(self, node, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("message is nested too deeply")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise WireError("malformed message: untagged container")
        if "$list" in node:
            return [self.decode(v, depth + 1) for v in self._seq(node["$list"])]
        if "$tuple" in node:
            return tuple(self.decode(v, depth + 1) for v in self._seq(node["$tuple"]))
        if "$dict" in node:
            out = {}
            for item in self._seq(node["$dict"]):
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))):
                    raise WireError("malformed message: bad dict item")
                out[item[0]] = self.decode(item[1], depth + 1)
            return out
        if "$tensor" in node:
            name = node["$tensor"]
            if not isinstance(name, str) or name not in self.tensors:
                raise WireError("malformed message: unknown tensor")
            device = node.get("device", "cpu")
            if not isinstance(device, str):
                raise WireError("malformed message: bad device")
            t = self.tensors[name]
            target = self.map_device(device)
            return t if target == "cpu" else t.to(target)
        if "$dtype" in node:
            if node["$dtype"] not in DTYPES:
                raise WireError("malformed message: unknown dtype")
            return DTYPES[node["$dtype"]]
        if "$device" in node:
            if not isinstance(node["$device"], str):
                raise WireError("malformed message: bad device")
            return torch.device(node["$device"])
        if "$ref" in node:
            id, type_name = node["$ref"], node.get("type", "object")
            if not isinstance(id, int) or not isinstance(type_name, str):
                raise WireError("malformed message: bad ref")
            return self.on_ref(id, type_name[:200])
        raise WireError("malformed message: unknown tag")

    @staticmethod
    def _seq(value):
        if not isinstance(value, list):
            raise WireError("malformed message: expected a list")
        return value


def unpack(payload: bytes, on_ref=None, map_device=None):
    if len(payload) < JSON_HEADER.size:
        raise WireError("malformed message: truncated")
    (hlen,) = JSON_HEADER.unpack_from(payload)
    if hlen > MAX_JSON_BYTES or JSON_HEADER.size + hlen > len(payload):
        raise WireError("malformed message: bad header length")
    try:
        tree = json.loads(payload[JSON_HEADER.size:JSON_HEADER.size + hlen])
    except (ValueError, RecursionError) as e:
        raise WireError(f"malformed message: {type(e).__name__}") from None
    blob = payload[JSON_HEADER.size + hlen:]
    try:
        tensors = _st_load(bytes(blob)) if blob else {}
    except Exception as e:  # safetensors raises its own error types
        raise WireError(f"malformed tensor data: {type(e).__name__}") from None
    return Decoder(tensors, on_ref, map_device).decode(tree)


# ---- framing over raw file descriptors -------------------------------------

class ChannelClosed(Exception):
    """The other side closed the pipe (usually: the worker died)."""


class ChannelTimeout(Exception):
    """No complete frame arrived before the deadline."""


def write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(FRAME_HEADER.pack(len(payload)) + payload)
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            raise ChannelClosed("the other side closed the channel") from None
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise ChannelTimeout()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise ChannelClosed("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int, deadline: float | None = None) -> bytes:
    """Read one frame; refuse (before reading it) anything over ``max_bytes``."""
    (n,) = FRAME_HEADER.unpack(_read_exact(fd, FRAME_HEADER.size, deadline))
    if n > max_bytes:
        raise WireError(f"message of {n} bytes is over the {max_bytes} byte limit")
    return _read_exact(fd, n, deadline)
