#!/usr/bin/env bash
# Runs the whole test suite through the real parts: installs pcscd, vpcd, OpenSC and the
# rest, starts pcscd with vpcd's virtual reader slots, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh

# pcscd: nothing starts it in a container or CI runner. The tests' harness restarts it as it
# needs (stopping it for the "service not running" test), so only make sure one is up.
if ! pgrep -x pcscd >/dev/null; then
  mkdir -p /run/pcscd
  pcscd --foreground >"${TMPDIR:-/tmp}/tsunagi-pcscd.log" 2>&1 &
  for _ in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
fi

cargo test --workspace --locked "$@"

# The facility plugins: their own workspace (guests for wasm32-wasip2). Golden tests run
# natively; the build makes the components and checks each one's header.
(cd plugins && cargo test --locked)
plugins/build.sh
