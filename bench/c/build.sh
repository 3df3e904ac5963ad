#!/usr/bin/env bash
# Build the C peer of the benchmarks (bench/c/README.md) into bench/c/build/:
#   sd-bench    libsheepdog's sd_vdi_read/sd_vdi_write at a fixed queue depth
#   null-sheep  a Sheepdog 1.0 gateway that answers at once and stores nothing
#
#   SHEEPDOG_PREFIX=/opt/sheepdog bash bench/c/build.sh
#
# SHEEPDOG_PREFIX is an installed Sheepdog 1.0 (its include/sheepdog/*.h and
# lib/libsheepdog.so); nothing of Sheepdog is in this repository. sd-bench
# also needs the liburcu headers (sheepdog's util.h includes urcu/uatomic.h).
# CC and CFLAGS are honoured (default: cc, -O2 -Wall).
set -euo pipefail

if [ -z "${SHEEPDOG_PREFIX:-}" ]; then
  echo "bench/c/build.sh: set SHEEPDOG_PREFIX to an installed Sheepdog 1.0 (with include/sheepdog/sheepdog.h and lib/libsheepdog.so), e.g. SHEEPDOG_PREFIX=/opt/sheepdog bash bench/c/build.sh" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
inc="$SHEEPDOG_PREFIX/include"
lib="$SHEEPDOG_PREFIX/lib"
if [ ! -f "$inc/sheepdog/sheepdog.h" ] || [ ! -f "$lib/libsheepdog.so" ]; then
  echo "bench/c/build.sh: $SHEEPDOG_PREFIX has no include/sheepdog/sheepdog.h or lib/libsheepdog.so (SHEEPDOG_PREFIX must be where Sheepdog was installed)" >&2
  exit 2
fi
cc=${CC:-cc}
cflags=${CFLAGS:--O2 -Wall}
out="$here/build"
mkdir -p "$out"
# shellcheck disable=SC2086 # CFLAGS is a list of words
"$cc" $cflags -o "$out/null-sheep" "$here/null-sheep.c" -lpthread
# shellcheck disable=SC2086
"$cc" $cflags -I"$inc" -o "$out/sd-bench" "$here/sd-bench.c" \
  -L"$lib" -Wl,-rpath,"$lib" -lsheepdog -lpthread -lm
echo "built $out/sd-bench and $out/null-sheep (libsheepdog from $lib)"
