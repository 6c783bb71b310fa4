import fs from 'node:fs';
import path from 'node:path';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { HerdError } from '../src/errors.js';
import {
  formatDateString,
  renderChatTemplate,
  renderTemplateVariables,
  selectChatTemplate,
  type ChatTemplateInput,
} from '../src/templates/chat-template.js';
import { LLAMA_TOKENIZER, LLAMA_CHAT, readJson } from './fixtures.js';

const CHAT_FIXTURES = LLAMA_CHAT;

interface ChatCases {
  weather_tool: unknown;
  cases: Record<string, { template: 'llama31' | 'guard8b'; vars: Record<string, unknown> }>;
}

const fixture = readJson<ChatCases>(path.join(CHAT_FIXTURES, 'cases.json'));
const TEMPLATES = {
  llama31: readJson<{ chat_template: string }>(path.join(LLAMA_TOKENIZER, 'tokenizer_config.json')).chat_template,
  guard8b: fs.readFileSync(path.join(CHAT_FIXTURES, 'chat_template_llama_guard_3_8b.jinja'), 'utf8'),
};
/** The special tokens the fixture README says the expected files were rendered with. */
const SPECIAL_TOKENS = { bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' };

/** `"$weather_tool"` in a case stands for the tool definition. */
function withWeatherTool(value: unknown): unknown {
  if (value === '$weather_tool') return fixture.weather_tool;
  if (Array.isArray(value)) return value.map(withWeatherTool);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withWeatherTool(item)]));
  }
  return value;
}

function expected(name: string): string {
  return fs.readFileSync(path.join(CHAT_FIXTURES, 'expected', `${name}.txt`), 'utf8');
}

const llama31 = (input: Omit<ChatTemplateInput, 'bosToken' | 'eosToken'>): string =>
  renderChatTemplate(TEMPLATES.llama31, { bosToken: SPECIAL_TOKENS.bos_token, eosToken: SPECIAL_TOKENS.eos_token, ...input });

describe('every llama-3.1-chat fixture case, byte for byte against Python jinja2', () => {
  const cases = Object.entries(fixture.cases);

  it('covers all 13 cases of cases.json', () => {
    expect(cases).toHaveLength(13);
  });

  it.each(cases)('%s', (name, testCase) => {
    const variables = { ...SPECIAL_TOKENS, ...(withWeatherTool(testCase.vars) as Record<string, unknown>) };
    expect(renderTemplateVariables(TEMPLATES[testCase.template], variables)).toBe(expected(name));
  });
});

