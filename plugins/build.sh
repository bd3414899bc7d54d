#!/usr/bin/env bash
# Builds the facility plugins as WebAssembly components (プラグインのビルド).
#
#   ./build.sh            build all, copy the shipped six to dist/<name>.wasm
#
# Installs the wasm32-wasip2 target when it is missing, builds the whole plugins workspace in
# release (the template too, so it is known to build), and refuses any output that is not a
# component: a core module would load nowhere, and the host would only say so at install time.
# Honours CARGO_TARGET_DIR. Signing is separate: `tsunagi plugin sign dist/<name>.wasm`.
set -euo pipefail

cd "$(dirname "$0")"

TARGET=wasm32-wasip2
PLUGINS=(medical dental pharmacy judo ahaki home-nursing)
# What every component starts with: the wasm magic, then version 0x0d and layer 1.
COMPONENT_HEADER="0061736d0d000100"

if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "installing the $TARGET target"
    rustup target add "$TARGET"
fi

cargo build --release --target "$TARGET" --workspace

# Where cargo put the output (CARGO_TARGET_DIR, a config file, or ./target).
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="$target_dir/$TARGET/release"

is_component() {
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "$COMPONENT_HEADER" ]
}

# The template is built to prove it builds, and checked, but not shipped.
is_component "$out/tsunagi_plugin_template.wasm" ||
    { echo "error: the template did not build as a component" >&2; exit 1; }

mkdir -p dist
for name in "${PLUGINS[@]}"; do
    wasm="$out/tsunagi_plugin_${name//-/_}.wasm"
    if [ ! -f "$wasm" ]; then
        echo "error: $wasm was not built" >&2
        exit 1
    fi
    if ! is_component "$wasm"; then
        echo "error: $wasm is not a component (header $(head -c 8 "$wasm" | od -An -tx1))" >&2
        exit 1
    fi
    cp "$wasm" "dist/$name.wasm"
    printf '%-14s %7d bytes\n' "$name" "$(wc -c <"dist/$name.wasm")"
done
