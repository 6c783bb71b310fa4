/**
 * DROP's answer sets and metrics as lm-eval's tasks/drop/utils.py has them (itself a copy of the
 * official DROP evaluation script): answers normalized token by token (lower case, punctuation and
 * articles out, numbers as Python floats), tokens split on spaces and hyphens, each span a bag of
 * words, predicted and gold spans paired by an optimal assignment, F1 averaged over the pairs and
 * rounded to 2 decimals, exact match on the normalized span sets, the maximum over gold answers.
 */
import { linearSumAssignment } from './assignment.js';
import { PUNCTUATION } from './metrics.js';

/** One gold answer: its spans (one for a number or a date, several for a multi-span answer). */
export type DropAnswer = readonly string[];

/** Python's `float(text)` accepts this (underscores between digits, inf/nan, surrounding whitespace). */
const DIGITS = String.raw`\d(?:_?\d)*`;
const EXPONENT = String.raw`[eE][+-]?${DIGITS}`;
const PYTHON_FLOAT = new RegExp(String.raw`^\s*[+-]?(?:(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:${EXPONENT})?|inf(?:inity)?|nan)\s*$`, 'i');

function isNumber(text: string): boolean {
  return PYTHON_FLOAT.test(text);
}

/** Python's `str(float(text))`: repr of the nearest double ("1000.0", "0.5", "1e+16", "inf"). */
export function pythonFloatString(text: string): string {
  const cleaned = text.trim().replaceAll('_', '').toLowerCase();
  const value = /^[+-]?(inf|infinity)$/.test(cleaned) ? (cleaned.startsWith('-') ? -Infinity : Infinity) : /nan$/.test(cleaned) ? Number.NaN : Number(cleaned);
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  // Shortest round-trip digits, as both JavaScript and Python's repr produce them.
  const [mantissa, exponentText] = value.toExponential().split('e') as [string, string];
  const exponent = Number(exponentText);
  if (exponent < -4 || exponent >= 16) return `${mantissa}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  const fixed = value.toFixed(Math.max(0, (mantissa.split('.')[1]?.length ?? 0) - exponent));
  return fixed.includes('.') ? fixed : `${fixed}.0`;
}

/** Python's `\b(a|an|the)\b` with re.UNICODE: word characters are letters, digits and "_". */
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

function normalizeToken(token: string): string {
  const lowered = token.toLowerCase();
  const noPunctuation = isNumber(lowered) ? lowered : [...lowered].filter((char) => !PUNCTUATION.has(char)).join('');
  const number = isNumber(noPunctuation) ? pythonFloatString(noPunctuation) : noPunctuation;
  return number.replace(ARTICLES, ' ').split(/\s+/).filter(Boolean).join(' ');
}

/** `_normalize`: tokens split on " " and "-", each normalized, empty ones dropped. */
export function normalizeDropAnswer(answer: string): string {
  return answer
    .split(/ |-/)
    .map(normalizeToken)
    .filter((token) => token.trim() !== '')
    .join(' ')
    .trim();
}

function answerToBags(spans: readonly string[]): { normalized: string[]; bags: Set<string>[] } {
  const normalized = spans.map(normalizeDropAnswer);
  return { normalized, bags: normalized.map((span) => new Set(span.split(/\s+/).filter(Boolean))) };
}

function bagF1(predicted: Set<string>, gold: Set<string>): number {
  const intersection = [...gold].filter((token) => predicted.has(token)).length;
  const precision = predicted.size === 0 ? 1 : intersection / predicted.size;
  const recall = gold.size === 0 ? 1 : intersection / gold.size;
  return precision === 0 && recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
}

/** A gold span with numbers is only credited to a predicted span sharing one of them. */
function numbersMatch(gold: Set<string>, predicted: Set<string>): boolean {
  const goldNumbers = [...gold].filter(isNumber);
  return goldNumbers.length === 0 || goldNumbers.some((number) => predicted.has(number));
}

/** `_align_bags`: optimal 1-1 pairing of spans, one best score per max(gold index, predicted index) slot. */
function alignBags(predicted: Set<string>[], gold: Set<string>[]): number[] {
  const scores = gold.map((goldBag) => predicted.map((predictedBag) => (numbersMatch(goldBag, predictedBag) ? bagF1(predictedBag, goldBag) : 0)));
  const { rows, columns } = linearSumAssignment(scores.map((row) => row.map((score) => -score)));
  const best = new Array<number>(Math.max(gold.length, predicted.length)).fill(0);
  rows.forEach((row, k) => {
    const slot = Math.max(row, columns[k]!);
    best[slot] = Math.max(best[slot]!, scores[row]![columns[k]!]!);
  });
  return best;
}

/** Python's round(x, 2) for x ≥ 0: the nearest of the exact decimal value, ties to even. */
function roundTwoDecimals(value: number): number {
  const scaled = value * 100;
  // An exact tie needs a binary fraction ending in …5 at the third decimal (k/8): then round half to even.
  if (Number.isInteger(value * 8) && scaled % 1 === 0.5) {
    const floor = Math.floor(scaled);
    return (floor % 2 === 0 ? floor : floor + 1) / 100;
  }
  return Number(value.toFixed(2));
}

/** `get_metrics`: exact match and F1 of predicted spans against one gold answer. */
export function dropMetrics(predicted: readonly string[], gold: DropAnswer): { em: number; f1: number } {
  const predictedBags = answerToBags(predicted);
  const goldBags = answerToBags(gold);
  const samePredicted = new Set(predictedBags.normalized);
  const sameGold = new Set(goldBags.normalized);
  const em = samePredicted.size === sameGold.size && [...samePredicted].every((span) => sameGold.has(span)) && predictedBags.normalized.length === goldBags.normalized.length ? 1 : 0;
  const perSlot = alignBags(predictedBags.bags, goldBags.bags);
  const f1 = roundTwoDecimals(perSlot.reduce((sum, score) => sum + score, 0) / perSlot.length);
  return { em, f1 };
}

/** `process_results`: the response is one predicted span; the best em and f1 over gold answers whose first span is not blank. */
export function dropProcessResults(response: string, answers: readonly DropAnswer[]): { em: number; f1: number } {
  let em = 0;
  let f1 = 0;
  for (const gold of answers) {
    if ((gold[0] ?? '').trim() === '') continue;
    const scores = dropMetrics([response], gold);
    em = Math.max(em, scores.em);
    f1 = Math.max(f1, scores.f1);
  }
  return { em, f1 };
}

interface DropRawAnswer {
  number: string;
  date: { day: string; month: string; year: string };
  spans: string[];
}

/** `parse_answer`: a number, else the spans, else the date "day month year". */
function parseAnswer(answer: DropRawAnswer): string[] {
  if (answer.number !== '') return [String(answer.number)];
  if (answer.spans.length > 0) return [...answer.spans];
  return [[answer.date.day, answer.date.month, answer.date.year].join(' ').trim()];
}

/**
 * The gold answers of a document, deduplicated in order. lm-eval's layout (EleutherAI/drop:
 * `answer` and `validated_answers` of {number, date, spans}) gives the main answer then the
 * validated ones; the Hub's `answers_spans` {spans, types} layout holds one answer, whose spans
 * are all required (a multi-span answer).
 */
export function dropAnswers(doc: Record<string, unknown>): string[][] {
  const candidates: string[][] = [];
  if (doc.answer !== undefined) {
    candidates.push(parseAnswer(doc.answer as DropRawAnswer));
    const validated = doc.validated_answers as { number: string[]; date: DropRawAnswer['date'][]; spans: string[][] } | undefined;
    validated?.number.forEach((number, i) => candidates.push(parseAnswer({ number, date: validated.date[i]!, spans: validated.spans[i]! })));
  } else {
    const spans = (doc.answers_spans as { spans?: unknown } | undefined)?.spans;
    if (!Array.isArray(spans)) throw new Error('needs "answer" (EleutherAI/drop) or "answers_spans.spans" (a list of strings)');
    candidates.push(spans.map(String));
  }
  const seen = new Set<string>();
  return candidates.filter((answer) => {
    const key = JSON.stringify(answer);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
