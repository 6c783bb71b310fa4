import fs from 'node:fs';
import path from 'node:path';

/** Two DROP documents in the Hub's answers_spans layout (no DROP copy in the fixture data): a number answer and a two-span answer. */
export const DROP_DOCS = [
  {
    section_id: 'nfl_1',
    query_id: 'q1',
    passage: 'The Bears gained 1,000 yards in the season. Chaz Schilens and JaMarcus Russell each scored a touchdown.',
    question: 'How many yards did the Bears gain?',
    answers_spans: { spans: ['1000'], types: ['number'] },
  },
  {
    section_id: 'nfl_1',
    query_id: 'q2',
    passage: 'The Bears gained 1,000 yards in the season. Chaz Schilens and JaMarcus Russell each scored a touchdown.',
    question: 'Who scored a touchdown?',
    answers_spans: { spans: ['Chaz Schilens', 'JaMarcus Russell'], types: ['span', 'span'] },
  },
];

/** Writes <dir>/drop/validation.jsonl. */
export function writeDropData(dir: string): void {
  fs.mkdirSync(path.join(dir, 'drop'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'drop/validation.jsonl'), DROP_DOCS.map((doc) => JSON.stringify(doc)).join('\n') + '\n');
}
