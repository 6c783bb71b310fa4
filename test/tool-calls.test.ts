/**
 * The tool-call rules of Llama 3.1, from Meta's prompt-format documentation and the decoder in
 * llama-models (`ChatFormat.decode_assistant_message_from_content`, `ToolUtils`), and the multiple
 * JSON calls of vLLM's llama3_json parser. Each case names the rule it reflects.
 */
import { parseAssistantMessage, type ParsedAssistantMessage } from '../src/templates/tool-calls.js';

function sequentialIds(): () => string {
  let next = 0;
  return () => `call_${++next}`;
}

const parse = (text: string): ParsedAssistantMessage => parseAssistantMessage(text, { newCallId: sequentialIds() });

/** The calls as name + decoded arguments, checking the OpenAI shape on the way. */
function calls(text: string): Array<[string, unknown]> {
  const parsed = parse(text);
  return parsed.toolCalls.map((call, index) => {
    expect(call.id).toBe(`call_${index + 1}`);
    expect(call.type).toBe('function');
    expect(typeof call.function.arguments).toBe('string');
    return [call.function.name, JSON.parse(call.function.arguments)];
  });
}

function expectNoCall(text: string, content: string): void {
  expect(parse(text)).toEqual({ content, toolCalls: [] });
}

describe('custom tools: <function=NAME>{json}</function>', () => {
  it('parses the documented form (prompt format: "<function=spotify_trending_songs>{"n": "5"}</function>")', () => {
    expect(calls('<function=spotify_trending_songs>{"n": "5"}</function><|eot_id|>')).toEqual([['spotify_trending_songs', { n: '5' }]]);
  });

  it('reads nested JSON and a missing closing tag (Meta matches the opening tag and the JSON only)', () => {
    expect(calls('<function=search>{"filter": {"year": 2024, "tags": ["a}"]}}')).toEqual([
      ['search', { filter: { year: 2024, tags: ['a}'] } }],
    ]);
  });

  it("accepts single-quoted JSON (Meta retries with ' replaced by \")", () => {
    expect(calls("<function=lookup>{'id': 'x7'}</function>")).toEqual([['lookup', { id: 'x7' }]]);
  });

  it('is found after leading text (Meta uses re.search for the tag)', () => {
    expect(calls('Let me check. <function=lookup>{"id": 1}</function>')).toEqual([['lookup', { id: 1 }]]);
  });

  it('is not a call when the JSON after the tag does not parse (Meta returns None)', () => {
    expectNoCall('<function=lookup>{id: }</function>', '<function=lookup>{id: }</function>');
  });

  it('makes message content empty when there is a call (Meta clears content)', () => {
    expect(parse('<function=f>{}</function>').content).toBe('');
  });
});

