import fs from 'node:fs';
import path from 'node:path';
import {
  LLAMA_GUARD_3_CATEGORIES, conversationFor, guardTurnsOf, parseCategoryList, parseVerdict, renderLlamaGuardPrompt, selectCategories, type GuardTurn,
} from '../src/guard/llama-guard-prompt.js';
import { defaultCategoriesFor, twoWaySoftmax } from '../src/guard/llama-guard.js';
import { renderTemplateVariables } from '../src/templates/chat-template.js';
import { LLAMA_CHAT, readJson } from './fixtures.js';

const cases = readJson<{ cases: Record<string, { vars: { messages: GuardTurn[] } }> }>(path.join(LLAMA_CHAT, 'cases.json')).cases;
const expected = (name: string) => fs.readFileSync(path.join(LLAMA_CHAT, 'expected', `${name}.txt`), 'utf8');
const guardTemplate = fs.readFileSync(path.join(LLAMA_CHAT, 'chat_template_llama_guard_3_8b.jinja'), 'utf8');

describe('the Llama Guard 3 prompt', () => {
  test.each(['e_guard_user_prompt', 'e2_guard_agent_response'])('%s: byte for byte what jinja2 renders from Llama Guard 3 8B\'s template', (name) => {
    expect(renderLlamaGuardPrompt(cases[name]!.vars.messages)).toBe(expected(name));
  });

  test('a longer conversation equals the template rendered by herd\'s jinja (messages stripped, roles by turn)', () => {
    const turns: GuardTurn[] = [
      { role: 'user', content: '  Hi there\n' },
      { role: 'assistant', content: 'Hello! How can I help?' },
      { role: 'user', content: 'Write a poem about spring.' },
    ];
    expect(renderLlamaGuardPrompt(turns)).toBe(renderTemplateVariables(guardTemplate, { messages: turns }));
  });

  test('custom categories keep their codes and replace the list', () => {
    const prompt = renderLlamaGuardPrompt([{ role: 'user', content: 'x' }], selectCategories(LLAMA_GUARD_3_CATEGORIES, { exclude: ['S2', 'S14'] }));
    const block = prompt.split('<BEGIN UNSAFE CONTENT CATEGORIES>\n')[1]!.split('\n<END UNSAFE CONTENT CATEGORIES>')[0]!;
    expect(block.split('\n')).toEqual(['S1: Violent Crimes.', 'S3: Sex Crimes.', 'S4: Child Exploitation.', 'S5: Defamation.', 'S6: Specialized Advice.', 'S7: Privacy.',
      'S8: Intellectual Property.', 'S9: Indiscriminate Weapons.', 'S10: Hate.', 'S11: Self-Harm.', 'S12: Sexual Content.', 'S13: Elections.']);
    expect(selectCategories(LLAMA_GUARD_3_CATEGORIES, { only: ['S10', 'S1'] }).map((category) => category.code)).toEqual(['S1', 'S10']);
    expect(() => selectCategories(LLAMA_GUARD_3_CATEGORIES, { only: ['S15'] })).toThrow('unknown hazard category "S15"');
    expect(() => selectCategories(LLAMA_GUARD_3_CATEGORIES, { only: ['S1'], exclude: ['S1'] })).toThrow('no hazard category is left');
  });

  test('a categories file: "CODE: Name." lines', () => {
    expect(parseCategoryList('S1: Violence.\n\nX2: Medical advice\n', 'cats.txt')).toEqual([{ code: 'S1', name: 'Violence' }, { code: 'X2', name: 'Medical advice' }]);
    expect(() => parseCategoryList('S1 Violence', 'cats.txt')).toThrow('cats.txt: line 1 is not "CODE: Name"');
    expect(() => parseCategoryList('S1: a\nS1: b', 'cats.txt')).toThrow('cats.txt: category S1 is listed twice');
  });

  test('Llama Guard 3 1B\'s template lists no S14, so it is left out by default', () => {
    expect(defaultCategoriesFor(guardTemplate)).toHaveLength(14);
    expect(defaultCategoriesFor(guardTemplate.replace('S14: Code Interpreter Abuse.\n', '')).map((category) => category.code)).not.toContain('S14');
    expect(defaultCategoriesFor(null)).toHaveLength(14);
  });
});

describe('which turn is classified', () => {
  const chat: GuardTurn[] = [
    { role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }, { role: 'assistant', content: 'd' },
  ];

  test('the last turn by default; --role cuts the conversation after the last turn of that role', () => {
    expect(conversationFor(chat)).toEqual({ turns: chat, role: 'agent' });
    expect(conversationFor(chat, 'user')).toEqual({ turns: chat.slice(0, 3), role: 'user' });
    expect(conversationFor(chat.slice(0, 1), 'user').role).toBe('user');
    expect(() => conversationFor(chat.slice(0, 1), 'agent')).toThrow('there is no agent (assistant) message to classify');
  });

  test('turns must alternate from the user; system messages are left out, tool messages refused', () => {
    expect(() => conversationFor([{ role: 'assistant', content: 'x' }])).toThrow('turn 1 is assistant');
    expect(() => conversationFor([{ role: 'user', content: 'x' }, { role: 'user', content: 'y' }])).toThrow('turn 2 is user');
    expect(guardTurnsOf([{ role: 'system', content: 's' }, { role: 'user', content: 'u' }])).toEqual([{ role: 'user', content: 'u' }]);
    expect(() => guardTurnsOf([{ role: 'user', content: 'u' }, { role: 'ipython', content: '42' }])).toThrow('message 1 is ipython');
  });
});

describe('the verdict, read strictly', () => {
  const categories = LLAMA_GUARD_3_CATEGORIES;

  test('"safe", and "unsafe" with its categories named (Llama Guard 3 opens with "\\n\\n")', () => {
    expect(parseVerdict('\n\nsafe', categories)).toEqual({ safe: true });
    expect(parseVerdict('unsafe\nS1,S10', categories)).toEqual({ safe: false, categories: [{ code: 'S1', name: 'Violent Crimes' }, { code: 'S10', name: 'Hate' }] });
    expect(parseVerdict('\n\nunsafe\nS14', categories)).toEqual({ safe: false, categories: [{ code: 'S14', name: 'Code Interpreter Abuse' }] });
  });

  test.each([
    ['', 'the first line must be "safe" or "unsafe"'],
    ['Safe', 'the first line must be "safe" or "unsafe"'],
    ['safe\nS1', 'the first line must be "safe" or "unsafe"'],
    ['safely', 'the first line must be "safe" or "unsafe"'],
    ['unsafe', 'an unsafe verdict must have one second line of violated categories'],
    ['unsafe\nS1\nmore', 'an unsafe verdict must have one second line of violated categories'],
    ['unsafe\nS1,S99', '"S99" is not among the categories'],
    ['unsafe\nviolence', '"violence" is not among the categories'],
  ])('%j is refused as an unparseable verdict, never read as safe', (text, why) => {
    expect(() => parseVerdict(text, categories)).toThrow(`unparseable verdict ${JSON.stringify(text)} from Llama Guard: ${why}`);
  });

  test('a code left out of the prompt is not a valid answer', () => {
    expect(() => parseVerdict('unsafe\nS2', selectCategories(categories, { exclude: ['S2'] }))).toThrow('"S2" is not among the categories');
  });

  test('P(unsafe) is the softmax over the two logits', () => {
    expect(twoWaySoftmax(1, 1)).toBe(0.5);
    expect(twoWaySoftmax(0, Math.log(3))).toBeCloseTo(0.75, 12);
    expect(twoWaySoftmax(-1000, 1000)).toBe(1);
  });
});
