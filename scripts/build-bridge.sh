#!/bin/sh
# Builds the bridge behind `klips run` (bridge/klips-preload.c, libc only) into
# dist/bridge/libklips-preload.so. `npm run build` runs it after tsc. Where there is no C
# compiler (or not Linux) it says so in one line and succeeds: everything but `klips run`
# works without the library. CC chooses the compiler (default cc).
set -eu
cd "$(dirname "$0")/.."
out=dist/bridge/libklips-preload.so
cc=${CC:-cc}
if [ "$(uname -s)" != Linux ]; then
  echo "klips: the bridge is Linux-only; $out not built (klips run is unavailable)"
  exit 0
fi
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "klips: no C compiler ($cc) found; $out not built, so klips run is unavailable (install gcc and libc6-dev, then npm run build)"
  exit 0
fi
mkdir -p dist/bridge
"$cc" -O2 -fPIC -shared -pthread -Wall -Wextra -o "$out" bridge/klips-preload.c -ldl