describe('custom tools: a whole-message JSON object', () => {
  it('with "name" and "parameters" (the format the system prompt asks for)', () => {
    const text = '{"name": "get_current_conditions", "parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}';
    expect(calls(text)).toEqual([['get_current_conditions', { location: 'San Francisco, CA', unit: 'Fahrenheit' }]]);
  });

  it('with "arguments" instead (vLLM llama3_json reads arguments, then parameters)', () => {
    expect(calls('{"name": "f", "arguments": {"a": 1}}')).toEqual([['f', { a: 1 }]]);
  });

  it('with "type": "function" and after <|python_tag|>, ending in <|eom_id|> (Meta, vLLM strip both)', () => {
    expect(calls('<|python_tag|>{"type": "function", "name": "f", "parameters": {"a": true}}<|eom_id|>')).toEqual([['f', { a: true }]]);
  });

  it('several calls separated by ";" (vLLM llama3_json)', () => {
    expect(calls('{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {"y": "; {"}}')).toEqual([
      ['a', { x: 1 }],
      ['b', { y: '; {' }],
    ]);
    expect(calls('{"name": "a", "parameters": {}};{"name": "b", "parameters": {}};')).toEqual([
      ['a', {}],
      ['b', {}],
    ]);
  });

  it('a built-in tool called in the custom format gets its first argument as query (Meta remaps it)', () => {
    expect(calls('{"name": "brave_search", "parameters": {"q": "gold price"}}')).toEqual([['brave_search', { query: 'gold price' }]]);
  });

  describe('is not a call', () => {
    it('when JSON is only mentioned inside prose', () => {
      const text = 'You could send {"name": "f", "parameters": {}} to the API.';
      expectNoCall(text, text);
    });

    it('when prose follows the JSON (the whole message must be JSON)', () => {
      const text = '{"name": "f", "parameters": {}} and that is how it works.';
      expectNoCall(text, text);
    });

    it('when the object has no name (Meta requires "name")', () => {
      expectNoCall('{"temperature": 61, "conditions": "foggy"}', '{"temperature": 61, "conditions": "foggy"}');
    });

    it('when parameters are missing or not an object', () => {
      expectNoCall('{"name": "f"}', '{"name": "f"}');
      expectNoCall('{"name": "f", "parameters": "x=1"}', '{"name": "f", "parameters": "x=1"}');
    });

    it('when it is a JSON array (a call is an object)', () => {
      expectNoCall('[{"name": "f", "parameters": {}}]', '[{"name": "f", "parameters": {}}]');
    });

    it('when two objects are not separated by ";" or one of several is not a call', () => {
      expectNoCall('{"name": "a", "parameters": {}} {"name": "b", "parameters": {}}', '{"name": "a", "parameters": {}} {"name": "b", "parameters": {}}');
      expectNoCall('{"name": "a", "parameters": {}}; {"note": 1}', '{"name": "a", "parameters": {}}; {"note": 1}');
    });

    it('when the JSON is cut off', () => {
      expectNoCall('{"name": "f", "parameters": {"a": 1}', '{"name": "f", "parameters": {"a": 1}');
    });
  });
});

describe('built-in tools after <|python_tag|>', () => {
  it('brave_search.call(query="…") (prompt format: built-in calls start with <|python_tag|>, end with <|eom_id|>)', () => {
    expect(calls('<|python_tag|>brave_search.call(query="current price of 1oz gold")<|eom_id|>')).toEqual([
      ['brave_search', { query: 'current price of 1oz gold' }],
    ]);
  });

  it('wolfram_alpha.call(query="…"), keeping quotes inside the query', () => {
    expect(calls('<|python_tag|>wolfram_alpha.call(query="population of "New York" in 1900")')).toEqual([
      ['wolfram_alpha', { query: 'population of "New York" in 1900' }],
    ]);
  });

  it('plain code is a code_interpreter call with {"code": …} (Meta: ipython mode without another call)', () => {
    const code = 'def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n\nprint(is_prime(7))';
    expect(calls(`<|python_tag|>${code}<|eom_id|>`)).toEqual([['code_interpreter', { code }]]);
  });

  it('the .call form of a tool that is not brave_search or wolfram_alpha is code', () => {
    expect(calls('<|python_tag|>client.call(query="x")')).toEqual([['code_interpreter', { code: 'client.call(query="x")' }]]);
  });

  describe('is not a call', () => {
    it('without <|python_tag|>: a built-in call mentioned in prose', () => {
      const text = 'I would run brave_search.call(query="gold") for that.';
      expectNoCall(text, text);
    });

    it('when nothing follows <|python_tag|>', () => {
      expectNoCall('<|python_tag|><|eom_id|>', '');
    });
  });
});

describe('plain replies', () => {
  it('keep their text, without the end token, and have no calls', () => {
    expectNoCall('  The capital of France is Paris.<|eot_id|>', 'The capital of France is Paris.');
  });

  it('get distinct default call ids', () => {
    const { toolCalls } = parseAssistantMessage('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {}}');
    expect(toolCalls).toHaveLength(2);
    expect(toolCalls[0].id).toMatch(/^call_[0-9a-f-]{36}$/);
    expect(toolCalls[0].id).not.toBe(toolCalls[1].id);
  });
});
