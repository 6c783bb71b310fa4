import path from 'node:path';
import { modelError } from '../errors.js';
import type { GgufFile } from './gguf.js';

/**
 * Checks a llama GGUF file's hyper-parameters against its tensor table before anything is built
 * from them, so a contradiction is reported as the two facts that disagree (the key and the
 * tensor) rather than as a shape mismatch further on. Dims are ggml's: [in, out].
 */
export function checkLlamaMetadataAgainstTensors(file: GgufFile): void {
  const where = path.basename(file.file);
  const m = file.metadata;
  const number = (key: string): number | undefined => (typeof m.get(key) === 'number' ? (m.get(key) as number) : undefined);
  const fail = (message: string): never => {
    throw modelError(`${where}: ${message}`, file.file);
  };
  const hidden = number('llama.embedding_length');
  const embedding = file.tensors.get('token_embd.weight');
  if (hidden !== undefined && embedding && embedding.dims[0] !== hidden) {
    fail(`tensor token_embd.weight has rows of ${embedding.dims[0]} values but llama.embedding_length is ${hidden}`);
  }
  checkBlockCount(file, number('llama.block_count'), fail);
  const heads = number('llama.attention.head_count');
  if (hidden === undefined || heads === undefined) return;
  const keyLength = number('llama.attention.key_length');
  const headDim = keyLength ?? hidden / heads;
  const headSize = keyLength !== undefined ? `llama.attention.key_length ${headDim}` : `head size ${headDim} (llama.embedding_length ${hidden} / llama.attention.head_count ${heads})`;
  const kvHeads = number('llama.attention.head_count_kv') ?? heads;
  for (const [name, info] of file.tensors) {
    const rows = info.dims[1];
    if (/^blk\.\d+\.attn_q\.weight$/.test(name) && rows !== heads * headDim) {
      fail(`tensor ${name} has ${rows} rows but llama.attention.head_count ${heads} × ${headSize} is ${heads * headDim}`);
    }
    if (/^blk\.\d+\.attn_[kv]\.weight$/.test(name) && rows !== kvHeads * headDim) {
      fail(`tensor ${name} has ${rows} rows but llama.attention.head_count_kv ${kvHeads} × ${headSize} is ${kvHeads * headDim}`);
    }
  }
  const factors = file.tensors.get('rope_freqs.weight');
  if (factors && factors.dims[0] !== headDim / 2) fail(`tensor rope_freqs.weight has ${factors.dims[0]} factors but a head size of ${headDim} needs ${headDim / 2}`);
}

/** Layers run from blk.0 to blk.(block_count − 1): none missing, none beyond. */
function checkBlockCount(file: GgufFile, blockCount: number | undefined, fail: (message: string) => never): void {
  if (blockCount === undefined) return;
  const layers = new Map<number, string>();
  for (const name of file.tensors.keys()) {
    const layer = /^blk\.(\d+)\./.exec(name);
    if (layer && !layers.has(Number(layer[1]))) layers.set(Number(layer[1]), name);
  }
  for (const [layer, name] of layers) {
    if (layer >= blockCount) fail(`tensor ${name} belongs to layer ${layer} but llama.block_count is ${blockCount}`);
  }
  for (let layer = 0; layer < blockCount; layer++) {
    if (!layers.has(layer)) fail(`llama.block_count is ${blockCount} but no tensor belongs to layer ${layer} (blk.${layer}.*)`);
  }
}