describe('renderChatTemplate (the API herd generate and chat use)', () => {
  it('renders the builtin-tools case from typed input', () => {
    const prompt = llama31({
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'Search the web for the latest price of 1oz gold?' },
      ],
      builtinTools: ['brave_search', 'wolfram_alpha'],
      addGenerationPrompt: true,
    });
    expect(prompt).toBe(expected('b_builtin_tools'));
  });

  it('renders a date and no generation prompt when not asked for', () => {
    const prompt = llama31({
      messages: [
        { role: 'system', content: '  You are terse.  ' },
        { role: 'user', content: 'Hi!' },
        { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: 'Bye' },
      ],
      dateString: '28 Nov 2025',
    });
    const withPrompt = expected('a3_multiturn_date');
    expect(prompt).toBe(withPrompt.slice(0, withPrompt.length - '<|start_header_id|>assistant<|end_header_id|>\n\n'.length));
  });

  it('decodes OpenAI string arguments so a tool call renders as the model was trained (case d)', () => {
    const weatherTool = fixture.weather_tool;
    const prompt = llama31({
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is the weather in San Francisco, CA in Fahrenheit?' },
        {
          role: 'assistant',
          content: '',
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_current_conditions', arguments: '{"location":"San Francisco, CA","unit":"Fahrenheit"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 61, "conditions": "foggy"}' },
      ],
      tools: [weatherTool],
      addGenerationPrompt: true,
    });
    expect(prompt).toBe(expected('d_tool_result_ipython'));
  });

  it('renders a built-in call with <|python_tag|> and <|eom_id|> (case b3)', () => {
    const prompt = llama31({
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is the 100th decimal of pi?' },
        {
          role: 'assistant',
          content: '',
          tool_calls: [{ id: 'c', type: 'function', function: { name: 'wolfram_alpha', arguments: '{"query": "100th decimal of pi"}' } }],
        },
        {
          role: 'ipython',
          content: '{"queryresult": {"success": true, "pods": [{"title": "Result", "subpods": [{"plaintext": "7"}]}]}}',
        },
      ],
      builtinTools: ['brave_search', 'wolfram_alpha'],
      addGenerationPrompt: true,
    });
    expect(prompt).toBe(expected('b3_builtin_full_roundtrip'));
  });

  it('keeps non-ASCII text and JSON unescaped, as tojson with ensure_ascii=False does', () => {
    const tool = { type: 'function', function: { name: 'météo', description: 'Température à Zürich ☀', parameters: {} } };
    const prompt = llama31({ messages: [{ role: 'user', content: 'Quel temps ?' }], tools: [tool], toolsInUserMessage: false });
    // json.dumps(tool, indent=4, ensure_ascii=False): raw UTF-8, "{}" for an empty mapping.
    const toolJson = [
      '{',
      '    "type": "function",',
      '    "function": {',
      '        "name": "météo",',
      '        "description": "Température à Zürich ☀",',
      '        "parameters": {}',
      '    }',
      '}',
    ].join('\n');
    expect(prompt).toContain(`Do not use variables.\n\n${toolJson}\n\n<|eot_id|>`);
  });

  it('tokenizes to the special-token ids with exactly one BOS (encoded without adding special tokens)', () => {
    const tokenizer = HerdTokenizer.fromDir(LLAMA_TOKENIZER);
    const ids = tokenizer.encode(expected('b3_builtin_full_roundtrip'), false);
    // 128000 <|begin_of_text|>, 128006/128007 header, 128010 <|python_tag|>, 128008 <|eom_id|>, 128009 <|eot_id|>.
    expect(ids.slice(0, 2)).toEqual([128000, 128006]);
    expect(ids.filter((id) => id === 128000)).toHaveLength(1);
    expect(ids.filter((id) => id === 128010)).toHaveLength(1);
    expect(ids.filter((id) => id === 128008)).toHaveLength(1);
    expect(ids.filter((id) => id === 128009)).toHaveLength(3);
    expect(ids.filter((id) => id === 128006)).toHaveLength(5);
  });
});

describe('jinja2 behaviour the package lacks', () => {
  // Expected strings are what Python jinja2 3.1.6 renders for the same template.
  const render = (template: string, variables: Record<string, unknown> = {}): string => renderTemplateVariables(template, variables);

  it('select and reject with a test and its argument', () => {
    expect(render("{{ xs | reject('equalto', 'b') | join(',') }}", { xs: ['a', 'b', 'c'] })).toBe('a,c');
    expect(render("{{ xs | select('equalto', 'b') | join(',') }}", { xs: ['a', 'b', 'c'] })).toBe('b');
  });

  it('select and reject without a test keep or drop truthy items', () => {
    expect(render('{{ xs | select | list | length }}', { xs: [0, 1, '', 'x', null] })).toBe('2');
    expect(render("{{ xs | reject | join('|') }}", { xs: [0, 1, '', 'x'] })).toBe('0|');
  });

  it('select iterates a string by characters and a mapping by keys', () => {
    expect(render("{{ 'abca' | reject('equalto', 'a') | join }}")).toBe('bc');
    expect(render("{{ m | select('equalto', 'k2') | join }}", { m: { k1: 1, k2: 2 } })).toBe('k2');
  });

  it('select with an unknown test is an error that names the template', () => {
    expect(() => render("{{ xs | select('nosuchtest') | join }}", { xs: ['a'] })).toThrow(/cannot render the chat template: .*nosuchtest/);
  });

  it('range, none and strftime_now behave as in transformers', () => {
    expect(render("{{ range(3) | join(',') }} {{ range(1, 7, 2) | join(',') }} {{ range(3, 0, -1) | join(',') }}")).toBe('0,1,2 1,3,5 3,2,1');
    expect(render("{{ 'yes' if none is none and true and True and not false and not False and None is none }}")).toBe('yes');
    expect(render('{{ strftime_now("%Y") }}')).toBe(String(new Date().getFullYear()));
  });

  it('reads CRLF line ends in the template as jinja2 does', () => {
    expect(render('x\r\n{% if b %}\r\ny{% endif %}', { b: true })).toBe('x\ny');
  });

  it('a variable named like a global replaces it', () => {
    expect(render('{{ range }}', { range: 'mine' })).toBe('mine');
  });
});

