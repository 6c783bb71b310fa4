// Runs when node-gyp could not build the native kernels (no compiler, no Node headers): the
// install still succeeds, and herd uses its WASM kernels (`herd env` says why).
console.warn('herd: native kernels not built (node-gyp failed); herd will use its WASM kernels. See `herd env`.');
