"""Hostile: opens network connections (the test listens on 127.0.0.1:47831)."""
import socket


def pairwise_distances(x, y=None):
    results = []
    for host, port in [("127.0.0.1", 47831), ("1.1.1.1", 53), ("8.8.8.8", 443), ("example.com", 80)]:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"hello from the sandbox")
            results.append(f"{host}: connected")
        except OSError as e:
            results.append(f"{host}: {e}")
    raise RuntimeError("; ".join(results))


nearest_neighbors = pairwise_distances
