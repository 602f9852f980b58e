#!/usr/bin/env bash
# `make sbom`: a CycloneDX software bill of materials of the gateway, from
# Cargo.lock and the crate metadata (cargo-cyclonedx): every crate the build
# of the gateway compiles for Linux (build dependencies such as proc macros
# included, dev-dependencies not; the patched copies in patches/ appear as
# path packages), with version, licence and package URL.
#
#   scripts/sbom.sh      -> target/sbom/gateway.cdx.json (SBOM_DIR to change)
#
# cargo-cyclonedx is used from PATH when it is the pinned version, else from
# .tools/bin, installed there on first use (`cargo install --locked --root
# .tools`, from crates.io; never into the system). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${CARGO_CYCLONEDX_VERSION:-0.5.7}"
ROOT=".tools"
OUT_DIR="${SBOM_DIR:-target/sbom}"
TARGET="${SBOM_TARGET:-x86_64-unknown-linux-gnu}"
NAME="gateway.cdx"

say() { echo "sbom: $*"; }

installed_version() {
  # `cargo-cyclonedx cyclonedx --version` prints "cargo-cyclonedx 0.5.7".
  "$1" cyclonedx --version 2>/dev/null | awk '{print $2}'
}

if command -v cargo-cyclonedx >/dev/null 2>&1 && [ "$(installed_version cargo-cyclonedx)" = "$VERSION" ]; then
  bin="$(command -v cargo-cyclonedx)"
elif [ -x "$ROOT/bin/cargo-cyclonedx" ] && [ "$(installed_version "$ROOT/bin/cargo-cyclonedx")" = "$VERSION" ]; then
  bin="$ROOT/bin/cargo-cyclonedx"
else
  say "installing cargo-cyclonedx $VERSION into $ROOT/bin (cargo install --locked; compiles for several minutes, once)"
  started=$(date +%s)
  cargo install --locked --quiet --root "$ROOT" --version "$VERSION" cargo-cyclonedx
  say "installed in $(( $(date +%s) - started )) s"
  bin="$ROOT/bin/cargo-cyclonedx"
fi

# cargo-cyclonedx writes <name>.json beside Cargo.toml; it is moved from
# there at once so that the work tree stays clean.
"$bin" cyclonedx --format json --spec-version 1.5 --target "$TARGET" \
  --override-filename "$NAME" --quiet
mkdir -p "$OUT_DIR"
mv -f "$NAME.json" "$OUT_DIR/$NAME.json"

python3 - "$OUT_DIR/$NAME.json" <<'PY'
import json, sys
path = sys.argv[1]
bom = json.load(open(path))
components = bom.get("components", [])
unlicensed = [c["name"] for c in components if not c.get("licenses")]
print("sbom: %s: CycloneDX %s, %d components, %d without a licence%s"
      % (path, bom.get("specVersion"), len(components), len(unlicensed),
         (": " + ", ".join(unlicensed[:10])) if unlicensed else ""))
PY
