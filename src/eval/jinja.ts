/**
 * lm-eval's `utils.apply_template`: a jinja2 Environment with StrictUndefined and
 * keep_trailing_newline, rendering a task template against one document. Built on
 * @huggingface/jinja's lexer, parser and interpreter, with what lm-eval's templates need and the
 * package lacks: an undefined name is an error (not ""), `list.index(x)` works, and no
 * trim_blocks/lstrip_blocks (those are transformers' chat-template settings, not lm-eval's).
 */
import { Environment, Interpreter, parse, tokenize } from '@huggingface/jinja';

interface JinjaNode {
  type: string;
  [key: string]: unknown;
}
interface RuntimeValue {
  type: string;
  value: unknown;
}
interface JinjaEnvironment {
  set(name: string, value: unknown): RuntimeValue;
}
interface JinjaInterpreter {
  evaluate(node: JinjaNode | undefined, environment: JinjaEnvironment): RuntimeValue;
  run(program: JinjaNode): RuntimeValue;
}
const TypedEnvironment = Environment as new () => JinjaEnvironment;
const TypedInterpreter = Interpreter as new (environment: JinjaEnvironment) => JinjaInterpreter;
const tokenizeTemplate = tokenize as (source: string, options: object) => unknown[];
const parseTokens = parse as (tokens: unknown[]) => { body: JinjaNode[] } & JinjaNode;

/** A template referred to something the document does not have (jinja2's UndefinedError). */
export class UndefinedFieldError extends Error {}

/** Nodes that are statements or text, not a value: a template made of one of them is not `{{ expr }}`. */
const NON_EXPRESSIONS = new Set(['StringLiteral', 'If', 'For', 'Set', 'Macro', 'Comment', 'CallStatement', 'FilterStatement', 'Break', 'Continue']);

class StrictInterpreter extends TypedInterpreter {
  /** Inside `x is defined` or `x | default(...)` an undefined name is allowed, as in jinja2. */
  private lenient = 0;

  override evaluate(node: JinjaNode | undefined, environment: JinjaEnvironment): RuntimeValue {
    if (node?.type === 'TestExpression' || isDefaultFilter(node)) return this.leniently(() => super.evaluate(node, environment));
    const index = node?.type === 'CallExpression' ? this.listIndex(node, environment) : undefined;
    if (index !== undefined) return index;
    const value = super.evaluate(node, environment);
    if (value.type === 'UndefinedValue' && this.lenient === 0 && (node?.type === 'Identifier' || node?.type === 'MemberExpression')) {
      throw new UndefinedFieldError(`'${describe(node)}' is undefined`);
    }
    return value;
  }

  private leniently(run: () => RuntimeValue): RuntimeValue {
    this.lenient++;
    try {
      return run();
    } finally {
      this.lenient--;
    }
  }

  /** Python's `list.index(x)` (ARC's `choices.label.index(answerKey)`); undefined when the call is something else. */
  private listIndex(node: JinjaNode, environment: JinjaEnvironment): RuntimeValue | undefined {
    const callee = node.callee as JinjaNode;
    const property = callee.property as JinjaNode | undefined;
    if (callee.type !== 'MemberExpression' || callee.computed || property?.value !== 'index') return undefined;
    const list = this.evaluate(callee.object as JinjaNode, environment);
    if (!Array.isArray(list.value)) return undefined;
    const [argument] = (node.args as JinjaNode[]).map((arg) => toPlain(this.evaluate(arg, environment)));
    const position = (list.value as RuntimeValue[]).findIndex((item) => toPlain(item) === argument);
    if (position < 0) throw new Error(`${JSON.stringify(argument)} is not in list`);
    return new TypedEnvironment().set('value', position);
  }
}

function isDefaultFilter(node: JinjaNode | undefined): boolean {
  if (node?.type !== 'FilterExpression') return false;
  const filter = node.filter as JinjaNode;
  const name = filter.type === 'CallExpression' ? (filter.callee as JinjaNode) : filter;
  return name.value === 'default' || name.value === 'd';
}

function describe(node: JinjaNode): string {
  if (node.type === 'Identifier') return String(node.value);
  if (node.type === 'MemberExpression') {
    const property = node.property as JinjaNode;
    const key = node.computed ? `[${JSON.stringify(property.value)}]` : `.${String(property.value)}`;
    return describe(node.object as JinjaNode) + key;
  }
  return node.type;
}

/** Runtime values back to plain JavaScript (arrays and objects recursively). */
function toPlain(value: RuntimeValue): unknown {
  if (Array.isArray(value.value)) return (value.value as RuntimeValue[]).map(toPlain);
  if (value.value instanceof Map) return Object.fromEntries([...(value.value as Map<string, RuntimeValue>)].map(([k, v]) => [k, toPlain(v)]));
  if (value.type === 'UndefinedValue') return undefined;
  return value.value;
}

const programs = new Map<string, { body: JinjaNode[] } & JinjaNode>();

function compile(template: string): { body: JinjaNode[] } & JinjaNode {
  let program = programs.get(template);
  if (!program) {
    program = parseTokens(tokenizeTemplate(template, {}));
    programs.set(template, program);
  }
  return program;
}

function environmentFor(doc: Record<string, unknown>): JinjaEnvironment {
  const environment = new TypedEnvironment();
  for (const [name, value] of [['True', true], ['False', false], ['None', null], ['true', true], ['false', false], ['none', null]] as const) {
    environment.set(name, value);
  }
  for (const [name, value] of Object.entries(doc)) environment.set(name, value);
  return environment;
}

/** Renders a template to text, as lm-eval's apply_template (trailing newlines kept). */
export function renderTemplate(template: string, doc: Record<string, unknown>): string {
  // The package drops one trailing newline (jinja2's default); lm-eval keeps them.
  const body = template.replace(/\n+$/, '');
  const trailing = template.slice(body.length);
  const program = compile(body);
  return String(new StrictInterpreter(environmentFor(doc)).run(program).value) + trailing;
}

/**
 * The value of a template that is one `{{ expression }}` (a list stays a list, a number a
 * number), or undefined for any other template. lm-eval renders such templates to Python's repr
 * and reads them back with ast.literal_eval; taking the value directly gives the same result.
 */
export function templateValue(template: string, doc: Record<string, unknown>): { value: unknown } | undefined {
  const program = compile(template);
  if (program.body.length !== 1 || NON_EXPRESSIONS.has(program.body[0]!.type)) return undefined;
  const environment = environmentFor(doc);
  return { value: toPlain(new StrictInterpreter(environment).evaluate(program.body[0], environment)) };
}
