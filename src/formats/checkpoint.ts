import fs from 'node:fs';
import path from 'node:path';
import { HerdError, modelError } from '../errors.js';
import { tensorShapes } from '../spec/tensors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import type { PackedFormat, PackedTensor, WeightSource } from './weights.js';
import type { QuantizedLayout } from './quantized-layout.js';
import { Int4RowReader, describeInt4Rows } from './int4-rows.js';
import { FLOAT_DTYPES, readBytesInto, readFloatTensor, readSafetensorsHeader, type HostTensor, type TensorEntry } from './safetensors.js';
import { openForReading } from './files.js';

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';

/** The tensors of a checkpoint folder, validated, read one at a time when the backend asks. */
export class Checkpoint implements WeightSource {
  private readonly descriptors = new Map<string, number>();
  /** [out, in] of each weight the layout stores quantized, known once validated against the config. */
  private readonly quantizedShapes = new Map<string, number[]>();
  private readonly int4Rows = new Int4RowReader();

  private constructor(
    private readonly entries: Map<string, TensorEntry>,
    private readonly layout: QuantizedLayout | null,
  ) {}

  /**
   * Finds the safetensors files of `dir` (one file or an index of shards) and checks every header.
   * `layout` is the quantized format config.json announces: its weights are rebuilt as float32.
   */
  static open(dir: string, layout: QuantizedLayout | null = null): Checkpoint {
    const indexPath = path.join(dir, INDEX_FILE);
    const singlePath = path.join(dir, SINGLE_FILE);
    if (fs.existsSync(indexPath)) return new Checkpoint(openSharded(dir, indexPath), layout);
    if (fs.existsSync(singlePath)) return new Checkpoint(entriesByName(readSafetensorsHeader(singlePath), new Map()), layout);
    throw modelError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`, dir);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): TensorEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new HerdError(`checkpoint has no tensor ${name}`, { kind: 'model', tensor: name });
    return entry;
  }

  /** Reads one tensor as float32 (dequantized when the layout stores it quantized). Each file stays open until close(). */
  readFloat(name: string): HostTensor {
    const quantizedShape = this.quantizedShapes.get(name);
    if (quantizedShape && this.layout) return { name, shape: quantizedShape, data: this.layout.dequantize(name, quantizedShape, this) };
    const entry = this.entry(name);
    return readFloatTensor(entry, this.descriptor(entry.file));
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The stored bytes of any tensor, whatever its dtype, in a fresh (aligned) buffer. */
  raw(name: string): Uint8Array {
    const entry = this.entry(name);
    const bytes = new Uint8Array(entry.end - entry.begin);
    readBytesInto(this.descriptor(entry.file), entry.begin, bytes, entry);
    return bytes;
  }

  private descriptor(file: string): number {
    let fd = this.descriptors.get(file);
    if (fd === undefined) {
      fd = openForReading(file);
      this.descriptors.set(file, fd);
    }
    return fd;
  }

  /** Float tensors as stored; AWQ/GPTQ int4 weights as INT4_G128 rows (src/formats/int4-rows.ts) where their groups allow. */
  describePacked(name: string): PackedTensor | null {
    const quantizedShape = this.quantizedShapes.get(name);
    if (quantizedShape) return this.layout?.int4 ? describeInt4Rows(name, quantizedShape, this.layout.int4, this) : null;
    const entry = this.entry(name);
    if (!FLOAT_DTYPES.includes(entry.dtype)) return null;
    return { format: entry.dtype as PackedFormat, shape: entry.shape, byteLength: entry.end - entry.begin };
  }

  readPackedInto(name: string, target: Uint8Array, byteOffset = 0): void {
    const quantizedShape = this.quantizedShapes.get(name);
    if (quantizedShape && this.layout?.int4) {
      this.int4Rows.read(name, quantizedShape, this.layout.int4, this, target, byteOffset);
      return;
    }
    const entry = this.entry(name);
    if (byteOffset + target.length > entry.end - entry.begin) throw new HerdError(`read past the end of tensor ${name}`);
    readBytesInto(this.descriptor(entry.file), entry.begin + byteOffset, target, entry);
  }

  close(): void {
    for (const fd of this.descriptors.values()) fs.closeSync(fd);
    this.descriptors.clear();
  }

  /**
   * Checks the tensors against the config before anything is computed: every expected tensor is
   * present with the right shape and a float dtype, and nothing unexpected is there (a checkpoint
   * with more layers than its config, say).
   */
  validateAgainst(config: LlamaConfig): void {
    const expected = tensorShapes(config);
    const quantizedParts = new Set<string>();
    for (const [name, shape] of expected) {
      const parts = this.layout?.partsOf(name, this) ?? null;
      if (parts) {
        this.layout!.check(name, shape, this);
        parts.forEach((part) => quantizedParts.add(part));
        this.quantizedShapes.set(name, shape);
        continue;
      }
      const entry = this.entries.get(name);
      if (!entry) throw new HerdError(`missing tensor ${name} (expected by config.json)`, { kind: 'model', tensor: name });
      const where = `${path.basename(entry.file)}: tensor ${name}`;
      if (!sameShape(entry.shape, shape)) {
        throw modelError(`${where} has shape [${entry.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`, entry.file, name);
      }
      if (!FLOAT_DTYPES.includes(entry.dtype)) {
        throw modelError(`${where} has dtype ${entry.dtype}; the engine reads F32, F16 and BF16 checkpoints`, entry.file, name);
      }
    }
    for (const entry of this.entries.values()) {
      if (!expected.has(entry.name) && !quantizedParts.has(entry.name) && !isIgnorable(entry.name, config)) {
        throw modelError(`${path.basename(entry.file)}: unexpected tensor ${entry.name} for this config.json`, entry.file, entry.name);
      }
    }
  }
}

function isIgnorable(name: string, config: LlamaConfig): boolean {
  // Old exports carry the RoPE table (recomputed here); tied checkpoints may still store the head.
  return name.endsWith('.rotary_emb.inv_freq') || (config.tieWordEmbeddings && name === 'lm_head.weight');
}

function openSharded(dir: string, indexPath: string): Map<string, TensorEntry> {
  const weightMap = readWeightMap(indexPath);
  const shardFiles = [...new Set(Object.values(weightMap))].sort();
  const entries = new Map<string, TensorEntry>();
  for (const shard of shardFiles) {
    const shardPath = path.join(dir, shard);
    if (!fs.existsSync(shardPath)) throw modelError(`${INDEX_FILE} names shard ${shard}, which does not exist`, indexPath);
    entriesByName(readSafetensorsHeader(shardPath), entries);
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    const entry = entries.get(name);
    if (!entry || path.basename(entry.file) !== shard) {
      throw modelError(`${INDEX_FILE} places tensor ${name} in ${shard}, but that shard does not hold it`, indexPath, name);
    }
  }
  for (const entry of entries.values()) {
    if (!(entry.name in weightMap)) throw modelError(`${path.basename(entry.file)}: tensor ${entry.name} is not listed in ${INDEX_FILE}`, entry.file, entry.name);
  }
  return entries;
}

function readWeightMap(indexPath: string): Record<string, string> {
  let index: unknown;
  try {
    index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch {
    throw modelError(`${INDEX_FILE}: not valid JSON`, indexPath);
  }
  const weightMap = (index as { weight_map?: unknown }).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || !Object.values(weightMap).every((v) => typeof v === 'string')) {
    throw modelError(`${INDEX_FILE}: weight_map must map tensor names to shard file names`, indexPath);
  }
  return weightMap as Record<string, string>;
}

function entriesByName(list: TensorEntry[], into: Map<string, TensorEntry>): Map<string, TensorEntry> {
  for (const entry of list) {
    const previous = into.get(entry.name);
    if (previous) {
      throw modelError(`tensor ${entry.name} appears twice: in ${path.basename(previous.file)} and ${path.basename(entry.file)}`, entry.file, entry.name);
    }
    into.set(entry.name, entry);
  }
  return into;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, i) => size === b[i]);
}
