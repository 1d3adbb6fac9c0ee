#!/usr/bin/env bash
# Starts sshd in the foreground for multi-host jobs (installed in the images as distq-sshd):
#   docker run -d --network=host -v KEYS:/root/.ssh IMAGE distq-sshd [PORT]
# Host keys are made here, once per container, instead of being shared through the image.
set -euo pipefail
PORT=${1:-12345}
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -p "$PORT"
