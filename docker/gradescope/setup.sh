#!/usr/bin/env bash
# Gradescope runs this once, as root and with internet access, while it builds the
# autograder image; the zip's contents are in /autograder/source.
set -euo pipefail
SOURCE=/autograder/source
VENV=/autograder/venv
export DEBIAN_FRONTEND=noninteractive

apt-get update
apt-get install -y python3 python3-pip python3-venv bubblewrap
PY=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    # The project needs Python >= 3.11 (Ubuntu 22.04's python3 is 3.10).
    apt-get install -y python3.11 python3.11-venv
    PY=python3.11
fi

"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
"$VENV/bin/pip" install -e "$SOURCE"

# Identities for the setuid sandbox, used where bubblewrap cannot create namespaces
# (as in Dockerfile.gpu; the judge is root here).
getent group grade-student >/dev/null || groupadd --system grade-student
getent group grade-reference >/dev/null || groupadd --system grade-reference
id -u grade-student >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --gid grade-student grade-student
id -u grade-reference >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --gid grade-reference grade-reference

# References and graders: readable by root (the judge) only, never by student code.
chmod -R go-rwx "$SOURCE"
