import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Conversation } from '../src/chat/conversation.js';
import { SESSION_FORMAT, SESSION_VERSION, exportSession, loadSession, saveSession, type ChatSession } from '../src/chat/session.js';
import { HerdError } from '../src/errors.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-chat-session-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A conversation with everything a session holds: system, unicode, two tool calls and their results. */
const session: ChatSession = {
  format: SESSION_FORMAT,
  version: SESSION_VERSION,
  settings: {
    model: '/models/Llama-3.1-8B-Instruct',
    builtin_tools: ['brave_search', 'code_interpreter'],
    tools_file: 'tools.json',
    date: '2024-07-26',
    max_new_tokens: 512,
    sampling: { temperature: 0.6, top_p: 0.9, top_k: 50, min_p: 0, repetition_penalty: 1, seed: 7 },
  },
  messages: [
    { role: 'system', content: 'You are a helpful assistant.\n  Keep "quotes" and \\ backslashes.' },
    { role: 'user', content: 'Weather in Zürich and 東京? 🌦' },
    {
      role: 'assistant',
      content: '',
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'get_current_conditions', arguments: '{"location":"Zürich","unit":"Celsius"}' } },
        { id: 'call_2', type: 'function', function: { name: 'get_current_conditions', arguments: '{"location":"東京","unit":"Celsius"}' } },
      ],
    },
    { role: 'ipython', content: '{"temperature": 12}', tool_call_id: 'call_1' },
    { role: 'ipython', content: 'error: get_current_conditions timed out after 30 s', tool_call_id: 'call_2' },
    { role: 'assistant', content: 'Zürich: 12 °C. Tokyo: unknown.\n' },
  ],
};

test('a saved session loads back equal, and its export reads back as the same messages', () => {
  const file = path.join(work, 'chat.json');
  saveSession(file, session);
  expect(fs.readdirSync(work)).toEqual(['chat.json']); // written through a temporary file, renamed
  const loaded = loadSession(file);
  expect(loaded).toEqual(session);

  const exported = path.join(work, 'chat.jsonl');
  exportSession(exported, loaded.messages);
  const lines = fs.readFileSync(exported, 'utf8').split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toBe('');
  expect(JSON.parse(lines[0]!)).toEqual({ messages: session.messages });

  // Saving what was loaded writes the same bytes.
  const again = path.join(work, 'again.json');
  saveSession(again, loaded);
  expect(fs.readFileSync(again, 'utf8')).toBe(fs.readFileSync(file, 'utf8'));
});

test('a file that is not a session, or a malformed message, is a one-line error naming the file', () => {
  const notSession = path.join(work, 'not.json');
  fs.writeFileSync(notSession, JSON.stringify({ messages: [] }));
  expect(() => loadSession(notSession)).toThrow(new HerdError(`${notSession}: not a herd chat session (expected "format": "herd-chat-session", "version": 1)`));
  const badCall = path.join(work, 'bad.json');
  const broken = structuredClone(session) as unknown as { messages: Array<{ tool_calls?: Array<{ function: { arguments: unknown } }> }> };
  broken.messages[2]!.tool_calls![0]!.function.arguments = { location: 'Zürich' };
  fs.writeFileSync(badCall, JSON.stringify(broken));
  expect(() => loadSession(badCall)).toThrow(`${badCall}: message 2, tool call 0: expected {"id", "type": "function", "function": {"name", "arguments": JSON string}}`);
});

describe('conversation edits', () => {
  const turns = () => new Conversation(structuredClone(session.messages));

  test('/undo removes the last user message and its answer', () => {
    const conversation = turns();
    expect(conversation.undo()).toBe('Weather in Zürich and 東京? 🌦');
    expect(conversation.messages).toEqual([session.messages[0]]);
    expect(conversation.undo()).toBeUndefined();
  });

  test('/regen drops the answer, /clear keeps the system message, /system replaces it', () => {
    const conversation = turns();
    expect(conversation.dropLastAnswer()).toBe(true);
    expect(conversation.messages).toEqual(session.messages.slice(0, 2));
    conversation.setSystem('Be brief.');
    expect(conversation.messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
    expect(conversation.messages).toHaveLength(2);
    conversation.clear();
    expect(conversation.messages).toEqual([{ role: 'system', content: 'Be brief.' }]);
    conversation.setSystem('');
    expect(conversation.messages).toEqual([]);
  });
});
