import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { HANG_GUARD_MS } from './hang-guard.js';

interface JestConfig {
  testPathIgnorePatterns: string[];
  testMatch?: string[];
  testRegex?: string;
}

/**
 * jest.config.js as a tier sees it. The config reads HERD_TEST_TIER when it is loaded, so each
 * tier loads it in its own node process (jest's module registry would hand back the first load).
 */
function configFor(tier: string): { config: JestConfig; slow: string[] } {
  const script = "const m = await import('./jest.config.js'); process.stdout.write(JSON.stringify({ config: m.default, slow: m.SLOW_SUITES }));";
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, HERD_TEST_TIER: tier }, timeout: HANG_GUARD_MS });
  if (result.status !== 0) throw new Error(result.stderr);
  return JSON.parse(result.stdout) as { config: JestConfig; slow: string[] };
}

const ignored = (config: JestConfig, file: string) => config.testPathIgnorePatterns.some((pattern) => new RegExp(pattern).test(path.resolve(file)));

test('every suite listed as slow exists, so a renamed one cannot slip into the fast tier unnoticed', () => {
  const { slow } = configFor('full');
  expect(slow.length).toBeGreaterThan(0);
  for (const file of slow) expect(fs.existsSync(file) ? file : `${file} (missing)`).toBe(file);
});

test('the fast tier leaves out the slow suites, the full tier only the opt-in ones, the shared tier runs only those', () => {
  const { config: fast, slow } = configFor('fast');
  const { config: full } = configFor('full');
  const { config: shared } = configFor('shared');
  for (const file of slow) {
    expect(ignored(fast, file)).toBe(true);
    expect(ignored(full, file)).toBe(false);
  }
  expect(ignored(fast, 'test/rope.test.ts')).toBe(false);
  expect(ignored(full, 'test/data-copies.shared.test.ts')).toBe(true);
  expect(ignored(fast, 'test/data-copies.shared.test.ts')).toBe(true);
  expect(ignored(shared, 'test/data-copies.shared.test.ts')).toBe(false);
  expect(new RegExp(shared.testRegex!).test('test/data-copies.shared.test.ts')).toBe(true);
  expect(new RegExp(shared.testRegex!).test('test/rope.test.ts')).toBe(false);
  expect(() => configFor('quick')).toThrow('HERD_TEST_TIER=quick: expected full, fast or shared');
});
