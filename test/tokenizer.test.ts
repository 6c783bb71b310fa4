import { HerdTokenizer, TextStream } from '../src/engine/tokenizer.js';
import { LLAMA_TOKENIZER, STORIES, readJson } from './fixtures.js';

const tokenizer = HerdTokenizer.fromDir(LLAMA_TOKENIZER);

describe('Llama 3.1 tokenizer', () => {
  test('each of the 256 special tokens encodes to its single id', () => {
    const config = readJson<{ added_tokens_decoder: Record<string, { content: string }> }>(`${LLAMA_TOKENIZER}/tokenizer_config.json`);
    const entries = Object.entries(config.added_tokens_decoder);
    expect(entries).toHaveLength(256);
    for (const [id, { content }] of entries) {
      expect(tokenizer.encode(content, false)).toEqual([Number(id)]);
      expect(tokenizer.isSpecial(Number(id))).toBe(true);
    }
    expect(tokenizer.encode('<|start_header_id|>user<|end_header_id|>', false)).toEqual([128006, 882, 128007]);
  });

  test("Meta's test vectors", () => {
    const vectors = readJson<{ cases: Array<Record<string, unknown>> }>(`${LLAMA_TOKENIZER}/vectors/meta-test-vectors.json`);
    const encode = vectors.cases.find((c) => c.op === 'encode') as { text: string; expected: number[] };
    // Meta's encode(bos=True, eos=True): the post-processor adds BOS; EOS is appended by the caller.
    expect([...tokenizer.encode(encode.text, true), 128001]).toEqual(encode.expected);
    const decode = vectors.cases.find((c) => c.op === 'decode') as { ids: number[]; expected: string };
    expect(tokenizer.decode(decode.ids)).toBe(decode.expected);
  });

  test('llama3-tokenizer-js vectors: encode and decode', () => {
    const vectors = readJson<Array<{ op: string; input: string | number[]; options: { bos: boolean; eos: boolean } | null; expected: unknown }>>(
      `${LLAMA_TOKENIZER}/vectors/llama3-tokenizer-js-test-vectors.json`,
    );
    // optimisticCount is that package's own token-counting helper, not tokenizer behaviour.
    const encodeDecode = vectors.filter((vector) => vector.op === 'encode' || vector.op === 'decode');
    expect(encodeDecode.length).toBeGreaterThan(20);
    for (const vector of encodeDecode) {
      if (vector.op === 'encode') {
        // That package's default (options null) is bos and eos, as in Meta's encode().
        const { bos, eos } = vector.options ?? { bos: true, eos: true };
        const ids = tokenizer.encode(vector.input as string, bos);
        if (eos) ids.push(128001);
        expect(ids).toEqual(vector.expected);
      } else {
        expect(tokenizer.decode(vector.input as number[])).toBe(vector.expected);
      }
    }
  });

  test('the chat template and BOS settings are read from tokenizer_config.json', () => {
    expect(tokenizer.settings.bosToken).toBe('<|begin_of_text|>');
    expect(tokenizer.settings.eosToken).toBe('<|eot_id|>');
    expect(tokenizer.settings.chatTemplate).toContain('<|start_header_id|>');
  });
});

describe('streaming decode', () => {
  test('a character split over several byte-level tokens is printed once it is complete', () => {
    // 🦙 is three byte-level tokens in Llama 3 (llama3-tokenizer-js vectors).
    const stream = new TextStream(tokenizer);
    const deltas = [2028, 9468, 99, 247, 374].map((id) => stream.push(id));
    expect(deltas).toEqual(['This', '', '', '🦙', ' is']);
  });

  test('SentencePiece byte fallback and the leading-space strip of stories260K', () => {
    const stories = HerdTokenizer.fromDir(STORIES);
    const text = 'Once upon a time é日';
    const ids = stories.encode(text, false);
    const stream = new TextStream(stories);
    const printed = ids.map((id) => stream.push(id));
    expect(printed.join('')).toBe(text);
    expect(printed.every((delta) => !delta.includes('\uFFFD'))).toBe(true);
  });
});

describe('streaming decode at the end of the output', () => {
  test('an unfinished character is flushed as the replacement character a full decode gives', () => {
    const stream = new TextStream(tokenizer);
    // The first two of 🦙's three byte-level tokens: the character never completes.
    const printed = [2028, 9468, 99].map((id) => stream.push(id)).join('');
    expect(printed).toBe('This');
    expect(printed + stream.flush()).toBe(tokenizer.decode([2028, 9468, 99]));
  });

  test('a long output streams to exactly its full decode', () => {
    const ids = tokenizer.encode('Streaming 🦙 text: naïve café, 東京, and "quotes" — over many tokens. '.repeat(20), false);
    const stream = new TextStream(tokenizer);
    const printed = ids.map((id) => stream.push(id)).join('') + stream.flush();
    expect(printed).toBe(tokenizer.decode(ids));
  });
});
