import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderConversation } from '../src/chat/render.js';
import { LLAMA_TOKENIZER, LLAMA_CHAT, TINY_LLAMA, readJson } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';
import { EOM, PYTHON_TAG_ID, llamaTokenizer } from './chat-scripted-source.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js');
const CHAT_FIXTURES = LLAMA_CHAT;
const fixture = readJson<{ weather_tool: unknown; cases: Record<string, { template: string; vars: Record<string, unknown> }> }>(path.join(CHAT_FIXTURES, 'cases.json'));
const meta = readJson<{ cases: Array<{ op: string; messages?: Array<{ role: 'system' | 'user'; content: string }>; expected: unknown }> }>(path.join(LLAMA_TOKENIZER, 'vectors/meta-test-vectors.json'));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-prompt-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function herd(args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: HANG_GUARD_MS });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function writeJson(name: string, value: unknown): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

/** A case's vars with "$weather_tool" replaced, as the fixture README says. */
function caseVars(name: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(fixture.cases[name]!.vars).replaceAll('"$weather_tool"', JSON.stringify(fixture.weather_tool)));
}

const expected = (name: string) => fs.readFileSync(path.join(CHAT_FIXTURES, 'expected', `${name}.txt`), 'utf8');

describe('rendered prompts tokenize to the right special-token ids', () => {
  const dialog = meta.cases.find((item) => item.op === 'encode_dialog_prompt')!;

  test("Meta's dialog: one <|begin_of_text|>, Meta's header and message ids, the assistant header last", () => {
    const { ids } = renderConversation(llamaTokenizer, dialog.messages!, { date: new Date(2024, 6, 26) });
    const metaIds = dialog.expected as number[];
    expect(ids.filter((id) => id === 128000)).toHaveLength(1); // the template's BOS, not doubled
    // Header and system content as Meta encodes them; the 3.1 template adds its date lines in between.
    expect(ids.slice(0, 5)).toEqual(metaIds.slice(0, 5));
    const systemContent = metaIds.slice(5, 12);
    const userAndGenerationPrompt = metaIds.slice(12);
    expect(ids.slice(-(userAndGenerationPrompt.length + systemContent.length))).toEqual([...systemContent, ...userAndGenerationPrompt]);
  });

  test('a built-in tool call renders to <|python_tag|> … <|eom_id|> ids', () => {
    const { ids } = renderConversation(llamaTokenizer, [
      { role: 'user', content: 'Gold price?' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'brave_search', arguments: '{"query":"gold"}' } }] },
      { role: 'ipython', content: 'no results', tool_call_id: 'c1' },
    ], { builtinTools: ['brave_search'], date: new Date(2024, 6, 26) });
    const tag = ids.indexOf(PYTHON_TAG_ID);
    expect(ids.slice(tag - 4, tag)).toEqual([128006, 78191, 128007, 271]);
    const eom = ids.indexOf(EOM);
    expect(llamaTokenizer.decode(ids.slice(tag + 1, eom))).toBe('brave_search.call(query="gold")');
    expect(ids.slice(eom + 1, eom + 6)).toEqual([128006, ...llamaTokenizer.encode('ipython', false), 128007, 271]);
  });
});

describe('herd prompt', () => {
  test.each(['a_simple_system_user', 'b3_builtin_full_roundtrip'])('--vars prints case %s exactly as Python jinja2 rendered it', (name) => {
    const result = herd(['prompt', '--model', TINY_LLAMA, '--vars', writeJson(`${name}.json`, caseVars(name))]);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(expected(name));
  });

  test('--messages with --tools (commands left out) and --date gives the fixture prompt; --json adds ids and the count', () => {
    const vars = caseVars('d_tool_result_ipython') as { messages: Array<Record<string, unknown>>; tools: Array<Record<string, unknown>> };
    // herd's files hold OpenAI-shaped calls: arguments as a JSON string.
    const messages = vars.messages.map((message) => (message.tool_calls
      ? { ...message, content: '', tool_calls: (message.tool_calls as Array<{ function: { name: string; arguments: unknown } }>).map((call) => ({ ...call, function: { ...call.function, arguments: JSON.stringify(call.function.arguments) } })) }
      : message));
    const tools = vars.tools.map((tool) => ({ ...tool, command: ['./weather.py'] }));
    const result = herd(['prompt', '-m', TINY_LLAMA, '--messages', writeJson('messages.json', { messages }), '--tools', writeJson('tools.json', tools), '--date', '2024-07-26', '--json']);
    expect(result.stderr).toBe('');
    const report = JSON.parse(result.stdout);
    expect(report.prompt).toBe(expected('d_tool_result_ipython'));
    expect(report.ids).toEqual(llamaTokenizer.encode(expected('d_tool_result_ipython'), false));
    expect(report.ids[0]).toBe(128000);
    expect(report.ids[1]).toBe(128006);
    expect(report.token_count).toBe(report.ids.length);
  });

  test('--ids prints the token ids; a model without a chat template is a one-line error', () => {
    const ids = herd(['prompt', '-m', TINY_LLAMA, '--vars', writeJson('a2.json', caseVars('a2_no_system')), '--ids']);
    expect(JSON.parse(ids.stdout)).toEqual(llamaTokenizer.encode(expected('a2_no_system'), false));
    const noTemplate = herd(['prompt', '--messages', writeJson('hi.json', [{ role: 'user', content: 'hi' }])]);
    expect(noTemplate.status).not.toBe(0);
    expect(noTemplate.stderr).toBe('herd: tokenizer_config.json has no chat_template: this model has no chat format (use raw text with herd generate)\n');
  });
});
