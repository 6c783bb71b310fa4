import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import type { AttentionSlice, KvCache, Ops } from './ops.js';
import type { WeightSource } from '../formats/weights.js';
import { concatenateRopeTables, ropeTables, type RopeTables } from './rope.js';
import { ropeInverseFrequencies } from '../spec/rope.js';

/**
 * LlamaForCausalLM with Hugging Face semantics, written once over the Ops interface.
 * Reads top to bottom like transformers' modeling_llama.py: embed → N × (attention + MLP, each
 * pre-normed and residual) → final norm → head.
 */

interface DecoderLayerWeights<W> {
  inputLayernorm: W;
  qProj: W;
  kProj: W;
  vProj: W;
  oProj: W;
  postAttentionLayernorm: W;
  gateProj: W;
  upProj: W;
  downProj: W;
}

interface LlamaWeights<W> {
  embedTokens: W;
  layers: DecoderLayerWeights<W>[];
  norm: W;
  /** The output head; the embedding table itself when embeddings are tied. */
  lmHead: W;
}

/**
 * Tokens that go through the layers in one pass: forward runs a longer input in parts of this
 * size, each attending to the KV cache the earlier parts filled (llama.cpp's micro-batch). The
 * intermediate activations of a pass grow with its tokens — about 0.4 MB per token on a 1B model
 * in float32 — so a long prompt in one pass could need gigabytes; measured on the 1B shape on
 * the CPU kernels, parts of 128 tokens prefill as fast as one pass of 1,000.
 */
export const PREFILL_CHUNK_TOKENS = 128;

export interface ForwardOptions {
  /** Logits for every input position instead of only the last (scoring, eval). */
  allPositions?: boolean;
  /** Tokens per pass through the layers (default: the backend's prefillChunkTokens, else PREFILL_CHUNK_TOKENS); the logits do not depend on it. */
  chunkTokens?: number;
  /**
   * The last position's logits written here (vocabulary size) and returned, instead of a new
   * array: a decode loop's one buffer, where a new 0.5 MB array a token waits for the garbage
   * collector (about 2.5 MB of them at a 1B decode's peak RSS). Not with allPositions.
   */
  into?: Float32Array;
}

/** One sequence's part of a batched pass: its new ids, the cache they extend, and which logits it wants. */
export interface BatchedSequence {
  ids: Int32Array;
  cache: KvCache;
  /** Logits for every one of its ids instead of only the last. */
  allPositions?: boolean;
}

export class LlamaForCausalLM<T, W> {
  private readonly inverseFrequencies: Float32Array;

  private constructor(
    readonly config: LlamaConfig,
    private readonly ops: Ops<T, W>,
    private readonly weights: LlamaWeights<W>,
  ) {
    this.inverseFrequencies = ropeInverseFrequencies(config);
  }

