import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { PieceTable } from '../src/engine/piece-table.js';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { LLAMA_TOKENIZER, readJson } from './fixtures.js';

/** The library's own lookups for a tokenizer.json: its `tokens_to_ids` Map and `vocab` array. */
function libraryLookups(tokenizerJson: object): { ids: Map<string, number>; vocab: Array<string | undefined> } {
  const model = (new Tokenizer(tokenizerJson, {}) as unknown as { model: { tokens_to_ids: Map<string, number>; vocab: Array<string | undefined> } }).model;
  return { ids: model.tokens_to_ids, vocab: model.vocab };
}

describe('PieceTable answers as the library Map and array it replaces', () => {
  test("every piece of Llama 3's vocabulary, its added tokens included, both ways", () => {
    const tokenizerJson = readJson<object>(path.join(LLAMA_TOKENIZER, 'tokenizer.json'));
    const { ids, vocab } = libraryLookups(tokenizerJson);
    const table = PieceTable.build(vocab, ids);
    expect(ids.size).toBe(128_256);
    expect([...ids].filter(([piece, id]) => table.get(piece) !== id)).toEqual([]);
    expect(table.length).toBe(vocab.length);
    const array = table.asArray();
    expect(array.length).toBe(vocab.length);
    expect(vocab.filter((piece, id) => array[id] !== piece)).toEqual([]);
    expect(new Set(table.values())).toEqual(new Set(ids.values()));
    for (const absent of ['', 'not a piece', 'ĠtheĠ', '<|eot_id|> ']) expect([absent, table.get(absent), table.has(absent)]).toEqual([absent, undefined, false]);
    // Typed arrays, a byte a character, a start every 16 ids: under 2 MiB where the library's Map, array and strings take about 9.5.
    expect(table.bytes).toBeLessThan(1.8 * 2 ** 20);
  });

  test('ids left out, a piece listed twice and pieces set later', () => {
    // As the library builds it from {"a": 0, "b": 2, "c": 3, "b2": 2}: id 1 has no piece; id 2's piece is "b2" and "b" maps to 2 too.
    const vocab = ['a', undefined, 'b2', 'c'];
    const ids = new Map([['a', 0], ['b', 2], ['c', 3], ['b2', 2]]);
    const table = PieceTable.build(vocab, ids);
    expect(['a', 'b', 'b2', 'c', 'd'].map((piece) => table.get(piece))).toEqual([0, 2, 2, 3, undefined]);
    expect([0, 1, 2, 3, 4, -1, 1.5].map((id) => table.pieceOf(id))).toEqual(['a', undefined, 'b2', 'c', undefined, undefined, undefined]);
    expect([...table.values()].sort()).toEqual([0, 2, 2, 3]);
    table.set('c', 7).set('d', 8);
    expect(['c', 'd'].map((piece) => table.get(piece))).toEqual([7, 8]);
    expect([...table.values()].sort()).toEqual([0, 2, 2, 7, 8]);
    const array = table.asArray() as Array<string | undefined>;
    expect(() => {
      'use strict';
      array[1] = 'x';
    }).toThrow(TypeError);
    expect(array[1]).toBeUndefined();
  });

  test('pieces that collide in the hash table are told apart', () => {
    const pieces = Array.from({ length: 5000 }, (_, id) => `p${id}`);
    const table = PieceTable.build(pieces, new Map(pieces.map((piece, id) => [piece, id])));
    expect(pieces.filter((piece, id) => table.get(piece) !== id)).toEqual([]);
    expect(table.get('p5000')).toBeUndefined();
  });

  test('a vocabulary of more than 256 different characters (two bytes each in the table)', () => {
    const pieces = Array.from({ length: 600 }, (_, id) => String.fromCharCode(0x4e00 + id, 0x20 + (id % 50)));
    const table = PieceTable.build([...pieces, '🦙'], new Map([...pieces, '🦙'].map((piece, id) => [piece, id])));
    expect(pieces.filter((piece, id) => table.get(piece) !== id || table.pieceOf(id) !== piece)).toEqual([]);
    expect([table.get('🦙'), table.pieceOf(600)]).toEqual([600, '🦙']);
    expect(table.get(String.fromCharCode(0x4e00 + 600, 0x20))).toBeUndefined();
  });

  test('pieces longer than 255 and 65,535 characters, and holes on both sides of every 16th id', () => {
    for (const long of [300, 70_000]) {
      const pieces = Array.from({ length: 40 }, (_, id) => (id % 5 === 3 ? undefined : id === 17 ? 'x'.repeat(long) : `piece${id}`));
      const table = PieceTable.build(pieces, new Map(pieces.flatMap((piece, id) => (piece === undefined ? [] : [[piece, id] as const]))));
      expect(pieces.filter((piece, id) => table.pieceOf(id) !== piece || (piece !== undefined && table.get(piece) !== id))).toEqual([]);
      expect(table.get('x'.repeat(long - 1))).toBeUndefined();
    }
  });

  test('a tokenizer with the table decodes one token at a time as the library does', () => {
    const tokenizerJson = readJson<object>(path.join(LLAMA_TOKENIZER, 'tokenizer.json'));
    const reference = new Tokenizer(tokenizerJson, {});
    const lean = HerdTokenizer.fromJson(tokenizerJson, {});
    const ids = reference.encode('Ünïcödé, emoji 🦙 and <|start_header_id|>user<|end_header_id|>', { add_special_tokens: false }).ids;
    expect(lean.encode('Ünïcödé, emoji 🦙 and <|start_header_id|>user<|end_header_id|>', false)).toEqual(ids);
    for (const id of [...ids, 0, 128_255]) expect([id, lean.decode([id]), lean.idToToken(id)]).toEqual([id, reference.decode([id], { clean_up_tokenization_spaces: false }), reference.id_to_token(id)]);
    expect(lean.tokenToId('Ġthe')).toBe(reference.token_to_id('Ġthe'));
  });
});
