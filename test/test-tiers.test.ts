import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

interface JestConfig {
  testPathIgnorePatterns: string[];
  testMatch?: string[];
  testRegex?: string;
}

/** jest.config.js as a tier sees it (the config reads HERD_TEST_TIER when it is imported). */
async function configFor(tier: string): Promise<{ config: JestConfig; slow: string[] }> {
  const saved = process.env.HERD_TEST_TIER;
  process.env.HERD_TEST_TIER = tier;
  try {
    // A query string makes each import evaluate the file again.
    const module = (await import(`${pathToFileURL(path.resolve('jest.config.js')).href}?tier=${tier}`)) as { default: JestConfig; SLOW_SUITES: string[] };
    return { config: module.default, slow: module.SLOW_SUITES };
  } finally {
    if (saved === undefined) delete process.env.HERD_TEST_TIER;
    else process.env.HERD_TEST_TIER = saved;
  }
}

const ignored = (config: JestConfig, file: string) => config.testPathIgnorePatterns.some((pattern) => new RegExp(pattern).test(path.resolve(file)));

test('every suite listed as slow exists, so a renamed one cannot slip into the fast tier unnoticed', async () => {
  const { slow } = await configFor('full');
  expect(slow.length).toBeGreaterThan(0);
  for (const file of slow) expect(fs.existsSync(file) ? file : `${file} (missing)`).toBe(file);
});

test('the fast tier leaves out the slow suites, the full tier only the opt-in ones, the shared tier runs only those', async () => {
  const { config: fast, slow } = await configFor('fast');
  const { config: full } = await configFor('full');
  const { config: shared } = await configFor('shared');
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
  await expect(configFor('quick')).rejects.toThrow('HERD_TEST_TIER=quick: expected full, fast or shared');
});
