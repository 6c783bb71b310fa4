import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderChatTemplate, renderTemplateVariables } from '../src/templates/chat-template.js';
import { parseJsonKeepingFloats, pythonFloatRepr } from '../src/templates/python-json.js';
import { LLAMA_CHAT, LLAMA_TOKENIZER, readJson } from './fixtures.js';
import { herd } from './herd-cli.js';

// Python's json.loads keeps 391.0 a float and json.dumps writes it back as "391.0"; the chat
// template must print tool results and arguments the same way.
const LLAMA31 = readJson<{ chat_template: string }>(path.join(LLAMA_TOKENIZER, 'tokenizer_config.json')).chat_template;
const cases = readJson<{ weather_tool: unknown; cases: Record<string, { vars: Record<string, unknown> }> }>(path.join(LLAMA_CHAT, 'cases.json'));
/** Case d2: a tool result given as a JSON object, rendered by Python jinja2 with json.dumps. */
const d2Expected = fs.readFileSync(path.join(LLAMA_CHAT, 'expected/d2_tool_result_mapping_content.txt'), 'utf8');
const D2_RESULT = '{"temperature": 61, "conditions": "foggy"}';

/** The d2 case's variables as JSON text, with the tool result's object replaced by `result`. */
function d2VariablesText(result: string): string {
  const vars = JSON.parse(JSON.stringify(cases.cases.d2_tool_result_mapping_content!.vars).replace('"$weather_tool"', JSON.stringify(cases.weather_tool)));
  vars.messages.at(-1).content = 'RESULT';
  return JSON.stringify({ ...vars, bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' }).replace('"RESULT"', result);
}

/** Python's rendering of d2 with another result: its json.dumps spelling in place of the fixture's. */
function d2With(pythonDumps: string): string {
  expect(d2Expected.split(D2_RESULT)).toHaveLength(2);
  return d2Expected.replace(D2_RESULT, pythonDumps);
}

test('a tool result {"value": 391.0} renders as Python jinja2 renders it: 391.0, not 391', () => {
  const variables = parseJsonKeepingFloats(d2VariablesText('{"value": 391.0}')) as Record<string, unknown>;
  expect(renderTemplateVariables(LLAMA31, variables)).toBe(d2With('{"value": 391.0}'));
});

test('floats and integers keep Python\'s spelling through herd prompt --vars', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herd-floats-')), 'vars.json');
  fs.writeFileSync(file, d2VariablesText('{"value": 391.0, "count": 3, "ratio": 0.5, "big": 1e16, "small": 1.5E-5, "neg": -0.0}'));
  const result = herd(['prompt', '-m', LLAMA_TOKENIZER, '--vars', file]);
  expect(result.stderr).toBe('');
  // json.dumps: repr() of each float (1e16 → 1e+16, 1.5E-5 → 1.5e-05), integers as written.
  expect(result.stdout).toBe(d2With('{"value": 391.0, "count": 3, "ratio": 0.5, "big": 1e+16, "small": 1.5e-05, "neg": -0.0}'));
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
});

test('tool-call arguments with a float render as Python does', () => {
  const prompt = renderChatTemplate(LLAMA31, {
    messages: [{ role: 'assistant', content: '', tool_calls: [{ id: 'c', type: 'function', function: { name: 'set', arguments: '{"value": 391.0}' } }] }],
    bosToken: '<|begin_of_text|>',
    eosToken: '<|eot_id|>',
  });
  expect(prompt).toContain('{"name": "set", "parameters": {"value": 391.0}}<|eot_id|>');
});

test('tojson with indent writes nested floats as json.dumps(indent=2) does', () => {
  const variables = parseJsonKeepingFloats('{"x": {"a": [1.0, 2], "b": {}}}') as Record<string, unknown>;
  expect(renderTemplateVariables('{{ x | tojson(indent=2) }}', variables)).toBe('{\n  "a": [\n    1.0,\n    2\n  ],\n  "b": {}\n}');
  expect(renderTemplateVariables('{{ x | tojson }}', variables)).toBe('{"a": [1.0, 2], "b": {}}');
});

test('pythonFloatRepr spells floats as Python\'s repr', () => {
  const cases: Array<[number, string]> = [
    [391, '391.0'], [0.1, '0.1'], [-2.5, '-2.5'], [1e15, '1000000000000000.0'], [1e16, '1e+16'], [1.2345e20, '1.2345e+20'],
    [0.0001, '0.0001'], [0.00001, '1e-05'], [2.5e-7, '2.5e-07'], [123456789.125, '123456789.125'], [-0, '-0.0'], [0, '0.0'],
  ];
  for (const [value, repr] of cases) expect(pythonFloatRepr(value)).toBe(repr);
});

test('parseJsonKeepingFloats reads everything else as JSON.parse does', () => {
  const text = '{"s": "a \\"1.0\\" b", "n": [1, -2, true, false, null], "o": {"k": "v"}, "e": [], "u": "\\u00e9"}';
  expect(parseJsonKeepingFloats(text)).toEqual(JSON.parse(text));
  expect(() => parseJsonKeepingFloats('{oops')).toThrow(SyntaxError);
});
