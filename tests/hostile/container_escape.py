"""Hostile (container): reaches for the Docker socket, writes outside the tmpfs, reads the judge."""
import os
import socket

REPORT = []


def attempt(label, fn):
    try:
        fn()
        REPORT.append(f"{label}: ok")
    except OSError as e:
        REPORT.append(f"{label}: {e}")


def connect_docker():
    s = socket.socket(socket.AF_UNIX)
    s.connect("/var/run/docker.sock")
    REPORT.append("docker.sock: connected")


def write(path):
    def go():
        with open(path, "w") as f:
            f.write("x")
        REPORT.append(f"wrote {path}")
    return go


def read_judge():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                env = open(f"/proc/{pid}/environ", "rb").read()
                if b"GRADE_SEED" in env:
                    REPORT.append("GRADE_SEED visible")
            except OSError:
                pass
    for root, _, files in os.walk("/opt/grade"):
        for f in files:
            REPORT.append("read /opt/grade: " + open(os.path.join(root, f)).read()[:50])


attempt("docker.sock", connect_docker)
for target in ["/opt/grade/hacked", "/usr/lib/hacked", "/input/hacked", "/hacked", "/etc/passwd"]:
    attempt(target, write(target))
attempt("judge", read_judge)


def pairwise_distances(x, y=None):
    raise RuntimeError(" | ".join(REPORT))


nearest_neighbors = pairwise_distances
