/**
 * JSON as Python reads and writes it, where that differs from JavaScript in what a chat template
 * prints: Python's json.loads keeps `391.0` a float, and json.dumps writes it back as `391.0`;
 * JSON.parse makes it the number 391, which prints as `391`. Values read here keep each float
 * lexeme as a PythonFloat, which templates receive as a float (jinja-compat.ts).
 */

/** A JSON number written as a float (with a fraction or an exponent). */
export class PythonFloat {
  constructor(readonly value: number) {}
}

/** Strings, numbers, the three literals and punctuation, in JSON's grammar (the text is checked by JSON.parse first). */
const JSON_TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|[{}[\]:,]/gy;
const WHITESPACE = /[ \t\n\r]*/y;

/** JSON.parse (and its SyntaxError), except that numbers written as floats become PythonFloat. */
export function parseJsonKeepingFloats(text: string): unknown {
  JSON.parse(text);
  return new FloatKeepingParser(text).value();
}

class FloatKeepingParser {
  private position = 0;

  constructor(private readonly text: string) {}

  value(): unknown {
    const token = this.next();
    if (token[0] === '{') return this.object();
    if (token[0] === '[') return this.array();
    if (token[1] !== undefined || token[2] !== undefined) return new PythonFloat(Number(token[0]));
    return JSON.parse(token[0]);
  }

  private object(): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    if (this.peek() === '}') return this.skip(object);
    for (;;) {
      const key = JSON.parse(this.next()[0]) as string;
      this.next(); // ':'
      object[key] = this.value();
      if (this.next()[0] === '}') return object;
    }
  }

  private array(): unknown[] {
    const array: unknown[] = [];
    if (this.peek() === ']') return this.skip(array);
    for (;;) {
      array.push(this.value());
      if (this.next()[0] === ']') return array;
    }
  }

  private next(): RegExpExecArray {
    WHITESPACE.lastIndex = this.position;
    WHITESPACE.exec(this.text);
    JSON_TOKEN.lastIndex = WHITESPACE.lastIndex;
    const token = JSON_TOKEN.exec(this.text)!;
    this.position = JSON_TOKEN.lastIndex;
    return token;
  }

  private peek(): string {
    WHITESPACE.lastIndex = this.position;
    WHITESPACE.exec(this.text);
    return this.text[WHITESPACE.lastIndex] ?? '';
  }

  private skip<T>(result: T): T {
    this.next();
    return result;
  }
}

/**
 * Python's float repr, as json.dumps writes floats: the shortest digits that read back to the same
 * double (JavaScript finds the same ones), in fixed notation with at least one decimal while the
 * decimal point falls within 16 digits of the first, else as d.ddde±XX.
 */
export function pythonFloatRepr(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const sign = value < 0 ? '-' : '';
  const [mantissa, exponentText] = Math.abs(value).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const exponent = Number(exponentText);
  // Python's decpt: the value is 0.DIGITS × 10^decimalPoint.
  const decimalPoint = exponent + 1;
  if (decimalPoint > 16 || decimalPoint <= -4) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : '';
    return `${sign}${digits[0]}${fraction}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  if (decimalPoint <= 0) return `${sign}0.${'0'.repeat(-decimalPoint)}${digits}`;
  if (decimalPoint >= digits.length) return `${sign}${digits}${'0'.repeat(decimalPoint - digits.length)}.0`;
  return `${sign}${digits.slice(0, decimalPoint)}.${digits.slice(decimalPoint)}`;
}
