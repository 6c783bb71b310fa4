import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { HerdError, modelError } from '../errors.js';
import { openForReading, readJsonFile } from '../formats/files.js';
import { readFloatTensor, readSafetensorsHeader, type HostTensor } from '../formats/safetensors.js';
import { debertaTensors } from '../spec/deberta.js';

/**
 * Hugging Face `DebertaV2ForSequenceClassification` (the architecture of Meta's Prompt Guard),
 * inference only, float32 on tfjs's active backend. The forward pass follows
 * transformers' modeling_deberta_v2.py step by step; dropout is the identity at inference.
 */

/** The config.json settings this implementation reads, checked against what it supports. */
export interface DebertaConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  layerNormEps: number;
  /** Buckets on each side of the relative position (`position_buckets`). */
  positionBuckets: number;
  /** The relative distance the log buckets stretch to (`max_relative_positions`, or `max_position_embeddings` when < 1). */
  maxRelativePositions: number;
  maxPositionEmbeddings: number;
  padTokenId: number;
  /** Label names in logit order, from id2label. */
  labels: string[];
}

const SUPPORTED_ARCHITECTURE = 'DebertaV2ForSequenceClassification';

/** Reads config.json and refuses the DeBERTa-v2 variants this forward pass does not implement. */
export function readDebertaConfig(dir: string): DebertaConfig {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw modelError(`${dir}: no config.json; a Prompt Guard folder holds config.json, model.safetensors and tokenizer.json`, file);
  const raw = readJsonFile(file, true) as Record<string, unknown>;
  const architectures = Array.isArray(raw.architectures) ? raw.architectures : [];
  if (raw.model_type !== 'deberta-v2' || !architectures.includes(SUPPORTED_ARCHITECTURE)) {
    throw modelError(`${file}: not a DeBERTa-v2 sequence classifier (model_type ${JSON.stringify(raw.model_type)}, architectures ${JSON.stringify(architectures)}); expected ${SUPPORTED_ARCHITECTURE}`, file);
  }
  const integer = (key: string, fallback?: number): number => {
    const value = raw[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value)) throw modelError(`${file}: ${key} must be an integer, got ${JSON.stringify(raw[key])}`, file);
    return value;
  };
  const unsupported = (what: string) => modelError(`${file}: ${what} is not supported (herd implements the Prompt Guard layout of DeBERTa-v2)`, file);
  // The Prompt Guard layout: relative attention with log buckets, shared keys, c2p and p2c, no absolute positions.
  if (raw.relative_attention !== true) throw unsupported('relative_attention false');
  if (raw.position_biased_input !== false) throw unsupported('position_biased_input (absolute position embeddings)');
  if ((raw.type_vocab_size ?? 0) !== 0) throw unsupported('type_vocab_size > 0');
  if (raw.share_att_key !== true) throw unsupported('share_att_key false');
  const posAttType = Array.isArray(raw.pos_att_type) ? [...raw.pos_att_type].sort() : raw.pos_att_type;
  if (JSON.stringify(posAttType) !== JSON.stringify(['c2p', 'p2c'])) throw unsupported(`pos_att_type ${JSON.stringify(raw.pos_att_type)}`);
  if (raw.norm_rel_ebd !== 'layer_norm') throw unsupported(`norm_rel_ebd ${JSON.stringify(raw.norm_rel_ebd)}`);
  if ((raw.conv_kernel_size ?? 0) !== 0) throw unsupported('conv_kernel_size (the convolution layer)');
  if ((raw.embedding_size ?? raw.hidden_size) !== raw.hidden_size) throw unsupported('embedding_size different from hidden_size');
  for (const key of ['hidden_act', 'pooler_hidden_act']) if ((raw[key] ?? 'gelu') !== 'gelu') throw unsupported(`${key} ${JSON.stringify(raw[key])}`);
  if ((raw.pooler_hidden_size ?? raw.hidden_size) !== raw.hidden_size) throw unsupported('pooler_hidden_size different from hidden_size');

  const hiddenSize = integer('hidden_size');
  const numHeads = integer('num_attention_heads');
  if (hiddenSize % numHeads !== 0) throw modelError(`${file}: hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`, file);
  const positionBuckets = integer('position_buckets', -1);
  if (positionBuckets <= 0) throw unsupported('position_buckets <= 0 (relative positions without log buckets)');
  const maxPositionEmbeddings = integer('max_position_embeddings', 512);
  const maxRelative = integer('max_relative_positions', -1);
  const id2label = (raw.id2label ?? {}) as Record<string, unknown>;
  const labels = Object.keys(id2label)
    .sort((a, b) => Number(a) - Number(b))
    .map((key) => String(id2label[key]));
  if (labels.length === 0) throw modelError(`${file}: no id2label; the classifier's labels are unknown`, file);
  const layerNormEps = raw.layer_norm_eps ?? 1e-7;
  if (typeof layerNormEps !== 'number') throw modelError(`${file}: layer_norm_eps must be a number`, file);
  return {
    hiddenSize,
    numLayers: integer('num_hidden_layers'),
    numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: integer('intermediate_size'),
    vocabSize: integer('vocab_size'),
    layerNormEps,
    positionBuckets,
    maxRelativePositions: maxRelative < 1 ? maxPositionEmbeddings : maxRelative,
    maxPositionEmbeddings,
    padTokenId: integer('pad_token_id', 0),
    labels,
  };
}

