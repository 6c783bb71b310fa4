#!/usr/bin/env bash
# npm run test:avxvnni: the AVX-VNNI path's kernels, checked on a CPU without AVX-VNNI
# (docs/performance.md, "Runtime dispatch"). No machine herd has been measured on has AVX-VNNI
# without AVX-512, and QEMU's TCG does not implement it, so this builds the addon once more with
# HERD_EMULATE_AVXVNNI: vpdpbusd and vpdpwssd become exact AVX2 arithmetic (kernels_x86.h) and
# dispatch offers the path on any AVX2 CPU; every other line is the path as it ships. The native
# tests then run on it (test/native-kernels.test.ts takes every path the addon can run, at 1 and 3
# threads; the model, quantizer and calibration suites take the preferred path, which is then
# avxvnni). .ci/run calls it; the addon in build/Release is put back afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing of the x86 paths runs elsewhere (arm64 builds have none); .ci/run calls this on any host.
if ! grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  echo "test:avxvnni: not run: it needs an x86-64 Linux CPU with AVX2"
  exit 0
fi

gyp=(node-gyp)
command -v node-gyp >/dev/null || gyp=(node "$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js")
addon=build/Release/herd_native.node
out=$(mktemp -d)
cp "$addon" "$out/shipped.node"
trap 'cp "$out/shipped.node" "$addon"; rm -rf "$out"' EXIT

echo "== the addon with HERD_EMULATE_AVXVNNI, built in $out"
mkdir -p "$out/emulated/src"
cp binding.gyp "$out/emulated/"
cp -r src/native "$out/emulated/src/"
(cd "$out/emulated" && CPPFLAGS=-DHERD_EMULATE_AVXVNNI "${gyp[@]}" rebuild --loglevel=warn)
cp "$out/emulated/build/Release/herd_native.node" "$addon"
node -e "const paths = require('./$addon').info().paths; if (paths.avxvnni !== '') { console.error('the emulated build does not offer avxvnni:', JSON.stringify(paths)); process.exit(1); }"

echo "== the native tests on it"
NODE_OPTIONS=--experimental-vm-modules npx jest test/native-
