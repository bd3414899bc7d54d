#!/usr/bin/env bash
# Runs the scripted tour: a built-in qualification-system simulator and virtual My Number
# cards, in-process, with no reader and no pcscd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh --build-only
exec cargo run --quiet -p tsunagi -- demo "$@"
