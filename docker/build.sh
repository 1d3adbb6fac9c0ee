#!/usr/bin/env bash
# Builds docker/<cpu|gpu>/Dockerfile with the repository root as context, using what this
# machine has: Docker when a daemon answers, else buildah, else podman (both need no daemon).
#   docker/build.sh cpu|gpu [builder options...]
# Environment: IMAGE (default horovod-distq:<flavour>); build arguments BASE_IMAGE, TORCH_VERSION,
# TENSORFLOW_VERSION (CPU image), HOROVOD_VERSION, TORCH_INDEX_URL, CUDA_ARCHITECTURES (GPU image)
# are passed on when set. A BASE_IMAGE of localhost/debian:<codename> that does not exist yet is made
# by docker/local_base.sh (machines without a registry).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FLAVOUR=${1:?usage: docker/build.sh cpu|gpu [builder options...]}
shift
[ -f "$ROOT/docker/$FLAVOUR/Dockerfile" ] || { echo "build.sh: no docker/$FLAVOUR/Dockerfile" >&2; exit 2; }
IMAGE=${IMAGE:-horovod-distq:$FLAVOUR}

args=(-f "$ROOT/docker/$FLAVOUR/Dockerfile" -t "$IMAGE")
for name in BASE_IMAGE TORCH_VERSION TENSORFLOW_VERSION HOROVOD_VERSION TORCH_INDEX_URL \
            CUDA_ARCHITECTURES; do
  # Set, even to the empty string, means passed: TORCH_INDEX_URL= turns the extra index off.
  [ -n "${!name+set}" ] && args+=(--build-arg "$name=${!name}")
done

if docker info >/dev/null 2>&1; then
  builder=docker
  # RUN --mount=type=cache needs BuildKit (the default builder since Docker 23).
  export DOCKER_BUILDKIT=1
  cmd=(docker build)
elif command -v buildah >/dev/null 2>&1; then
  builder=buildah
  # chroot isolation runs inside containers and VMs where buildah cannot make namespaces;
  # --layers keeps each step as a cached layer (podman build does by default, buildah does not);
  # the Docker format keeps the Dockerfiles' SHELL (bash, pipefail), which OCI images drop.
  cmd=(buildah bud --isolation "${BUILDAH_ISOLATION:-chroot}" --layers --format docker)
elif command -v podman >/dev/null 2>&1; then
  builder=podman
  cmd=(podman build --isolation "${BUILDAH_ISOLATION:-chroot}" --format docker)
else
  echo "build.sh: no Docker daemon, buildah or podman (on Debian: apt-get install buildah)" >&2
  exit 1
fi

if [[ "${BASE_IMAGE:-}" == localhost/debian:* ]]; then
  bash "$ROOT/docker/local_base.sh" "${BASE_IMAGE#localhost/debian:}" >/dev/null
fi
# A machine that keeps wheels on disk (/opt/wheels, which setup.sh looks in: this project's test
# machines keep torch's CPU wheel there) lends them to the CPU build; only buildah and podman can.
if [ "$FLAVOUR" = cpu ] && [ -d /opt/wheels ] && [ "$builder" != docker ]; then
  args+=(--volume /opt/wheels:/opt/wheels:ro)
fi

# pip trusts the CA bundle named by PIP_CERT on machines behind a TLS-inspecting proxy; the build's
# pip needs it too. A build secret reaches only the step that mounts it, never the image.
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
  args+=(--secret "id=pip-cert,src=$PIP_CERT")
fi

echo "[build] $builder: $IMAGE from docker/$FLAVOUR/Dockerfile"
start=$SECONDS
"${cmd[@]}" "${args[@]}" "$@" "$ROOT"
echo "[build] $IMAGE built in $((SECONDS - start)) s"
