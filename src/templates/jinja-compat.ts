/**
 * Makes @huggingface/jinja 0.5.11 render chat templates as transformers' Python jinja2 environment
 * does, without touching the template text.
 *
 * The package's interpreter has no `select`/`reject` filters, so the official Llama 3.1 template
 * (`builtin_tools | reject('equalto', 'code_interpreter')`) fails as soon as `builtin_tools` is set.
 * A subclass of its public `Interpreter` answers those two filter expressions itself and leaves
 * every other node to the package. It also answers `tojson` itself, because the package writes a
 * float with an integral value as an integer (`391` where json.dumps writes `391.0`); floats reach
 * templates as floats when their JSON was read with parseJsonKeepingFloats (python-json.ts). Its
 * other differences that matter here (trim_blocks, lstrip_blocks) already match; the fixture tests
 * in test/chat-template.test.ts hold that.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { PythonFloat, pythonFloatRepr } from './python-json.js';
import { strftime } from './strftime.js';

/**
 * The package's declaration files import "./runtime" without an extension, which NodeNext cannot
 * resolve, so its classes type as `any`. These are the parts of them herd relies on.
 */
export interface JinjaNode {
  type: string;
}
interface RuntimeValue {
  type: string;
  value: unknown;
  __bool__(): { value: boolean };
}
interface JinjaEnvironment {
  variables: Map<string, RuntimeValue>;
  tests: ReadonlyMap<string, (...values: RuntimeValue[]) => boolean>;
  set(name: string, value: unknown): RuntimeValue;
}
interface JinjaInterpreter {
  evaluate(node: JinjaNode | undefined, environment: JinjaEnvironment): RuntimeValue;
  evaluateArguments(args: Statement[], environment: JinjaEnvironment): [RuntimeValue[], Map<string, RuntimeValue>];
  run(program: JinjaNode): RuntimeValue;
}
type Statement = JinjaNode | undefined;
const TypedEnvironment = Environment as new () => JinjaEnvironment;
const TypedInterpreter = Interpreter as new (environment: JinjaEnvironment) => JinjaInterpreter;

/** The AST node shapes read here. */
interface IdentifierNode {
  type: 'Identifier';
  value: string;
}
interface CallNode {
  type: 'CallExpression';
  callee: Statement;
  args: Statement[];
}
interface FilterExpressionNode {
  type: 'FilterExpression';
  operand: Statement;
  filter: IdentifierNode | CallNode;
}

/** What a template's `raise_exception(message)` throws: the template refused its input. */
export class TemplateRaisedError extends Error {}

/** Missing jinja2 filters, by name; `true` keeps the items that pass the test (`select`). */
const SELECTING_FILTERS: ReadonlyMap<string, boolean> = new Map([
  ['select', true],
  ['reject', false],
]);

class CompatInterpreter extends TypedInterpreter {
  override evaluate(statement: Statement, environment: JinjaEnvironment): RuntimeValue {
    if (statement?.type === 'FilterExpression') {
      const node = statement as unknown as FilterExpressionNode;
      const name = filterName(node);
      const keep = SELECTING_FILTERS.get(name);
      if (keep !== undefined) return this.selectItems(node, environment, keep);
      if (name === 'tojson') return this.toJson(node, environment);
    }
    return super.evaluate(statement, environment);
  }

  /** jinja2's `select`/`reject`: apply the named test (or truthiness) to each item. */
  private selectItems(node: FilterExpressionNode, environment: JinjaEnvironment, keep: boolean): RuntimeValue {
    const items = iterate(this.evaluate(node.operand, environment));
    const args = node.filter.type === 'CallExpression' ? node.filter.args.map((arg) => this.evaluateArgument(arg, environment)) : [];
    const [testName, ...testArgs] = args;
    const passes = testName === undefined ? (item: RuntimeValue) => item.__bool__().value : namedTest(environment, testName, testArgs);
    return runtimeList(items.filter((item) => passes(item) === keep));
  }