/**
 * HF's make_log_bucket_position: distances inside ±bucketSize/2 keep their value; longer ones
 * share logarithmically wider buckets up to maxPosition, so 2·bucketSize embeddings cover any length.
 */
export function logBucketPosition(relativePosition: number, bucketSize: number, maxPosition: number): number {
  const mid = Math.floor(bucketSize / 2);
  if (relativePosition < mid && relativePosition > -mid) return relativePosition;
  const absolute = Math.abs(relativePosition);
  if (absolute <= mid) return relativePosition;
  // torch computes this in float32; Math.fround keeps a distance that lands exactly on a bucket edge on the same side.
  const ratio = Math.fround(Math.fround(Math.log(Math.fround(absolute / mid))) / Math.fround(Math.log(Math.fround((maxPosition - 1) / mid))));
  const logPosition = Math.ceil(Math.fround(ratio * (mid - 1))) + mid;
  return Math.sign(relativePosition) * logPosition;
}

/** HF's build_relative_position for a sequence of `length`: the bucket of query i − key j, row-major [i][j]. */
export function buildRelativePosition(length: number, bucketSize: number, maxPosition: number): Int32Array {
  const buckets = new Int32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = 0; j < length; j++) buckets[i * length + j] = logBucketPosition(i - j, bucketSize, maxPosition);
  return buckets;
}

interface Linear {
  weight: tf.Tensor2D; // [out, in], as nn.Linear stores it
  bias: tf.Tensor1D;
}

interface LayerNorm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

interface EncoderLayer {
  query: Linear;
  key: Linear;
  value: Linear;
  attentionOutput: Linear;
  attentionNorm: LayerNorm;
  intermediate: Linear;
  output: Linear;
  outputNorm: LayerNorm;
}

interface DebertaWeights {
  wordEmbeddings: tf.Tensor2D;
  embeddingsNorm: LayerNorm;
  layers: EncoderLayer[];
  relEmbeddings: tf.Tensor2D;
  relEmbeddingsNorm: LayerNorm;
  pooler: Linear;
  classifier: Linear;
}

/** A batch of id sequences, right-padded to one length, with 1 for real tokens and 0 for padding. */
export interface ClassifierBatch {
  ids: number[][];
  attentionMask: number[][];
}

export class DebertaClassifier {
  private constructor(
    readonly config: DebertaConfig,
    private readonly weights: DebertaWeights,
  ) {}