  /** Hands every tensor of a validated checkpoint to the backend, one at a time. */
  static load<T, W>(
    config: LlamaConfig,
    source: WeightSource,
    ops: Ops<T, W>,
    onTensor: (loaded: number, total: number) => void = () => {},
  ): LlamaForCausalLM<T, W> {
    const total = config.numHiddenLayers * 9 + (config.tieWordEmbeddings ? 2 : 3);
    let loaded = 0;
    const take = <R>(make: () => R): R => {
      const weight = make();
      onTensor(++loaded, total);
      return weight;
    };
    const linear = (name: string) => take(() => ops.linearWeight(name, source));
    const vector = (name: string) => take(() => ops.vectorWeight(name, source));

    const embedTokens = take(() => ops.embeddingWeight('model.embed_tokens.weight', source));
    const layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
      const prefix = `model.layers.${i}`;
      return {
        inputLayernorm: vector(`${prefix}.input_layernorm.weight`),
        qProj: linear(`${prefix}.self_attn.q_proj.weight`),
        kProj: linear(`${prefix}.self_attn.k_proj.weight`),
        vProj: linear(`${prefix}.self_attn.v_proj.weight`),
        oProj: linear(`${prefix}.self_attn.o_proj.weight`),
        postAttentionLayernorm: vector(`${prefix}.post_attention_layernorm.weight`),
        gateProj: linear(`${prefix}.mlp.gate_proj.weight`),
        upProj: linear(`${prefix}.mlp.up_proj.weight`),
        downProj: linear(`${prefix}.mlp.down_proj.weight`),
      };
    });
    const norm = vector('model.norm.weight');
    const lmHead = config.tieWordEmbeddings ? embedTokens : linear('lm_head.weight');
    return new LlamaForCausalLM(config, ops, { embedTokens, layers, norm, lmHead });
  }

  get backendName(): string {
    return this.ops.name;
  }

  /** A KV cache for up to `capacity` positions (default: max_position_embeddings). */
  createCache(capacity = this.config.maxPositionEmbeddings): KvCache {
    const { numHiddenLayers: layers, numKeyValueHeads: kvHeads, headDim } = this.config;
    return this.ops.createKvCache({ layers, kvHeads, headDim, capacity: Math.min(capacity, this.config.maxPositionEmbeddings) });
  }

  /**
   * Runs `ids` at the positions after what `cache` holds, appends their keys and values, and
   * returns the logits of the last position ([vocab]) or of all of them ([ids.length × vocab]).
   * A long input runs in parts of `chunkTokens`; the head runs only where logits are returned.
   */
  forward(ids: Int32Array, cache: KvCache, options: ForwardOptions = {}): Float32Array {
    this.checkRoom(ids.length, cache);
    const chunkTokens = options.chunkTokens ?? this.ops.prefillChunkTokens ?? PREFILL_CHUNK_TOKENS;
    if (!Number.isInteger(chunkTokens) || chunkTokens < 1) throw new HerdError(`chunkTokens must be at least 1, got ${chunkTokens}`);
    if (options.into && options.allPositions) throw new HerdError('forward writes into a caller\'s array only the last position\'s logits, not allPositions');
    const logits: Float32Array[] = [];
    for (let first = 0; first < ids.length; first += chunkTokens) {
      const part = ids.subarray(first, first + chunkTokens);
      const isLast = first + chunkTokens >= ids.length;
      if (options.allPositions || isLast) logits.push(this.ops.scope(() => this.ops.read(this.logits(part, cache, options), options.into)));
      else this.ops.scope(() => void this.hiddenStates([{ ids: part, cache }]));
    }
    return logits.length === 1 ? logits[0]! : concatenate(logits);
  }

  /**
   * The MLP block of layer `index` alone, on rows of the embedding table taken as its (normed)
   * input, in parts of `partTokens`: how AWQ measures its MLP group on the recorded input, as
   * AutoAWQ does, without running the attention block before it.
   */
  mlpOfRows(ids: Int32Array, index = 0, partTokens = PREFILL_CHUNK_TOKENS): Float32Array {
    const parts: Float32Array[] = [];
    for (let first = 0; first < ids.length; first += partTokens) {
      const part = ids.subarray(first, first + partTokens);
      parts.push(this.ops.scope(() => this.ops.read(this.mlp(this.ops.embedding(this.weights.embedTokens, part), this.weights.layers[index]!))));
    }
    return concatenate(parts);
  }

  /**
   * The same pass in one part, returning the backend's logits tensor ([rows, vocab]) in the
   * caller's scope: for callers that keep computing on the backend, such as a training loss.
   */
  logits(ids: Int32Array, cache: KvCache, options: ForwardOptions = {}): T {
    let hidden = this.hiddenStates([{ ids, cache }]);
    if (!options.allPositions) hidden = this.ops.lastRows(hidden, 1);
    hidden = this.ops.rmsNorm(hidden, this.weights.norm, this.config.rmsNormEps);
    return this.ops.linear(hidden, this.weights.lmHead);
  }

  /**
   * One pass over the new ids of several sequences (continuous batching): their rows go through
   * every linear layer as one activation matrix, so each weight is read once for all of them,
   * while each sequence attends only to its own cache. Returns each sequence's logits, as forward
   * does, in the sequences' order. The caller keeps each part short (no chunking here).
   */
  forwardBatch(sequences: readonly BatchedSequence[]): Float32Array[] {
    if (sequences.length === 0) return [];
    if (new Set(sequences.map(({ cache }) => cache)).size !== sequences.length) throw new HerdError('a batched pass takes each KV cache once');
    const vocab = this.config.vocabSize;
    const wanted: number[] = [];
    let row = 0;
    for (const { ids, allPositions } of sequences) {
      for (let i = allPositions ? 0 : ids.length - 1; i < ids.length; i++) wanted.push(row + i);
      row += ids.length;
    }
    const logits = this.ops.scope(() => {
      const hidden = this.ops.pickRows(this.hiddenStates(sequences), wanted);
      return this.ops.read(this.ops.linear(this.ops.rmsNorm(hidden, this.weights.norm, this.config.rmsNormEps), this.weights.lmHead));
    });
    let offset = 0;
    return sequences.map(({ ids, allPositions }) => {
      const rows = allPositions ? ids.length : 1;
      offset += rows * vocab;
      return logits.subarray(offset - rows * vocab, offset);
    });
  }

  /** Copies the first `positions` positions of one cache into another (the prefix cache's reuse) and sets its length. */
  copyCache(from: KvCache, to: KvCache, positions: number): void {
    if (positions > from.length || positions > to.shape.capacity) throw new HerdError(`cannot copy ${positions} positions from a cache of ${from.length} into one of ${to.shape.capacity}`);
    this.ops.copyKvCache(from, to, positions);
  }

  /**
   * Embedding, then every decoder layer, for each sequence's ids at the positions after what its
   * cache holds (rows of all sequences one after another); appends their keys and values.
   */
  private hiddenStates(sequences: readonly { ids: Int32Array; cache: KvCache }[]): T {
    sequences.forEach(({ ids, cache }) => this.checkRoom(ids.length, cache));
    const slices: AttentionSlice[] = sequences.map(({ ids, cache }) => ({ cache, start: cache.length, rows: ids.length }));
    const rope = concatenateRopeTables(slices.map(({ start, rows }) => ropeTables(this.inverseFrequencies, start, rows)));
    const allIds = sequences.length === 1 ? sequences[0]!.ids : Int32Array.from(sequences.flatMap(({ ids }) => [...ids]));
    let hidden = this.ops.embedding(this.weights.embedTokens, allIds);
    this.weights.layers.forEach((layer, index) => {
      const run = (input: T) => this.decoderLayer(input, layer, index, slices, rope);
      hidden = this.ops.runLayer ? this.ops.runLayer(hidden, run) : run(hidden);
    });
    slices.forEach(({ cache, start, rows }) => (cache.length = start + rows));
    return hidden;
  }

  /** Refuses an input that is empty or would overflow the cache, before any of it runs. */
  private checkRoom(tokens: number, cache: KvCache): void {
    if (tokens === 0) throw new HerdError('forward needs at least one token');
    if (cache.length + tokens > cache.shape.capacity) {
      throw new HerdError(`sequence of ${cache.length + tokens} tokens exceeds the context of ${cache.shape.capacity} positions`);
    }
  }

  private decoderLayer(hidden: T, layer: DecoderLayerWeights<W>, index: number, slices: readonly AttentionSlice[], rope: RopeTables): T {
    const eps = this.config.rmsNormEps;
    const attended = this.selfAttention(this.ops.rmsNorm(hidden, layer.inputLayernorm, eps), layer, index, slices, rope);
    const afterAttention = this.ops.add(hidden, attended);
    const mlpOut = this.mlp(this.ops.rmsNorm(afterAttention, layer.postAttentionLayernorm, eps), layer);
    return this.ops.add(afterAttention, mlpOut);
  }

  private selfAttention(x: T, layer: DecoderLayerWeights<W>, index: number, slices: readonly AttentionSlice[], rope: RopeTables): T {
    const { numAttentionHeads, numKeyValueHeads } = this.config;
    const [queryStates, keyStates, values] = this.linears(x, [layer.qProj, layer.kProj, layer.vProj]) as [T, T, T];
    const queries = this.ops.rope(queryStates, numAttentionHeads, rope);
    const keys = this.ops.rope(keyStates, numKeyValueHeads, rope);
    const attended = this.ops.attention(queries, keys, values, index, slices);
    return this.ops.linear(attended, layer.oProj);
  }

  private mlp(x: T, layer: DecoderLayerWeights<W>): T {
    const [gate, up] = this.linears(x, [layer.gateProj, layer.upProj]) as [T, T];
    return this.ops.linear(this.ops.swiglu(gate, up), layer.downProj);
  }

  /** x times each weight: in one call where the backend has one (linearMany), else one at a time. */
  private linears(x: T, weights: readonly W[]): T[] {
    return this.ops.linearMany ? this.ops.linearMany(x, weights) : weights.map((weight) => this.ops.linear(x, weight));
  }

  /**
   * Bytes of weights one decoded token reads: every layer's matrices and norms, and the head
   * (the embedding lookup reads one row).
   */
  bytesReadPerToken(): number {
    const { layers, norm, lmHead } = this.weights;
    const layerWeights = layers.flatMap((layer) => Object.values(layer) as W[]);
    return [...layerWeights, norm, lmHead].reduce((total, weight) => total + this.ops.storedBytes(weight), 0);
  }

  /** Frees the backend's copies of the weights. */
  dispose(): void {
    const { embedTokens, layers, norm, lmHead } = this.weights;
    const all = [embedTokens, norm, ...layers.flatMap((layer) => Object.values(layer) as W[])];
    if (lmHead !== embedTokens) all.push(lmHead);
    all.forEach((weight) => this.ops.disposeWeight(weight));
  }
}

function concatenate(parts: Float32Array[]): Float32Array {
  const whole = new Float32Array(parts.reduce((length, part) => length + part.length, 0));
  parts.reduce((offset, part) => (whole.set(part, offset), offset + part.length), 0);
  return whole;
}
