#!/usr/bin/env bash
# Makes docs/tensorboard.png, the README's TensorBoard screenshot: the torch example trains with
# DistQ under horovodrun (2 workers, Gloo) and writes its stats with --logdir, TensorBoard serves
# them, and headless Chromium photographs TensorBoard's page. Run after `make setup`, as root
# (it installs Debian's chromium-headless-shell if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-6123}
EPOCHS=${EPOCHS:-10}
SHOT=docs/tensorboard.png
runs=$(mktemp -d)
tensorboard_pid=
cleanup() {
  if [[ -n $tensorboard_pid ]]; then kill "$tensorboard_pid" 2>/dev/null || true; fi
  rm -rf "$runs"
}
trap cleanup EXIT

browser=$(command -v chrome-headless-shell || command -v chromium-headless-shell || true)
if [[ -z $browser ]]; then
  apt-get install -y -q chromium-headless-shell >/dev/null
  browser=$(command -v chrome-headless-shell || command -v chromium-headless-shell)
fi

.venv/bin/horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python examples/pytorch_digits.py \
  --compression distq --epochs "$EPOCHS" --logdir "$runs/logs" --out "$runs/out"

.venv/bin/tensorboard --logdir "$runs/logs" --port "$PORT" --host 127.0.0.1 >"$runs/tensorboard.log" 2>&1 &
tensorboard_pid=$!
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break
  sleep 1
done

"$browser" --no-sandbox --hide-scrollbars --window-size=1600,1100 --virtual-time-budget=60000 --enable-unsafe-swiftshader \
  --screenshot="$SHOT" "http://127.0.0.1:$PORT/#scalars&tagFilter=distq%2F(step|conv2)"
echo "wrote $SHOT"
