import fs from 'node:fs';
import path from 'node:path';
import { PrecompiledCharsmap } from '../src/engine/precompiled-charsmap.js';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { PROMPT_GUARD_TINY } from './fixtures.js';

/**
 * A SentencePiece precompiled_charsmap built here from its published layout: a darts-clone double
 * array (unit bits 0-7 label, 8 has-leaf, 10-31 offset; a value unit sets bit 31; a node's
 * children sit at `base ^ label`, its value at `base ^ 0`), then NUL-terminated replacements.
 * Each node gets its own 256-unit block, which keeps the builder trivial.
 */
function buildCharsmap(map: Record<string, string>): string {
  interface Node { children: Map<number, Node>; value?: number }
  const root: Node = { children: new Map() };
  const strings: number[] = [];
  for (const [key, replacement] of Object.entries(map)) {
    let node = root;
    for (const byte of Buffer.from(key, 'utf8')) {
      if (!node.children.has(byte)) node.children.set(byte, { children: new Map() });
      node = node.children.get(byte)!;
    }
    node.value = strings.length;
    strings.push(...Buffer.from(replacement, 'utf8'), 0);
  }
  const units: number[] = [];
  let blocks = 0;
  const place = (node: Node, position: number) => {
    const base = 256 * ++blocks;
    for (let index = units.length; index < base + 256; index++) units[index] ??= 0;
    const offset = position ^ base;
    expect(offset).toBeLessThan(1 << 21);
    units[position] = (units[position]! | (offset << 10) | (node.value === undefined ? 0 : 1 << 8)) >>> 0;
    if (node.value !== undefined) units[base] = (node.value | 0x80000000) >>> 0;
    for (const [label, child] of node.children) {
      units[base ^ label] = label;
      place(child, base ^ label);
    }
  };
  units[0] = 0;
  place(root, 0);
  const trie = Buffer.alloc(units.length * 4);
  units.forEach((unit, index) => trie.writeUInt32LE(unit, index * 4));
  const header = Buffer.alloc(4);
  header.writeUInt32LE(trie.length);
  return Buffer.concat([header, trie, Buffer.from(strings)]).toString('base64');
}

// Full-width f and the fi ligature are folded; ① (which NFKC would fold to "1") is not in this map.
const MAP = { 'ｆ': 'f', 'ﬁ': 'fi', 'Å': 'A' };
const charsmap = PrecompiledCharsmap.fromBase64(buildCharsmap(MAP));

describe('the Precompiled normalizer: the charsmap, not NFKC', () => {
  test('mapped characters are replaced, others kept as they are', () => {
    expect(charsmap.normalize('ｆｉｌｅ ﬁx')).toBe('fｉｌｅ fix');
    expect(charsmap.normalize('① plain')).toBe('① plain');
    expect(charsmap.transform('ｆ')).toBe('f');
    expect(charsmap.transform('g')).toBeUndefined();
  });

  test('Hugging Face\'s grapheme rule: a short grapheme whose prefix is a key becomes that key\'s replacement whole', () => {
    // "ｆ" + combining acute accent is one grapheme of 5 UTF-8 bytes: tokenizers replaces all of it.
    expect(charsmap.normalize('ｆ\u0301!')).toBe('f!');
    // A grapheme of 6 bytes or more is looked up character by character: the accent stays.
    expect(charsmap.normalize('Å\u0301\u0301\u0301')).toBe('A\u0301\u0301\u0301');
  });

  test('a malformed charsmap is refused with one line', () => {
    expect(() => PrecompiledCharsmap.fromBase64(Buffer.from([8, 0, 0, 0, 1]).toString('base64'))).toThrow(
      "tokenizer.json: the Precompiled normalizer's precompiled_charsmap is malformed (a trie of 8 bytes in 5)",
    );
  });
});

describe('an mDeBERTa-style tokenizer.json (Sequence[Strip, Precompiled, Replace]) through HerdTokenizer', () => {
  const fixtureJson = JSON.parse(fs.readFileSync(path.join(PROMPT_GUARD_TINY, 'tokenizer.json'), 'utf8')) as { normalizer: { normalizers: Array<{ type: string }> } };
  const withNormalizers = (replace: (normalizer: { type: string }) => object[]) => {
    const json = structuredClone(fixtureJson);
    json.normalizer.normalizers = json.normalizer.normalizers.flatMap(replace) as Array<{ type: string }>;
    return HerdTokenizer.fromJson(json, {});
  };
  // The real layout: the charsmap where the fixture has NFKC.
  const precompiled = withNormalizers((normalizer) => (normalizer.type === 'NFKC' ? [{ type: 'Precompiled', precompiled_charsmap: buildCharsmap(MAP) }] : [normalizer]));
  const unnormalized = withNormalizers((normalizer) => (normalizer.type === 'NFKC' ? [] : [normalizer]));

  test('the ids are those of the text the charsmap makes, with Strip and Replace still around it', () => {
    const text = '  ｆile ﬁx   ①  ';
    expect(precompiled.encode(text, true)).toEqual(unnormalized.encode('file fix   ①', true));
    // NFKC, what the library alone would apply, folds ① to "1": a different tokenization.
    expect(precompiled.encode(text, true)).not.toEqual(unnormalized.encode('file fix 1', true));
  });
});
