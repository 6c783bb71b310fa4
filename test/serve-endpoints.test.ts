/**
 * herd serve's smaller surfaces over the scripted generator: CORS for browsers, the /metrics
 * latency histograms in Prometheus' text format, and TGI's /generate_stream events.
 */
import { EOT, llamaTokenizer, textIds } from './chat-scripted-source.js';
import { SERVED_ID, ScriptedGenerator, startScriptedServer } from './serve-scripted-generator.js';

const REPLY = 'Paris is the capital of France.';
const replyIds = [...textIds(REPLY), EOT];
const scripted = () => new ScriptedGenerator(() => replyIds);

const chat = (url: string, headers: Record<string, string> = {}) => fetch(`${url}/v1/chat/completions`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json', ...headers },
  body: JSON.stringify({ model: SERVED_ID, messages: [{ role: 'user', content: 'Hi' }] }),
});

describe('CORS', () => {
  test('with --cors: a preflight is answered (before the key is checked) and every response names the origin', async () => {
    const { server, url } = await startScriptedServer(scripted(), { corsOrigin: 'https://app.example', apiKey: 'sesame' });
    try {
      const preflight = await fetch(`${url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type,x-stainless-os' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
      expect(preflight.headers.get('access-control-allow-headers')).toBe('authorization,content-type,x-stainless-os');
      expect(preflight.headers.get('vary')).toBe('Origin');

      const answered = await chat(url, { Origin: 'https://app.example', Authorization: 'Bearer sesame' });
      expect(answered.status).toBe(200);
      expect(answered.headers.get('access-control-allow-origin')).toBe('https://app.example');
      // An error response carries it too, or the browser hides the error object from the page.
      const refused = await chat(url, { Origin: 'https://app.example' });
      expect(refused.status).toBe(401);
      expect(refused.headers.get('access-control-allow-origin')).toBe('https://app.example');
    } finally {
      await server.shutdown(0);
    }
  });

  test('without --cors: no Access-Control headers at all', async () => {
    const { server, url } = await startScriptedServer(scripted());
    try {
      const preflight = await fetch(`${url}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } });
      const answered = await chat(url, { Origin: 'https://app.example' });
      expect(answered.status).toBe(200);
      for (const response of [preflight, answered]) {
        expect([...response.headers.keys()].filter((name) => name.startsWith('access-control-'))).toEqual([]);
      }
    } finally {
      await server.shutdown(0);
    }
  });
});

/** Prometheus text format 0.0.4: `# HELP`/`# TYPE` comments and `name{labels} value` samples. */
const SAMPLE_LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? -?[0-9.e+-]+$/;
const COMMENT_LINE = /^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))$/;

interface HistogramSamples { buckets: Array<[string, number]>; sum: number; count: number }

function histogram(text: string, name: string): HistogramSamples {
  const lines = text.split('\n');
  const buckets = lines.flatMap((line) => {
    const match = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`).exec(line);
    return match ? [[match[1]!, Number(match[2])] as [string, number]] : [];
  });
  const value = (suffix: string) => Number(lines.find((line) => line.startsWith(`${name}_${suffix} `))!.split(' ')[1]);
  return { buckets, sum: value('sum'), count: value('count') };
}

test('/metrics after a few requests: Prometheus text; the latency histograms count one first token per request and one gap per later token', async () => {
  const { server, url } = await startScriptedServer(scripted());
  try {
    const requests = 3;
    for (let index = 0; index < requests; index++) expect((await chat(url)).status).toBe(200);
    const response = await fetch(`${url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text.endsWith('\n')).toBe(true);
    for (const line of text.trimEnd().split('\n')) expect(line.startsWith('#') ? COMMENT_LINE.test(line) : SAMPLE_LINE.test(line)).toBe(true);
    expect(text).toContain('# TYPE herd_time_to_first_token_seconds histogram');
    expect(text).toContain('# TYPE herd_inter_token_latency_seconds histogram');
    expect(text).toContain(`herd_generation_tokens_total ${requests * replyIds.length}`);

    const firstToken = histogram(text, 'herd_time_to_first_token_seconds');
    const gaps = histogram(text, 'herd_inter_token_latency_seconds');
    expect(firstToken.count).toBe(requests);
    expect(gaps.count).toBe(requests * (replyIds.length - 1));
    for (const samples of [firstToken, gaps]) {
      // Cumulative buckets in rising bounds, ending with +Inf equal to the count.
      const bounds = samples.buckets.map(([le]) => (le === '+Inf' ? Infinity : Number(le)));
      expect(bounds).toEqual([...bounds].sort((a, b) => a - b));
      expect(bounds.at(-1)).toBe(Infinity);
      const counts = samples.buckets.map(([, count]) => count);
      expect(counts).toEqual([...counts].sort((a, b) => a - b));
      expect(counts.at(-1)).toBe(samples.count);
      expect(samples.sum).toBeGreaterThanOrEqual(0);
    }
  } finally {
    await server.shutdown(0);
  }
});

/** The JSON of each `data:` event of an SSE body. */
function events(body: string): unknown[] {
  return body.split('\n\n').filter((event) => event.trim() !== '').map((event) => {
    expect(event.startsWith('data:')).toBe(true);
    return JSON.parse(event.slice('data:'.length));
  });
}

test('TGI /generate_stream: one event per token with a token object, the last with generated_text and details; no [DONE]', async () => {
  const generator = scripted();
  const { server, url } = await startScriptedServer(generator);
  try {
    const response = await fetch(`${url}/generate_stream`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: 'The capital of France?', parameters: { max_new_tokens: 20 } }) });
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const body = await response.text();
    expect(body).not.toContain('[DONE]');
    const sent = events(body) as Array<{ index: number; token: { id: number; text: string; logprob: number; special: boolean }; generated_text: string | null; details: Record<string, unknown> | null }>;
    // BOS then the text, as TGI tokenizes inputs.
    expect(generator.prompts.at(-1)).toEqual(llamaTokenizer.encode('The capital of France?', true));
    expect(sent.map((event) => event.token.id)).toEqual(replyIds);
    expect(sent.map((event) => event.token.text).join('')).toBe(`${REPLY}<|eot_id|>`);
    expect(sent.map((event) => event.token.special)).toEqual(replyIds.map((id) => id === EOT));
    // The scripted generator gives every chosen token logprob -0.5.
    expect(sent.every((event) => event.index === 0 && event.token.logprob === -0.5)).toBe(true);
    expect(sent.slice(0, -1).every((event) => event.generated_text === null && event.details === null)).toBe(true);
    const last = sent.at(-1)!;
    expect(last.generated_text).toBe(REPLY);
    expect(last.details).toEqual({ finish_reason: 'eos_token', generated_tokens: replyIds.length, input_length: generator.prompts.at(-1)!.length, seed: null });
  } finally {
    await server.shutdown(0);
  }
});

test('TGI /generate_stream cut by max_new_tokens: finish_reason length', async () => {
  const { server, url } = await startScriptedServer(scripted());
  try {
    const response = await fetch(`${url}/generate_stream`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: 'Hi', parameters: { max_new_tokens: 3 } }) });
    const sent = events(await response.text()) as Array<{ generated_text: string | null; details: { finish_reason: string; generated_tokens: number } | null }>;
    expect(sent).toHaveLength(3);
    expect(sent.at(-1)!.details).toMatchObject({ finish_reason: 'length', generated_tokens: 3 });
    expect(sent.at(-1)!.generated_text).toBe(llamaTokenizer.decode(replyIds.slice(0, 3)));
  } finally {
    await server.shutdown(0);
  }
});
