"""The channel's decoder accepts only plain data, whatever the worker sends."""
import json
import os
import pickle
import struct

import pytest
import torch

from runner import wire


def roundtrip(value):
    return wire.unpack(wire.pack({"value": value}))["value"]


def test_plain_values_and_tensors_roundtrip():
    value = [1, 2.5, float("inf"), None, True, "text", (3, 4), {"a": torch.arange(6).view(2, 3)},
             torch.float16, torch.device("cpu"), torch.zeros(0, 3, dtype=torch.bfloat16)]
    back = roundtrip(value)
    assert back[:5] == [1, 2.5, float("inf"), None, True]
    assert back[5] == "text" and back[6] == (3, 4)
    assert torch.equal(back[7]["a"], torch.arange(6).view(2, 3))
    assert back[8] is torch.float16 and back[9] == torch.device("cpu")
    assert back[10].shape == (0, 3) and back[10].dtype == torch.bfloat16


def test_views_sharing_storage_and_noncontiguous_tensors():
    base = torch.arange(12.0).view(3, 4)
    a, b = roundtrip([base.T, base[1]])
    assert torch.equal(a, base.T) and torch.equal(b, base[1])


def test_tensor_subclasses_and_exotic_layouts_are_refused():
    class Sub(torch.Tensor):
        pass
    for bad in [torch.zeros(3).as_subclass(Sub), torch.zeros(3, 3).to_sparse(),
                torch.zeros(3, device="meta"), torch.zeros(2, dtype=torch.complex64)]:
        with pytest.raises(wire.WireError):
            wire.pack({"value": bad})


def test_unknown_objects_need_a_handle():
    with pytest.raises(wire.WireError):
        wire.pack({"value": object()})
    packed = wire.pack({"value": [object()]}, on_unknown=lambda v: wire.Ref(7, "object"))
    ref = wire.unpack(packed)["value"][0]
    assert isinstance(ref, wire.Ref) and ref.id == 7


def test_size_cap_is_checked_before_copying():
    with pytest.raises(wire.WireError, match="limit"):
        wire.pack({"value": torch.zeros(1 << 20)}, max_bytes=1 << 20)


def payload(tree, blob=b""):
    header = json.dumps(tree).encode()
    return struct.pack("<I", len(header)) + header + blob


@pytest.mark.parametrize("tree", [
    [1, 2],                                  # untagged list
    {"a": 1},                                # untagged dict
    {"$tensor": "t9"},                       # no such tensor
    {"$dtype": "complex128"},                # not an allowed dtype
    {"$ref": "x"},                           # bad handle
    {"$py/object": "os.system"},             # unknown tag
    {"$dict": [[[1], 2]]},                   # unhashable key
])
def test_malformed_messages_are_refused(tree):
    with pytest.raises(wire.WireError):
        wire.unpack(payload(tree))


def test_pickle_is_never_decoded():
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch /tmp/pwned-by-pickle",))
    evil = pickle.dumps(Boom())
    for data in [evil, payload({"$tensor": "t0"}, evil), struct.pack("<I", 2) + b"{}" + evil]:
        with pytest.raises(wire.WireError):
            wire.unpack(data)
    assert not os.path.exists("/tmp/pwned-by-pickle")


def test_deep_nesting_is_refused():
    tree = 1
    for _ in range(200):
        tree = {"$list": [tree]}
    with pytest.raises(wire.WireError):
        wire.unpack(payload(tree))


def test_frames_over_the_limit_are_refused_before_reading():
    r, w = os.pipe()
    os.write(w, struct.pack("<Q", 1 << 40))
    with pytest.raises(wire.WireError, match="over"):
        wire.read_frame(r, max_bytes=1 << 20)
    os.close(r), os.close(w)


def test_read_frame_times_out_and_notices_eof():
    r, w = os.pipe()
    import time
    with pytest.raises(wire.ChannelTimeout):
        wire.read_frame(r, 1 << 20, deadline=time.monotonic() + 0.2)
    os.close(w)
    with pytest.raises(wire.ChannelClosed):
        wire.read_frame(r, 1 << 20, deadline=time.monotonic() + 1)
    os.close(r)