describe('errors', () => {
  it('raise_exception in the template becomes a HerdError naming the source', () => {
    const render = (): string =>
      renderChatTemplate(TEMPLATES.llama31, {
        messages: [{ role: 'system', content: 'only a system message' }],
        tools: [fixture.weather_tool],
        bosToken: SPECIAL_TOKENS.bos_token,
        eosToken: SPECIAL_TOKENS.eos_token,
        templateSource: 'models/x/tokenizer_config.json',
      });
    expect(render).toThrow(HerdError);
    expect(render).toThrow(
      "models/x/tokenizer_config.json refused the conversation: Cannot put tools in the first user message when there's no first user message!",
    );
  });

  it('the guard template refuses roles that do not alternate', () => {
    const messages = [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ];
    expect(() => renderTemplateVariables(TEMPLATES.guard8b, { messages }, 'guard.jinja')).toThrow(
      'guard.jinja refused the conversation: Conversation roles must alternate user/assistant/user/assistant/...',
    );
  });

  it('a template that does not parse names its source', () => {
    expect(() => renderTemplateVariables('{% if %}', {}, 'broken.jinja')).toThrow(/^cannot parse broken\.jinja: /);
  });

  it('tool-call arguments that are not JSON are a clear error', () => {
    const render = (): string =>
      llama31({
        messages: [{ role: 'assistant', content: '', tool_calls: [{ id: 'x', type: 'function', function: { name: 'f', arguments: '{oops' } }] }],
      });
    expect(render).toThrow(HerdError);
    expect(render).toThrow('tool call f: arguments are not JSON: {oops');
  });
});

describe('selectChatTemplate', () => {
  const named = { default: 'D', tool_use: 'T' };

  it('returns a single template as is', () => {
    expect(selectChatTemplate('S', { source: 'cfg', hasTools: true })).toBe('S');
  });

  it('picks tool_use when tools are given, default otherwise, as transformers does', () => {
    expect(selectChatTemplate(named, { source: 'cfg', hasTools: true })).toBe('T');
    expect(selectChatTemplate(named, { source: 'cfg', hasTools: false })).toBe('D');
    expect(selectChatTemplate({ default: 'D' }, { source: 'cfg', hasTools: true })).toBe('D');
    expect(selectChatTemplate(named, { source: 'cfg', hasTools: false, name: 'tool_use' })).toBe('T');
  });

  it('the list form of tokenizer_config.json, read by the engine, selects the same way', () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), 'herd-template-'));
    try {
      fs.symlinkSync(path.join(LLAMA_TOKENIZER, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
      const config = { chat_template: [{ name: 'default', template: 'D' }, { name: 'tool_use', template: 'T' }] };
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
      const { chatTemplate } = HerdTokenizer.fromDir(dir).settings;
      expect(selectChatTemplate(chatTemplate, { source: 'cfg', hasTools: true })).toBe('T');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a model without a template, or without the named one, is a clear error', () => {
    expect(() => selectChatTemplate(null, { source: 'm/tokenizer_config.json', hasTools: false })).toThrow(
      /^m\/tokenizer_config\.json has no chat_template/,
    );
    expect(() => selectChatTemplate({ tool_use: 'T' }, { source: 'cfg', hasTools: false })).toThrow(
      'cfg has no chat template named "default" (it has: tool_use)',
    );
  });
});

describe('formatDateString', () => {
  it('writes "%d %b %Y" in English with a zero-padded day', () => {
    expect(formatDateString(new Date(2024, 6, 26))).toBe('26 Jul 2024');
    expect(formatDateString(new Date(2025, 0, 5))).toBe('05 Jan 2025');
    expect(formatDateString(new Date(2023, 11, 31, 23, 59))).toBe('31 Dec 2023');
  });
});