  /** transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
  private toJson(node: FilterExpressionNode, environment: JinjaEnvironment): RuntimeValue {
    const [args, kwargs] = node.filter.type === 'CallExpression' ? this.evaluateArguments(node.filter.args, environment) : [[], new Map<string, RuntimeValue>()];
    const option = (name: string, position: number) => (kwargs.get(name) ?? args[position])?.value ?? null;
    const indent = option('indent', 1) as number | string | null;
    const separators = option('separators', 2) as RuntimeValue[] | null;
    const [itemSeparator, keySeparator] = separators?.map((separator) => String(separator.value)) ?? [indent === null ? ', ' : ',', ': '];
    const options: DumpOptions = {
      indent: typeof indent === 'number' ? ' '.repeat(indent) : indent,
      itemSeparator: itemSeparator!,
      keySeparator: keySeparator!,
      ensureAscii: option('ensure_ascii', 0) === true,
      sortKeys: option('sort_keys', 3) === true,
    };
    return toRuntimeValue(pythonJsonDumps(this.evaluate(node.operand, environment), options, 0));
  }

  private evaluateArgument(arg: Statement, environment: JinjaEnvironment): RuntimeValue {
    if (arg?.type === 'KeywordArgumentExpression') throw new Error('select/reject take no keyword arguments');
    return this.evaluate(arg, environment);
  }
}

function filterName(node: FilterExpressionNode): string {
  const name = node.filter.type === 'CallExpression' ? node.filter.callee : node.filter;
  return name?.type === 'Identifier' ? (name as unknown as IdentifierNode).value : '';
}

function namedTest(environment: JinjaEnvironment, name: RuntimeValue, args: RuntimeValue[]): (item: RuntimeValue) => boolean {
  const test = typeof name.value === 'string' ? environment.tests.get(name.value) : undefined;
  if (!test) throw new Error(`no test named ${String(name.value)}`);
  return (item) => test(item, ...args);
}

/** Python iteration: a list's items, a string's characters, a mapping's keys. */
function iterate(value: RuntimeValue): RuntimeValue[] {
  if (Array.isArray(value.value)) return value.value as RuntimeValue[];
  if (typeof value.value === 'string') return Array.from(value.value, (char) => toRuntimeValue(char));
  if (value.value instanceof Map && value.type === 'ObjectValue') return [...value.value.keys()].map((key) => toRuntimeValue(key));
  throw new Error(`'${value.type}' object is not iterable`);
}

interface DumpOptions {
  /** null: all on one line. */
  indent: string | null;
  itemSeparator: string;
  keySeparator: string;
  ensureAscii: boolean;
  sortKeys: boolean;
}

/** Python's json.dumps over template values: floats in Python's repr (`391.0`), the rest as JSON. */
function pythonJsonDumps(value: RuntimeValue, options: DumpOptions, depth: number): string {
  switch (value.type) {
    case 'NullValue':
    case 'UndefinedValue':
      return 'null';
    case 'BooleanValue':
      return value.value ? 'true' : 'false';
    case 'IntegerValue':
      return String(value.value);
    case 'FloatValue':
      return pythonFloatRepr(value.value as number);
    case 'StringValue':
      return jsonString(value.value as string, options.ensureAscii);
    case 'ArrayValue':
    case 'TupleValue':
      return jsonContainer('[', ']', (value.value as RuntimeValue[]).map((item) => pythonJsonDumps(item, options, depth + 1)), options, depth);
    case 'ObjectValue': {
      const entries = [...(value.value as Map<string, RuntimeValue>).entries()];
      if (options.sortKeys) entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const members = entries.map(([key, item]) => `${jsonString(key, options.ensureAscii)}${options.keySeparator}${pythonJsonDumps(item, options, depth + 1)}`);
      return jsonContainer('{', '}', members, options, depth);
    }
    default:
      throw new Error(`Object of type ${value.type} is not JSON serializable`);
  }
}

function jsonContainer(open: string, close: string, members: string[], options: DumpOptions, depth: number): string {
  if (members.length === 0) return `${open}${close}`;
  if (options.indent === null) return `${open}${members.join(options.itemSeparator)}${close}`;
  const inner = `\n${options.indent.repeat(depth + 1)}`;
  return `${open}${inner}${members.join(`${options.itemSeparator}${inner}`)}\n${options.indent.repeat(depth)}${close}`;
}

/** JSON.stringify escapes what json.dumps does (quote, backslash, control characters, lowercase hex). */
function jsonString(text: string, ensureAscii: boolean): string {
  const json = JSON.stringify(text);
  return ensureAscii ? json.replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`) : json;
}

/** The package exports no value classes; an Environment converts plain values into them. */
function toRuntimeValue(value: unknown): RuntimeValue {
  return new TypedEnvironment().set('value', value);
}

function runtimeList(items: RuntimeValue[]): RuntimeValue {
  const list = toRuntimeValue([]);
  (list.value as RuntimeValue[]).push(...items);
  return list;
}

/**
 * The globals transformers' environment offers. The package declares the same set in a
 * `setupGlobals` it does not export, so they are declared here; `raise_exception` throws a
 * recognisable error and `strftime_now` formats like Python's C locale (English month names,
 * whatever the host's locale).
 */
function declareGlobals(environment: JinjaEnvironment): void {
  for (const [name, value] of [['true', true], ['false', false], ['none', null], ['True', true], ['False', false], ['None', null]] as const) {
    environment.set(name, value);
  }
  environment.set('raise_exception', (message: unknown) => {
    throw new TemplateRaisedError(String(message));
  });
  environment.set('strftime_now', (format: string) => strftime(new Date(), format));
  environment.set('range', pythonRange);
}

function pythonRange(first: number, stop?: number, step = 1): number[] {
  const [from, to] = stop === undefined ? [0, first] : [first, stop];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const values: number[] = [];
  for (let value = from; step > 0 ? value < to : value > to; value += step) values.push(value);
  return values;
}

/**
 * Parses a template with the lexer set up as transformers sets up jinja2 (trim_blocks,
 * lstrip_blocks, which Template applies); jinja2 also reads \r\n and \r as \n, the package not.
 */
export function parseTemplate(template: string): JinjaNode {
  return new Template(template.replace(/\r\n?/g, '\n')).parsed as JinjaNode;
}

/** Renders a parsed template with the given variables under the compatibility interpreter. */
export function renderProgram(program: JinjaNode, variables: Record<string, unknown>): string {
  const environment = new TypedEnvironment();
  declareGlobals(environment);
  for (const [name, value] of Object.entries(variables)) {
    // A caller's variable replaces a global of the same name, as a render() keyword does in jinja2.
    environment.variables.delete(name);
    environment.variables.set(name, templateValue(value));
  }
  return String(new CompatInterpreter(environment).run(program).value);
}

/** A plain value as the template sees it, with each PythonFloat a float even when its value is integral. */
function templateValue(value: unknown): RuntimeValue {
  if (value instanceof PythonFloat) return floatValue(value.value);
  if (Array.isArray(value)) return runtimeList(value.map(templateValue));
  if (typeof value === 'object' && value !== null) {
    const object = toRuntimeValue({});
    for (const [key, item] of Object.entries(value)) (object.value as Map<string, RuntimeValue>).set(key, templateValue(item));
    return object;
  }
  return toRuntimeValue(value);
}

/** The package makes a float only of a number with a fraction; its class is taken from one. */
const FloatValue = toRuntimeValue(0.5).constructor as new (value: number) => RuntimeValue;

function floatValue(value: number): RuntimeValue {
  return new FloatValue(value);
}