  /** Loads config.json and model.safetensors (HF state_dict names) from a folder. */
  static load(dir: string): DebertaClassifier {
    const config = readDebertaConfig(dir);
    const file = path.join(dir, 'model.safetensors');
    if (!fs.existsSync(file)) throw modelError(`${dir}: no model.safetensors`, file);
    const entries = new Map(readSafetensorsHeader(file).map((entry) => [entry.name, entry]));
    // The one DeBERTa tensor table (spec/deberta.ts) gives every shape config.json implies.
    const shapes = new Map(debertaTensors({ ...config, numLabels: config.labels.length }).map((tensor) => [tensor.name, tensor.shape]));
    const fd = openForReading(file);
    try {
      const read = (name: string): HostTensor => {
        const shape = shapes.get(name)!;
        const entry = entries.get(name);
        if (!entry) throw modelError(`${path.basename(file)}: missing tensor ${name}`, file, name);
        if (JSON.stringify(entry.shape) !== JSON.stringify(shape)) {
          throw modelError(`${path.basename(file)}: tensor ${name} has shape [${entry.shape.join(', ')}], config.json implies [${shape.join(', ')}]`, file, name);
        }
        return readFloatTensor(entry, fd);
      };
      const classifierRows = entries.get('classifier.weight')?.shape[0];
      if (classifierRows !== undefined && classifierRows !== config.labels.length) {
        throw modelError(`${path.join(dir, 'config.json')}: id2label names ${config.labels.length} labels but classifier.weight has ${classifierRows} rows`, file, 'classifier.weight');
      }
      const matrix = (name: string) => {
        const [rows, columns] = shapes.get(name)!;
        return tf.tensor2d(read(name).data, [rows!, columns!]);
      };
      const vector = (name: string) => tf.tensor1d(read(name).data);
      const linear = (prefix: string): Linear => ({ weight: matrix(`${prefix}.weight`), bias: vector(`${prefix}.bias`) });
      const layerNorm = (prefix: string): LayerNorm => ({ weight: vector(`${prefix}.weight`), bias: vector(`${prefix}.bias`) });
      const layers = Array.from({ length: config.numLayers }, (_, n): EncoderLayer => {
        const prefix = `deberta.encoder.layer.${n}`;
        return {
          query: linear(`${prefix}.attention.self.query_proj`),
          key: linear(`${prefix}.attention.self.key_proj`),
          value: linear(`${prefix}.attention.self.value_proj`),
          attentionOutput: linear(`${prefix}.attention.output.dense`),
          attentionNorm: layerNorm(`${prefix}.attention.output.LayerNorm`),
          intermediate: linear(`${prefix}.intermediate.dense`),
          output: linear(`${prefix}.output.dense`),
          outputNorm: layerNorm(`${prefix}.output.LayerNorm`),
        };
      });
      return new DebertaClassifier(config, {
        wordEmbeddings: matrix('deberta.embeddings.word_embeddings.weight'),
        embeddingsNorm: layerNorm('deberta.embeddings.LayerNorm'),
        layers,
        relEmbeddings: matrix('deberta.encoder.rel_embeddings.weight'),
        relEmbeddingsNorm: layerNorm('deberta.encoder.LayerNorm'),
        pooler: linear('pooler.dense'),
        classifier: linear('classifier'),
      });
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Frees the weights' tfjs memory. */
  dispose(): void {
    const w = this.weights;
    const tensors: tf.Tensor[] = [w.wordEmbeddings, w.relEmbeddings, ...norms(w.embeddingsNorm, w.relEmbeddingsNorm), ...linears(w.pooler, w.classifier)];
    for (const layer of w.layers) {
      tensors.push(...linears(layer.query, layer.key, layer.value, layer.attentionOutput, layer.intermediate, layer.output), ...norms(layer.attentionNorm, layer.outputNorm));
    }
    tf.dispose(tensors);
  }

  /** The classifier's logits, [batch][label], for right-padded id sequences. */
  logits(batch: ClassifierBatch): number[][] {
    const { ids, attentionMask } = batch;
    if (ids.length === 0) return [];
    const length = ids[0]!.length;
    if (length === 0) throw new HerdError('a sequence to classify needs at least one token');
    ids.forEach((row, b) => {
      if (row.length !== length || attentionMask[b]?.length !== length) throw new HerdError('every sequence of a batch must have the same length as its attention mask');
      for (const id of row) if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new HerdError(`token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
    });
    const result = tf.tidy(() => this.forward(tf.tensor2d(ids, [ids.length, length], 'int32'), tf.tensor2d(attentionMask, [ids.length, length], 'float32')));
    const values = result.arraySync() as number[][];
    result.dispose();
    return values;
  }

  /** DebertaV2ForSequenceClassification.forward: ids [B, L], mask [B, L] → logits [B, labels]. */
  private forward(ids: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor2D {
    const { config, weights } = this;
    const [batch, length] = ids.shape;
    const eps = config.layerNormEps;

    // DebertaV2Embeddings: word embeddings only (no absolute positions, no token types), LayerNorm,
    // then padding positions zeroed.
    const embeddings = tf.reshape(tf.gather(weights.wordEmbeddings, tf.reshape(ids, [-1])), [batch, length, config.hiddenSize]) as tf.Tensor3D; // [B, L, H]
    let hidden: tf.Tensor3D = tf.mul(layerNorm(embeddings, weights.embeddingsNorm, eps), tf.expandDims(mask, 2));

    // DebertaV2Encoder.get_attention_mask: a query-key pair counts only when both are real tokens.
    const pairMask = tf.expandDims(tf.greater(tf.mul(tf.expandDims(mask, 2), tf.expandDims(mask, 1)), 0), 1) as tf.Tensor4D; // [B, 1, L, L]
    // get_rel_embedding: the relative embeddings pass through the encoder's LayerNorm (norm_rel_ebd).
    const relEmbeddings = layerNorm(weights.relEmbeddings, weights.relEmbeddingsNorm, eps);
    // get_rel_pos: the bucket of every query − key distance, shared by all layers.
    const relativePosition = buildRelativePosition(length, config.positionBuckets, config.maxRelativePositions);

    for (const layer of weights.layers) {
      // DebertaV2Attention: disentangled self-attention, dense, residual LayerNorm.
      const context = this.disentangledSelfAttention(hidden, layer, pairMask, relEmbeddings, relativePosition, batch, length);
      const attentionOutput = layerNorm(tf.add(linear(context, layer.attentionOutput), hidden), layer.attentionNorm, eps);
      // DebertaV2Intermediate + DebertaV2Output.
      const intermediate = gelu(linear(attentionOutput, layer.intermediate));
      hidden = layerNorm(tf.add(linear(intermediate, layer.output), attentionOutput), layer.outputNorm, eps);
    }

    // ContextPooler: the hidden state of the first token ([CLS]), dense, GELU; then the classifier.
    const first = tf.squeeze(tf.slice(hidden, [0, 0, 0], [batch, 1, config.hiddenSize]), [1]) as tf.Tensor2D;
    const pooled = gelu(linear(first, weights.pooler));
    return linear(pooled, weights.classifier) as tf.Tensor2D;
  }

  /**
   * DisentangledSelfAttention with share_att_key and pos_att_type [p2c, c2p]: content-to-content
   * scores plus content-to-position (query vs. the key projection of the relative embedding of
   * i − j) and position-to-content (key vs. the query projection of the relative embedding of
   * j − i), all divided by sqrt(headDim · 3).
   */
  private disentangledSelfAttention(
    hidden: tf.Tensor3D,
    layer: EncoderLayer,
    pairMask: tf.Tensor4D,
    relEmbeddings: tf.Tensor2D,
    relativePosition: Int32Array,
    batch: number,
    length: number,
  ): tf.Tensor3D {
    const { numHeads, headDim, positionBuckets } = this.config;
    const span = positionBuckets; // att_span = pos_ebd_size
    const heads = (x: tf.Tensor, rows: number, leading: number) => tf.transpose(tf.reshape(x, [leading, rows, numHeads, headDim]), [0, 2, 1, 3]) as tf.Tensor4D;
    const query = heads(linear(hidden, layer.query), length, batch); // [B, heads, L, d]
    const key = heads(linear(hidden, layer.key), length, batch);
    const value = heads(linear(hidden, layer.value), length, batch);
    // share_att_key: the relative embeddings go through this layer's own query and key projections (with their biases).
    const positionQuery = heads(linear(relEmbeddings, layer.query), 2 * span, 1); // [1, heads, 2·span, d]
    const positionKey = heads(linear(relEmbeddings, layer.key), 2 * span, 1);

    const scale = Math.sqrt(headDim * 3); // scale_factor = 1 + c2p + p2c
    const contentToContent = tf.matMul(query, key, false, true); // [B, heads, L, L]

    // c2p[i][j] = query_i · positionKey[clamp(bucket(i − j) + span)].
    const c2pAll: tf.Tensor4D = tf.matMul(query, tf.broadcastTo(positionKey, [batch, numHeads, 2 * span, headDim]), false, true); // [B, heads, L, 2·span]
    const c2pIndex = clampedIndex(relativePosition, span, +1);
    const contentToPosition = gatherPerRow(c2pAll, c2pIndex, batch, numHeads, length, 2 * span);

    // p2c: for each key j and query i, key_j · positionQuery[clamp(−bucket(j − i) + span)], gathered as
    // [j][i] and then transposed to [i][j] (the sequence is self-attention, so r_pos = relative_pos).
    const p2cAll: tf.Tensor4D = tf.matMul(key, tf.broadcastTo(positionQuery, [batch, numHeads, 2 * span, headDim]), false, true); // [B, heads, L(key), 2·span]
    const p2cIndex = clampedIndex(relativePosition, span, -1);
    const positionToContent = tf.transpose(gatherPerRow(p2cAll, p2cIndex, batch, numHeads, length, 2 * span), [0, 1, 3, 2]);

    const scores = tf.div(tf.add(tf.add(contentToContent, contentToPosition), positionToContent), scale);
    // Masked pairs get float32's lowest value before the softmax, as HF's masked_fill(finfo.min).
    const masked = tf.where(tf.broadcastTo(pairMask, scores.shape), scores, tf.fill(scores.shape, -3.4028234663852886e38));
    const probabilities = tf.softmax(masked);
    const context = tf.matMul(probabilities, value); // [B, heads, L, d]
    return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, length, numHeads * headDim]) as tf.Tensor3D;
  }
}

/** clamp(sign · bucket + span, 0, 2·span − 1) for every [row][column] of the bucket table: the c2p (+1) or p2c (−1) index. */
function clampedIndex(relativePosition: Int32Array, span: number, sign: 1 | -1): Int32Array {
  return relativePosition.map((bucket) => Math.min(Math.max(sign * bucket + span, 0), 2 * span - 1));
}

/**
 * torch.gather(scores, dim=-1, index) for scores [B, heads, L, width] and one index per [row][column]
 * shared by the batch and heads: flattening each row's scores lets one gather pick all L·L values.
 */
function gatherPerRow(scores: tf.Tensor4D, index: Int32Array, batch: number, numHeads: number, length: number, width: number): tf.Tensor4D {
  const flatIndex = index.map((column, position) => Math.floor(position / length) * width + column);
  const flat = tf.reshape(scores, [batch * numHeads, length * width]);
  return tf.reshape(tf.gather(flat, tf.tensor1d(flatIndex, 'int32'), 1), [batch, numHeads, length, length]);
}

/** nn.Linear: x · weightᵀ + bias, with the weight in its stored [out, in] layout. */
function linear<T extends tf.Tensor>(x: T, { weight, bias }: Linear): T {
  const [outFeatures, inFeatures] = weight.shape;
  const rows = tf.reshape(x, [-1, inFeatures]);
  return tf.reshape(tf.add(tf.matMul(rows, weight, false, true), bias), [...x.shape.slice(0, -1), outFeatures]) as T;
}

/** nn.LayerNorm over the last axis (biased variance, eps inside the square root). */
function layerNorm<T extends tf.Tensor>(x: T, { weight, bias }: LayerNorm, eps: number): T {
  const mean = tf.mean(x, -1, true);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), -1, true);
  return tf.add(tf.mul(tf.div(centred, tf.sqrt(tf.add(variance, eps))), weight), bias) as T;
}

/** ACT2FN["gelu"]: the exact erf form, not the tanh approximation. */
function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.div(x, Math.SQRT2)), 1)) as T;
}

function linears(...layers: Linear[]): tf.Tensor[] {
  return layers.flatMap((layer) => [layer.weight, layer.bias]);
}

function norms(...layers: LayerNorm[]): tf.Tensor[] {
  return layers.flatMap((layer) => [layer.weight, layer.bias]);
}
