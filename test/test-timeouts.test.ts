import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { HANG_GUARD_MS } from './hang-guard.js';

/**
 * Tests must hold on a loaded machine: the only time limit is the hang guard (test/hang-guard.ts).
 * This scans every test source for a shorter one: jest.setTimeout(N), a numeric last argument of
 * test/it/hooks, and `timeout`/`timeoutMs` properties (spawn options, tool settings). A line that
 * tests timeout behaviour itself carries the comment `timeout under test`.
 */

const JEST_CALLS = new Set(['test', 'it', 'beforeAll', 'afterAll', 'beforeEach', 'afterEach']);
const TIMEOUT_KEYS = new Set(['timeout', 'timeoutMs']);
const MARKER = 'timeout under test';

/** The value in ms of a numeric expression (literals, `*`, `+`, HANG_GUARD_MS), or null when it is not one. */
function evaluate(node: ts.Expression): number | null {
  if (ts.isNumericLiteral(node)) return Number(node.text);
  if (ts.isParenthesizedExpression(node)) return evaluate(node.expression);
  if (ts.isIdentifier(node) && node.text === 'HANG_GUARD_MS') return HANG_GUARD_MS;
  if (ts.isBinaryExpression(node)) {
    const [left, right] = [evaluate(node.left), evaluate(node.right)];
    if (left === null || right === null) return null;
    if (node.operatorToken.kind === ts.SyntaxKind.AsteriskToken) return left * right;
    if (node.operatorToken.kind === ts.SyntaxKind.PlusToken) return left + right;
  }
  return null;
}

/** test, it.only, test.each(...), describe.skip... down to the base name. */
function calleeName(node: ts.Expression): string | null {
  if (ts.isIdentifier(node)) return node.text;
  if (ts.isPropertyAccessExpression(node)) return calleeName(node.expression);
  if (ts.isCallExpression(node)) return calleeName(node.expression);
  return null;
}

/** Every time limit in `source` below the hang guard, as "file:line: what". */
export function shortTimeouts(file: string, source: string): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true, file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const lines = source.split('\n');
  const found: string[] = [];
  const report = (node: ts.Node, what: string, value: ts.Expression) => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
    if (lines[line]!.includes(MARKER)) return;
    const ms = evaluate(value);
    if (ms === null || ms < HANG_GUARD_MS) found.push(`${file}:${line + 1}: ${what} ${ms === null ? `${value.getText(sf)} (not a number this check can read)` : `${ms} ms`}, below the ${HANG_GUARD_MS} ms hang guard`);
  };
  const visit = (node: ts.Node) => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'setTimeout' && ts.isIdentifier(callee.expression) && callee.expression.text === 'jest' && node.arguments[0]) {
        report(node, 'jest.setTimeout', node.arguments[0]);
      }
      const name = calleeName(callee);
      if (name !== null && JEST_CALLS.has(name)) {
        // test(name, fn, timeout) and beforeAll(fn, timeout): a number after the function.
        const fnIndex = node.arguments.findIndex((arg) => ts.isArrowFunction(arg) || ts.isFunctionExpression(arg));
        const timeout = fnIndex >= 0 ? node.arguments[fnIndex + 1] : undefined;
        if (timeout) report(timeout, `${name}() timeout`, timeout);
      }
    }
    if (ts.isPropertyAssignment(node) && (ts.isIdentifier(node.name) || ts.isStringLiteral(node.name)) && TIMEOUT_KEYS.has(node.name.text)) {
      report(node, `${node.name.text}:`, node.initializer);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function testSources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'fixtures' ? [] : testSources(file);
    return /\.tsx?$/.test(entry.name) ? [file] : [];
  });
}

test('jest.config.js has one hang guard of at most 15 minutes, the one the tests use', async () => {
  const config = ((await import(pathToFileURL(path.resolve('jest.config.js')).href)) as { default: { testTimeout: number } }).default;
  expect(config.testTimeout).toBe(HANG_GUARD_MS);
  expect(HANG_GUARD_MS).toBeLessThanOrEqual(15 * 60 * 1000);
});

test('no test file sets a time limit below the hang guard', () => {
  const root = path.resolve('test');
  const files = testSources(root);
  expect(files.length).toBeGreaterThan(40);
  const found = files.flatMap((file) => shortTimeouts(path.relative(process.cwd(), file), fs.readFileSync(file, 'utf8')));
  expect(found).toEqual([]);
});

test('the check finds each kind of short time limit, and passes sums and generous ones', () => {
  const sample = [
    "jest.setTimeout(120000);",
    "test('slow', async () => {}, 60_000);",
    "it.each([1])('x %s', () => {}, 5000);",
    "beforeAll(async () => {}, 30 * 1000);",
    "spawnSync(node, args, { encoding: 'utf8', timeout: 60000 });",
    "new ToolBox([], [], { timeoutMs: 10_000 });",
    "execFile(bin, args, { timeout: limit });",
    "new ToolBox([], [], { timeoutMs: 300 }); // timeout under test",
    "spawnSync(node, args, { timeout: HANG_GUARD_MS });",
    "test('fine', () => {}, 20 * 60 * 1000);",
    "const sum = values.reduce((a, b) => { return a + b; }, 0);",
  ].join('\n');
  const found = shortTimeouts('sample.ts', sample);
  expect(found.map((line) => line.split(':')[1])).toEqual(['1', '2', '3', '4', '5', '6', '7']);
  expect(found[6]).toContain('limit (not a number this check can read)');
});
