#!/bin/sh
# Container entry: become the unprivileged judge, keeping only the capabilities it needs
# to start and stop workers under the grade-student / grade-reference identities.
set -e
exec setpriv --reuid=grade-judge --regid=grade-judge --init-groups \
    --inh-caps=-all,+setuid,+setgid,+kill --ambient-caps=-all,+setuid,+setgid,+kill \
    -- /opt/venv/bin/python3 -m runner.container "$@"
