import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { activateBackend } from '../src/backends/registry.js';
import { buildRelativePosition, logBucketPosition } from '../src/guard/deberta.js';
import { PromptGuard, scoresOf, type SegmentResult } from '../src/guard/prompt-guard.js';
import { PROMPT_GUARD_TINY } from './fixtures.js';

/** The fixture's reference.json (float64 oracle of HF's DebertaV2ForSequenceClassification). */
interface Scored {
  logits: number[];
  probs: number[];
  scores?: Record<string, number>;
}
interface ReferenceCase extends Partial<Scored> {
  name: string;
  kind: 'text' | 'text_windows' | 'ids' | 'batch';
  text?: string;
  content_ids?: number[];
  ids?: number[] | number[][];
  attention_mask?: number[][];
  members?: string[];
  segments?: (Scored & { ids: number[] })[];
  max_scores?: Record<string, number>;
}
interface Reference {
  labels: string[];
  window: number;
  relative_buckets: { position_buckets: number; max_relative_positions: number; relative_position: number[]; bucket: number[] };
  cases: ReferenceCase[];
}

const reference = JSON.parse(fs.readFileSync(path.join(PROMPT_GUARD_TINY, 'reference.json'), 'utf8')) as Reference;
const caseNamed = (name: string) => reference.cases.find((entry) => entry.name === name)!;
const textCases = reference.cases.filter((entry) => entry.kind === 'text');
const idCases = reference.cases.filter((entry) => entry.kind === 'ids');

// The fixture's suggested tolerance for a float32 implementation against its float64 oracle.
const TOLERANCE = 1e-4;

function maxAbsDiff(actual: readonly number[], expected: readonly number[]): number {
  expect(actual).toHaveLength(expected.length);
  return Math.max(...actual.map((value, index) => Math.abs(value - expected[index]!)));
}

function expectClose(actual: SegmentResult, expected: Scored): void {
  expect(maxAbsDiff(actual.logits, expected.logits)).toBeLessThanOrEqual(TOLERANCE);
  expect(maxAbsDiff(actual.probs, expected.probs)).toBeLessThanOrEqual(TOLERANCE);
  if (expected.scores) {
    for (const [name, value] of Object.entries(expected.scores)) expect(Math.abs((actual.scores as Record<string, number>)[name]! - value)).toBeLessThanOrEqual(TOLERANCE);
  }
}

let guard: PromptGuard;

beforeAll(async () => {
  await activateBackend({ backend: 'wasm' });
  guard = PromptGuard.load(PROMPT_GUARD_TINY, { window: reference.window });
});

afterAll(() => guard.dispose());

describe('DeBERTa-v2 relative positions', () => {
  test('the log buckets of every relative position −64..64 equal the reference table', () => {
    const { position_buckets: buckets, max_relative_positions: maxPosition, relative_position: positions, bucket } = reference.relative_buckets;
    expect(guard.classifier.config.positionBuckets).toBe(buckets);
    expect(guard.classifier.config.maxRelativePositions).toBe(maxPosition);
    expect(positions.map((position) => logBucketPosition(position, buckets, maxPosition))).toEqual(bucket);
  });

  test('the relative position table is query − key, bucketed', () => {
    const table = buildRelativePosition(3, 8, 32);
    expect([...table]).toEqual([0, -1, -2, 1, 0, -1, 2, 1, 0]);
  });
});

describe('Prompt Guard tokenization', () => {
  test.each(textCases.map((entry) => [entry.name, entry] as const))('%s: the ids equal the reference exactly', (_name, entry) => {
    expect(guard.contentIds(entry.text!)).toEqual(entry.content_ids);
    expect(guard.classify(entry.text!).segments.map((segment) => segment.ids)).toEqual([entry.ids]);
  });
});

