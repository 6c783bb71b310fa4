import type { LlamaConfig } from '../src/spec/llama-config.js';
import { LlamaForCausalLM } from '../src/engine/model.js';
import type { WeightSource } from '../src/formats/weights.js';
import type { HostTensor } from '../src/formats/safetensors.js';
import { tensorShapes } from '../src/spec/tensors.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';

/**
 * A model whose float32 weights total more than 4 GiB, more than one WebAssembly memory can hold:
 * the kernels must spread it over several memories, of several threads or of one. Made on the
 * fly: the decoder layers are zero (so every layer adds nothing to the residual stream) and the
 * small embedding table and head are ones, so the logits are known from first principles.
 */
const config: LlamaConfig = {
  vocabSize: 64, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 5, numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 128,
  rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: null, tieWordEmbeddings: false, maxPositionEmbeddings: 16, bosTokenId: null, eosTokenIds: [], torchDtype: null,
  attentionBias: false, mlpBias: false, hiddenAct: 'silu',
};
const shapes = tensorShapes(config);

class SyntheticSource implements WeightSource {
  bytes = 0;

  readFloat(name: string): HostTensor {
    const shape = shapes.get(name)!;
    const value = name.includes('layers.') && !name.endsWith('layernorm.weight') ? 0 : 1;
    return { name, shape, data: new Float32Array(shape.reduce((a, b) => a * b)).fill(value) };
  }

  describePacked(name: string) {
    const shape = shapes.get(name)!;
    if (shape.length !== 2 || !name.includes('layers.')) return null;
    const byteLength = shape[0]! * shape[1]! * 4;
    this.bytes += byteLength;
    return { format: 'F32' as const, shape, byteLength };
  }

  readPackedInto(_name: string, target: Uint8Array): void {
    target.fill(0);
  }
}

// On three threads each holds a third (1.4 GiB) in one memory; on one, the main thread fills three.
test.each([[3, 1], [1, 3]])('a model of more than 4 GiB of weights loads and runs on %i thread(s), %i memory(ies) on the main thread', async (threads, mainMemories) => {
  const ops = await KernelOps.create({ threads });
  const source = new SyntheticSource();
  try {
    const model = LlamaForCausalLM.load(config, source, ops as never);
    expect(source.bytes).toBeGreaterThan(4 * 2 ** 30);
    expect(ops.mainMemories).toBe(mainMemories);
    const cache = model.createCache(4);
    const logits = model.forward(Int32Array.of(3, 7), cache);
    cache.dispose();
    // h = embedding row of ones; rmsnorm(ones) · ones = ones; each logit = Σ over 4096 of 1 · 1.
    expect(logits).toHaveLength(64);
    for (const logit of logits) expect(logit).toBeCloseTo(4096 / Math.sqrt(1 + 1e-5), 1);
  } finally {
    await ops.close();
  }
});
