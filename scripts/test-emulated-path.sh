#!/usr/bin/env bash
# npm run test:avxvnni / npm run test:avx512: x86 paths' kernels, checked on a CPU without their
# instructions (docs/performance.md, "Runtime dispatch"). Usage: test-emulated-path.sh avxvnni|avx512
#  - avxvnni: no machine herd has been measured on has AVX-VNNI without AVX-512, and QEMU's TCG does
#    not implement it. HERD_EMULATE_AVXVNNI makes vpdpbusd and vpdpwssd exact AVX2 arithmetic
#    (kernels_x86.h).
#  - avx512, which takes amx too: the machines that build herd have AVX2 only, and QEMU's TCG has
#    neither AVX-512 nor AMX. HERD_EMULATE_AVX512 compiles the path for AVX2 with SIMDe's portable
#    AVX-512 intrinsics (Debian's libsimde-dev, which .ci/run installs) in place of the real ones;
#    HERD_EMULATE_AMX adds the amx path's seven tile instructions, written from Intel's definitions.
# Either way dispatch offers the paths on any AVX2 CPU and every other line is the code as it ships.
# This builds the addon once more with those switches, then runs the native tests on it
# (test/native-kernels.test.ts takes every path the addon can run, at 1 and 3 threads; the model,
# quantizer and calibration suites take the preferred path, which is then the emulated one) and
# the GGUF files llama.cpp made, against llama.cpp's own outputs (test/gguf-llamacpp.test.ts). It
# checks the path's code, not its speed. .ci/run calls both; build/Release's addon is put back.
set -euo pipefail
cd "$(dirname "$0")/.."
path=${1:-}
case "$path" in
  avxvnni) switches=(HERD_EMULATE_AVXVNNI) offered=(avxvnni) ;;
  avx512) switches=(HERD_EMULATE_AVX512 HERD_EMULATE_AMX) offered=(avx512 amx) ;;
  *)
    echo "usage: scripts/test-emulated-path.sh avxvnni|avx512" >&2
    exit 2
    ;;
esac
# Nothing of the x86 paths runs elsewhere (arm64 builds have none); .ci/run calls this on any host.
if ! grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  echo "test:$path: not run: it needs an x86-64 Linux CPU with AVX2"
  exit 0
fi
if [ "$path" = avx512 ] && [ ! -e /usr/include/simde/x86/avx512.h ]; then
  echo "test:avx512: SIMDe's headers are missing (/usr/include/simde/x86/avx512.h): apt-get install libsimde-dev" >&2
  exit 1
fi

gyp=(node-gyp)
command -v node-gyp >/dev/null || gyp=(node "$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js")
addon=build/Release/herd_native.node
out=$(mktemp -d)
cp "$addon" "$out/shipped.node"
trap 'cp "$out/shipped.node" "$addon"; rm -rf "$out"' EXIT

echo "== the addon with ${switches[*]}, built in $out"
mkdir -p "$out/emulated/src"
cp binding.gyp "$out/emulated/"
cp -r src/native "$out/emulated/src/"
# -Wno-psabi: SIMDe's 512-bit values pass between static functions, never across an ABI boundary.
(cd "$out/emulated" && CPPFLAGS="${switches[*]/#/-D}" CFLAGS=-Wno-psabi "${gyp[@]}" rebuild --loglevel=warn)
cp "$out/emulated/build/Release/herd_native.node" "$addon"
for name in "${offered[@]}"; do
  node -e "const paths = require('./$addon').info().paths; if (paths['$name'] !== '') { console.error('the emulated build does not offer $name:', JSON.stringify(paths)); process.exit(1); }"
done

echo "== the native tests and llama.cpp's GGUF files on it"
NODE_OPTIONS=--experimental-vm-modules npx jest test/native- test/gguf-llamacpp
