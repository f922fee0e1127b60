#!/usr/bin/env bash
# Make a local base image for Dockerfile.gpu without any container registry:
# a minimal Debian root filesystem (debootstrap) with Python, imported with `docker import`.
#   docker/make-base-image.sh [TAG]        (default grade-base:bookworm; needs root, debootstrap)
set -euo pipefail
tag="${1:-grade-base:bookworm}"
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag already exists"; exit 0
fi
rootfs="$(mktemp -d /tmp/grade-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,libseccomp2 \
    bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
tar -C "$rootfs" -c . | docker import - "$tag" >/dev/null
echo "made $tag"
