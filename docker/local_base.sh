#!/usr/bin/env bash
# Makes a local Debian base image for machines that cannot pull from a public registry (the
# project's test machines): debootstrap from the Debian mirror this machine's apt already uses,
# imported as localhost/debian:<codename>. Then build with
#   make docker-cpu BASE_IMAGE=localhost/debian:bookworm
# Needs root, debootstrap and podman (or a Docker daemon); podman stores it where buildah looks.
# Prints the image name; does nothing if the image exists.
set -euo pipefail

CODENAME=${1:-bookworm}
IMAGE=localhost/debian:$CODENAME

if command -v podman >/dev/null 2>&1; then
  if podman image exists "$IMAGE"; then
    echo "$IMAGE"
    exit 0
  fi
  import() { podman import - "$IMAGE" >/dev/null; }
elif docker info >/dev/null 2>&1; then
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
  fi
  import() { docker import - "$IMAGE" >/dev/null; }
else
  echo "local_base.sh: neither podman nor a Docker daemon is available" >&2
  exit 1
fi

# The mirror comes from apt's own configuration at run time (either sources format), so no
# host name is written here and the base matches what this machine is allowed to reach.
# shellcheck disable=SC2016  # $(...) here are apt's format fields, not the shell's
MIRROR=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
  | awk -v suite="$CODENAME" '$2 == suite { print $1; exit }')
if [ -z "$MIRROR" ]; then
  echo "local_base.sh: no Debian mirror for '$CODENAME' in this machine's apt sources" >&2
  exit 1
fi

ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
echo "[local_base] debootstrap $CODENAME from $MIRROR" >&2
debootstrap --variant=minbase "$CODENAME" "$ROOTFS" "$MIRROR" >&2
# debootstrap leaves the build machine's resolver configuration behind; the runtime provides its own.
rm -f "$ROOTFS/etc/resolv.conf"
tar -C "$ROOTFS" -c . | import
echo "$IMAGE"
