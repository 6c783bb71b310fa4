import { PassThrough } from 'node:stream';
import { downloadProgress } from '../src/cli/download-progress.js';
import type { RepoFile } from '../src/hub/select-files.js';

// The download display: one combined bar at a terminal (bytes, rate, ETA), plain lines elsewhere,
// nothing under HF_HUB_DISABLE_PROGRESS_BARS.

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; written: () => string } {
  const chunks: string[] = [];
  const stream = Object.assign(new PassThrough(), { isTTY, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  return { stream: stream as unknown as NodeJS.WriteStream, written: () => chunks.join('') };
}

const file = (filePath: string, size: number): RepoFile => ({ path: filePath, size, gitSha1: '0'.repeat(40) });

test('at a terminal: one bar for all files, with bytes done of the total, the rate and the ETA', async () => {
  const { stream, written } = fakeStream(true);
  const progress = downloadProgress({}, stream)!;
  progress.start({ label: 'org/model@abcdef0', files: 2, totalBytes: 4096, resumedBytes: 1024 });
  progress.advance(1024);
  progress.fileDone(file('a.json', 2048));
  progress.stop();
  await new Promise((resolve) => setImmediate(resolve));
  expect(written()).toMatch(/org\/model@abcdef0 \[[^\]]+\] 50% \| 2\.0 KiB\/4\.0 KiB \| .+\/s \| ETA \S+/);
  expect(written()).not.toContain('a.json');
});

test('in a pipe: plain lines, the resumed bytes said once and left out of the rate', async () => {
  const { stream, written } = fakeStream(false);
  const progress = downloadProgress({}, stream)!;
  progress.start({ label: 'org/model@abcdef0', files: 2, totalBytes: 4096, resumedBytes: 1024 });
  progress.advance(3072);
  progress.fileDone(file('model.safetensors', 3072));
  progress.waiting(file('b.json', 1024));
  progress.stop();
  await new Promise((resolve) => setImmediate(resolve));
  const lines = written().trimEnd().split('\n');
  expect(lines.slice(0, 3)).toEqual([
    'downloading org/model@abcdef0: 2 files, 4.0 KiB, resuming with 1.0 KiB already here',
    '  model.safetensors (3.0 KiB)',
    '  b.json: another herd process is downloading it; waiting',
  ]);
  expect(lines[3]).toMatch(/^downloaded 3\.0 KiB in \d+\.\d s \(.+\/s\)$/);
});

test('HF_HUB_DISABLE_PROGRESS_BARS shows nothing', () => {
  expect(downloadProgress({ HF_HUB_DISABLE_PROGRESS_BARS: '1' }, fakeStream(true).stream)).toBeUndefined();
});
