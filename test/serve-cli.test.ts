/**
 * `herd serve` as a person runs it (the built CLI on tiny-llama-3.1): the --json ready line, and
 * SIGTERM during a stream — the client sees the stream end with an error event and [DONE], not
 * a hang, and the process exits 0.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { TINY_LLAMA } from './fixtures.js';
import { BIN, herd } from './herd-cli.js';

const SCHEMAS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/schemas');
const ajv = new Ajv2020.default({ strict: true, allowUnionTypes: true });
const schema = (name: string) => ajv.compile(JSON.parse(fs.readFileSync(path.join(SCHEMAS, `herd.${name}.schema.json`), 'utf8')));
const validate = schema('serve');
const validateBench = schema('bench-serve');

/** Streams a completion; resolves with everything the client received once the response ends. */
function streamCompletion(url: string, onFirstChunk: () => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.once('data', onFirstChunk);
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve(text));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(JSON.stringify({ prompt: 'Once upon a time', max_tokens: 400, temperature: 0, stream: true }));
  });
}

test('bench --serve against it; then SIGTERM during a stream: the stream ends with an error event and [DONE], the process exits 0', async () => {
  const { NODE_ENV: _test, ...env } = process.env;
  const child = spawn(process.execPath, [BIN, 'serve', '--model', TINY_LLAMA, '--port', '0', '--ctx-size', '512', '--grace', '0', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = readline.createInterface({ input: child.stdout });
  const objects: Array<Record<string, unknown>> = [];
  const ready = new Promise<Record<string, unknown>>((resolve) => {
    lines.on('line', (line) => {
      const object = JSON.parse(line) as Record<string, unknown>;
      objects.push(object);
      if (object.event === 'ready') resolve(object);
    });
  });
  try {
    const readyLine = await ready;
    expect(validate(readyLine)).toBe(true);
    expect(readyLine).toMatchObject({ schema: 'herd.serve/1', model: 'tiny-llama-3.1', context_length: 512, parallel: 4 });
    expect(readyLine.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const bench = herd(['bench', '--serve', readyLine.url as string, '--requests', '4', '--concurrency', '2', '--gen-tokens', '4', '--json']);
    expect(bench.status).toBe(0);
    const report = JSON.parse(bench.stdout) as Record<string, unknown>;
    expect(validateBench(report)).toBe(true);
    expect(report).toMatchObject({ schema: 'herd.bench-serve/1', completed: 4, errors: {} });
    const received = await streamCompletion(readyLine.url as string, () => child.kill('SIGTERM'));
    const events = received.split('\n\n').filter((event) => event.startsWith('data: ')).map((event) => event.slice('data: '.length));
    expect(events.at(-1)).toBe('[DONE]');
    expect(JSON.parse(events.at(-2)!)).toMatchObject({ error: { code: 'server_shutting_down' } });
    expect(await exited).toBe(0);
    expect(objects.at(-1)).toMatchObject({ schema: 'herd.serve/1', event: 'stopped' });
  } finally {
    child.kill('SIGKILL');
  }
});
