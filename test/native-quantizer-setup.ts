import { requireNativeAddon } from '../src/native/addon.js';
import { ggufQuantizer, type GgufQuantizer } from '../src/quant/native-gguf.js';

/**
 * What the native GGUF quantizer suites share. The addon must be built: they fail (they do not
 * skip) when it is missing.
 */
const addon = requireNativeAddon();

/** The K-quants' scale searches have two implementations: the portable one (forced by the scalar path) and AVX2's (every x86 SIMD path). */
export const SEARCH_PATHS = ['scalar', 'avx2'].filter((isa) => addon.info().paths[isa] === '');

/** Each search path on 1 and 3 threads. */
export const PATHS_AND_THREADS = SEARCH_PATHS.flatMap((isa) => [1, 3].map((threads) => [isa, threads] as const));

/**
 * Inside a describe block: the addon on `isa` and a quantizer on `threads` while the block runs,
 * the best path and the pool given back after. The pool and the path are the addon's, so they are
 * set when the block runs, not when jest collects it: hence a getter.
 */
export function quantizerDuringBlock(isa: string, threads: number): () => GgufQuantizer {
  const bestPath = addon.info().isa;
  let quantizer: GgufQuantizer | undefined;
  beforeAll(() => {
    addon.choose(isa);
    quantizer = ggufQuantizer(threads);
  });
  afterAll(() => {
    quantizer!.close();
    addon.choose(bestPath);
  });
  return () => quantizer!;
}
