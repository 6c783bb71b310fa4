#!/usr/bin/env bash
# npm run test:neon: the arm64 NEON kernels, checked on an x86-64 machine (docs/performance.md,
# "Native C kernels"). Not part of the build; .ci/run calls it (stages 1 and 2). It needs a cross
# compiler and an emulator (Debian's QEMU 7.2 and 10.0 both run it):
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# On an arm64 machine it compiles with the native gcc and runs the harness directly.
#  1. every C file of the addon compiles for aarch64 with binding.gyp's flags and no warning;
#  2. test/native-neon/harness.c (the NEON kernels against the scalar path and float64
#     references) runs on an emulated CPU with the dot-product extension (Neoverse N1: dispatch
#     must choose neon-dotprod) and on one without it (Cortex-A72: neon), each run checking every
#     path that CPU can run; then, when a clang is installed, the same harness built by clang,
#     without and with -march=armv8.2-a+dotprod, on the Neoverse N1; and dispatch.c as built for a
#     system without AT_HWCAP (macOS), without and with the extension targeted;
#  3. only when HERD_ARM64_SYSROOT names a folder holding an arm64 Node (usr/bin/node and its
#     libraries; docs/performance.md says how one was made from Debian's packages): the addon
#     cross-built for arm64 through node-gyp and binding.gyp, then test/native-neon/model-check.mjs
#     (the shared fixtures on the native backend) run with that Node under qemu on both CPUs.
#     Needs dist/ (npm run build). On an arm64 machine the native Node and build are used.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -m)" = aarch64 ]; then
  cc=gcc
  run_on() { shift; "$@"; }
  cpus=native
else
  cc=aarch64-linux-gnu-gcc
  for tool in "$cc" qemu-aarch64; do
    if ! command -v "$tool" >/dev/null; then
      echo "test:neon needs $tool (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
      exit 1
    fi
  done
  run_on() { local cpu=$1; shift; qemu-aarch64 -cpu "$cpu" "$@"; }
  cpus="neoverse-n1 cortex-a72"
fi

headers=$(node -p "require('path').resolve(process.execPath, '../../include/node')")
[ -f "$headers/node_api.h" ] || headers="$HOME/.cache/node-gyp/$(node -p 'process.versions.node')/include/node"
if [ ! -f "$headers/node_api.h" ]; then
  echo "test:neon needs Node's headers (node_api.h) to compile the addon" >&2
  exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=c11 -O3 -Wall -Wextra -Werror -fno-math-errno)

echo "== the addon's C files, compiled for aarch64 ($cc)"
for source in src/native/*.c; do
  "$cc" "${flags[@]}" -fPIC -I"$headers" -c "$source" -o "$out/$(basename "$source" .c).o"
  echo "   $source"
done

echo "== the NEON kernels against the scalar path"
# Every C file but the N-API bindings: the scalar table may take kernels from files of their own.
kernel_sources=$(ls src/native/*.c | grep -v '/addon\.c$')
"$cc" "${flags[@]}" -static -pthread test/native-neon/harness.c $kernel_sources -lm -o "$out/harness"
for cpu in $cpus; do
  case $cpu in
    cortex-a72) expected=neon ;;
    *) expected=neon-dotprod ;;
  esac
  [ "$cpu" = native ] && { grep -qw asimddp /proc/cpuinfo && expected=neon-dotprod || expected=neon; }
  echo "-- CPU $cpu (dispatch should choose $expected)"
  run_on "$cpu" "$out/harness" "$expected"
done

# Clang before LLVM 19 declares vdotq_s32 only for files that target dotprod as a whole, so a
# clang build has neon-dotprod only then (kernels_neon.c); both builds, when a clang is here.
clang=$(command -v clang || ls /usr/bin/clang-[0-9]* 2>/dev/null | head -1 || true)
if [ -n "$clang" ] && [ "$cpus" != native ]; then
  for march in "" "-march=armv8.2-a+dotprod"; do
    "$clang" --target=aarch64-linux-gnu $march "${flags[@]}" -static -pthread test/native-neon/harness.c $kernel_sources \
      -lm -o "$out/harness-clang"
    expected=neon
    [ -n "$march" ] && expected=neon-dotprod
    echo "-- $(basename "$clang") ${march:-(no -march)}, CPU neoverse-n1 (dispatch should choose $expected)"
    run_on neoverse-n1 "$out/harness-clang" "$expected"
  done
fi

# Elsewhere than Linux (macOS) there is no AT_HWCAP: dispatch.c takes SDOT only from a build that
# targets it (Apple's clang does for Apple silicon). Checked with dispatch.c built as if for such
# a system (__linux__ undefined), without and with the extension targeted, on the Neoverse N1.
if [ "$cpus" != native ]; then
  for march in "" "-march=armv8.2-a+dotprod"; do
    "$cc" $march "${flags[@]}" -U__linux__ -U__linux -Ulinux -c src/native/dispatch.c -o "$out/dispatch-elsewhere.o"
    "$cc" $march "${flags[@]}" -static -pthread test/native-neon/harness.c $(echo "$kernel_sources" | grep -v '/dispatch\.c$') \
      "$out/dispatch-elsewhere.o" -lm -o "$out/harness-elsewhere"
    expected=neon
    [ -n "$march" ] && expected=neon-dotprod
    echo "-- dispatch without AT_HWCAP, ${march:-(no -march)}, CPU neoverse-n1 (dispatch should choose $expected)"
    run_on neoverse-n1 "$out/harness-elsewhere" "$expected"
  done
fi

echo "== the shared fixtures on the native backend, with an arm64 Node"
if [ "$cpus" = native ]; then
  node test/native-neon/model-check.mjs . "$out/kernel-tokens.json"
  exit 0
fi
if [ -z "${HERD_ARM64_SYSROOT:-}" ]; then
  echo "   not run: set HERD_ARM64_SYSROOT to a folder with an arm64 Node (usr/bin/node) to run it"
  exit 0
fi
[ -d dist ] || { echo "test:neon: stage 3 needs dist/ (npm run build)" >&2; exit 1; }
# A tree of its own: the arm64 addon must not replace this checkout's build/.
tree="$out/tree"
mkdir -p "$tree/src" "$tree/test"
cp -r binding.gyp package.json dist "$tree/"
cp -r src/native "$tree/src/"
ln -s "$(pwd)/node_modules" "$tree/node_modules"
ln -s "$(pwd)/test/fixtures" "$tree/test/fixtures"
# npm's own node-gyp (on PATH only inside npm scripts), with the headers found above.
gyp=(node-gyp)
command -v node-gyp >/dev/null || gyp=(node "$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js")
gyp+=(--arch=arm64 --nodedir="$(cd "$headers/../.." && pwd)")
(cd "$tree" && "${gyp[@]}" configure && CC="$cc" LINK="$cc" "${gyp[@]}" build) >"$out/gyp.log" 2>&1 ||
  { cat "$out/gyp.log"; exit 1; }
if grep -E ": warning:" "$out/gyp.log"; then exit 1; fi
file "$tree/build/Release/herd_native.node" | grep aarch64
# The WASM kernels' tokens, from this machine's Node (the emulated one may lack relaxed SIMD).
node test/native-neon/model-check.mjs . "$out/kernel-tokens.json" >/dev/null
for cpu in $cpus; do
  echo "-- CPU $cpu"
  qemu-aarch64 -cpu "$cpu" -L "$HERD_ARM64_SYSROOT" "$HERD_ARM64_SYSROOT/usr/bin/node" \
    test/native-neon/model-check.mjs "$tree" "$out/kernel-tokens.json"
done
