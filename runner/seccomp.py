"""A seccomp filter for the worker: threads yes, new processes no.

A submission has no reason to start processes, and forbidding it removes a
whole class of attacks at once: fork bombs, processes left running after
the worker is gone, memory limits multiplied by forking, ``subprocess`` to
reach tools.  Threads (``clone`` with CLONE_THREAD) stay allowed; torch
needs them.  A few syscalls that only serve escapes and snooping are
refused as well, and so is changing the CPU affinity: ``grade batch --jobs N``
confines each grading process to its share of the CPUs.

The filter is compiled with libseccomp (present on every Debian/Ubuntu
system) through ctypes and handed to bubblewrap (``--seccomp FD``).  Where
libseccomp is missing, ``compile_filter`` returns None and the sandbox runs
without it (still namespaced and rlimited).
"""
from __future__ import annotations

import ctypes
import errno
import os

ALLOW = 0x7FFF0000
CLONE_THREAD = 0x00010000
SCMP_CMP_MASKED_EQ = 7

DENIED = ("fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load",
          "kexec_file_load", "mount", "umount2", "pivot_root", "unshare", "setns", "bpf",
          "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "acct",
          "swapon", "swapoff", "reboot", "init_module", "finit_module", "delete_module",
          # the batch gives each grading process its own CPUs; a worker may not widen them
          "sched_setaffinity")


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _library():
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _build(lib):
    """A libseccomp context with our rules (caller releases it), or None."""
    ctx = lib.seccomp_init(ALLOW)
    if not ctx:
        return None

    def rule(name: str, action: int, *cmps: _ArgCmp) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a syscall on this architecture
        arr = (_ArgCmp * len(cmps))(*cmps) if cmps else None
        if lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr) != 0:
            raise OSError(f"seccomp: cannot add a rule for {name}")

    for name in DENIED:
        rule(name, _errno(errno.EPERM))
    # clone without CLONE_THREAD makes a process; with it, a thread.
    rule("clone", _errno(errno.EPERM), _ArgCmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))
    # clone3 hides its flags in memory seccomp cannot read: make libc fall back to clone.
    rule("clone3", _errno(errno.ENOSYS))
    return ctx


_cached: bytes | None = None


def compile_filter() -> bytes | None:
    """The BPF program (cached), for bwrap --seccomp; None where libseccomp is unavailable."""
    global _cached
    if _cached is not None:
        return _cached
    lib = _library()
    ctx = _build(lib) if lib is not None else None
    if ctx is None:
        return None
    try:
        r, w = os.pipe()
        try:
            if lib.seccomp_export_bpf(ctx, w) != 0:
                return None
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            _cached = f.read()
        return _cached
    finally:
        lib.seccomp_release(ctx)


def install() -> bool:
    """Load the filter into this process (irrevocably); False where libseccomp is missing.

    The worker calls this on itself before importing the submission when no
    outer sandbox applied the filter (inside a container).
    """
    lib = _library()
    ctx = _build(lib) if lib is not None else None
    if ctx is None:
        return False
    try:
        import ctypes as _c
        _c.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required to load a filter
        lib.seccomp_load.argtypes = [_c.c_void_p]
        if lib.seccomp_load(ctx) != 0:
            raise OSError("seccomp: the filter could not be loaded")
        return True
    finally:
        lib.seccomp_release(ctx)