describe('Prompt Guard classifier against the float64 reference', () => {
  test('the labels are those of Prompt Guard 1', () => {
    expect(guard.classifier.config.labels).toEqual(reference.labels);
  });

  test.each(textCases.map((entry) => [entry.name, entry] as const))('text %s: logits, probs and scores', (_name, entry) => {
    const result = guard.classify(entry.text!);
    expect(result.segments).toHaveLength(1);
    expectClose(result.segments[0]!, entry as Scored);
    expect(result.scores).toEqual(result.segments[0]!.scores);
  });

  test.each(idCases.map((entry) => [entry.name, entry] as const))('ids %s: logits, probs and scores', (_name, entry) => {
    const result = guard.classifyIds([entry.ids as number[]]);
    expectClose(result.segments[0]!, entry as Scored);
  });

  test('ids_past_bucket_range is longer than max_position_embeddings, so the position index clamp is exercised', () => {
    expect((caseNamed('ids_past_bucket_range').ids as number[]).length).toBeGreaterThan(guard.classifier.config.maxPositionEmbeddings);
  });

  test('a right-padded batch gives the reference logits, which equal the single runs', () => {
    const batch = caseNamed('batch');
    const logits = guard.classifier.logits({ ids: batch.ids as number[][], attentionMask: batch.attention_mask! });
    batch.members!.forEach((member, row) => {
      expect(maxAbsDiff(logits[row]!, (batch.logits as unknown as number[][])[row]!)).toBeLessThanOrEqual(TOLERANCE);
      const single = caseNamed(member);
      expect(maxAbsDiff(logits[row]!, single.logits!)).toBeLessThanOrEqual(TOLERANCE);
    });
    // classifyIds pads the same way itself.
    const padded = guard.classifyIds(batch.members!.map((member) => caseNamed(member).ids as number[]));
    padded.segments.forEach((segment, row) => expect(maxAbsDiff(segment.probs, (batch.probs as unknown as number[][])[row]!)).toBeLessThanOrEqual(TOLERANCE));
  });

  test('a long text is scored in segments of window − 2 content tokens, and its scores are the maxima over them', () => {
    const long = caseNamed('long');
    expect(guard.contentIds(long.text!)).toEqual(long.content_ids);
    const result = guard.classify(long.text!);
    expect(result.segments.map((segment) => segment.ids)).toEqual(long.segments!.map((segment) => segment.ids));
    result.segments.forEach((segment, index) => expectClose(segment, long.segments![index]!));
    for (const [name, value] of Object.entries(long.max_scores!)) expect(Math.abs((result.scores as Record<string, number>)[name]! - value)).toBeLessThanOrEqual(TOLERANCE);
  });

  test('a temperature divides the logits before the softmax', () => {
    const hello = caseNamed('hello');
    const result = guard.classify(hello.text!, { temperature: 2 });
    const halved = hello.logits!.map((logit) => Math.exp(logit / 2));
    const total = halved.reduce((sum, value) => sum + value, 0);
    expect(maxAbsDiff(result.segments[0]!.probs, halved.map((value) => value / total))).toBeLessThanOrEqual(TOLERANCE);
    expect(() => guard.classify(hello.text!, { temperature: 0 })).toThrow('temperature must be positive; got 0');
  });
});

describe("Meta's scores", () => {
  test('Prompt Guard 2 (two labels) gives malicious = P(label 1); other label counts are refused', () => {
    expect(scoresOf([0.25, 0.75])).toEqual({ malicious: 0.75 });
    expect(() => scoresOf([0.1, 0.2, 0.3, 0.4])).toThrow('Prompt Guard has 2 or 3 labels; this classifier has 4');
  });
});

describe('Prompt Guard folders that cannot be used', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-prompt-guard-'));
    for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(PROMPT_GUARD_TINY, name), path.join(scratch, name));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  const editConfig = (edit: (config: Record<string, unknown>) => void) => {
    const file = path.join(scratch, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    edit(config);
    fs.writeFileSync(file, JSON.stringify(config));
  };

  test('a missing tokenizer.json', () => {
    fs.rmSync(path.join(scratch, 'tokenizer.json'));
    expect(() => PromptGuard.load(scratch)).toThrow(`${scratch}: no tokenizer.json; Prompt Guard needs the tokenizer.json of its model repository`);
  });

  test('a folder that is not a DeBERTa-v2 classifier', () => {
    editConfig((config) => {
      config.model_type = 'llama';
      config.architectures = ['LlamaForCausalLM'];
    });
    expect(() => PromptGuard.load(scratch)).toThrow(
      `${path.join(scratch, 'config.json')}: not a DeBERTa-v2 sequence classifier (model_type "llama", architectures ["LlamaForCausalLM"]); expected DebertaV2ForSequenceClassification`,
    );
  });

  test('an id2label whose count contradicts the classifier shape', () => {
    editConfig((config) => {
      config.id2label = { 0: 'benign', 1: 'malicious' };
    });
    expect(() => PromptGuard.load(scratch)).toThrow(`${path.join(scratch, 'config.json')}: id2label names 2 labels but classifier.weight has 3 rows`);
  });
});
