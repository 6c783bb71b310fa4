import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openFile, resolveRevision } from '../src/hub/api.js';
import { HubClient, retryAfterMs } from '../src/hub/http.js';
import { hubSettings } from '../src/hub/settings.js';
import { STORIES } from './fixtures.js';
import { fakeHubSuite, filesOf, type FakeHub } from './fake-hub.js';
import { sha256 } from './hub-cache-layout.js';

// The Hub settings read from the environment as huggingface_hub reads them, and the client's
// answers to what the Hub says about one file.

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-hub-client-'));
let hub: FakeHub;
fakeHubSuite(work, (started) => {
  hub = started;
  hub.addRepo('karpathy/stories', filesOf(STORIES, { skip: ['reference.json'] }));
});

describe('hubSettings', () => {
  test('HF_TOKEN wins over the token file, which is HF_TOKEN_PATH or HF_HOME/token', () => {
    const home = path.join(work, 'hf-home');
    fs.mkdirSync(home, { recursive: true });
    fs.writeFileSync(path.join(home, 'token'), 'hf_from_home\n');
    fs.writeFileSync(path.join(work, 'elsewhere'), 'hf_from_path');
    expect(hubSettings({ HF_HOME: home }).token).toBe('hf_from_home');
    expect(hubSettings({ HF_HOME: home, HF_TOKEN_PATH: path.join(work, 'elsewhere') }).token).toBe('hf_from_path');
    expect(hubSettings({ HF_HOME: home, HF_TOKEN: 'hf_from_env' }).token).toBe('hf_from_env');
    expect(hubSettings({ HF_HOME: path.join(work, 'no-such-home') }).token).toBeUndefined();
  });

  test('HF_ENDPOINT without its trailing slash, huggingface.co by default; the true values of HF_HUB_OFFLINE', () => {
    expect(hubSettings({}).endpoint).toBe('https://huggingface.co');
    expect(hubSettings({ HF_ENDPOINT: 'https://mirror.example/' }).endpoint).toBe('https://mirror.example');
    for (const value of ['1', 'true', 'YES', 'on']) expect(hubSettings({ HF_HUB_OFFLINE: value }).offline).toBe(true);
    for (const value of ['0', 'false', '', 'no']) expect(hubSettings({ HF_HUB_OFFLINE: value }).offline).toBe(false);
    expect(hubSettings({ HF_HUB_DOWNLOAD_TIMEOUT: '2.5' }).downloadTimeoutMs).toBe(2500);
    expect(hubSettings({}).downloadTimeoutMs).toBe(10_000);
  });
});

test('Retry-After is delay-seconds or an HTTP date', () => {
  expect(retryAfterMs('7')).toBe(7000);
  expect(retryAfterMs(null)).toBeUndefined();
  // A date past is no wait; one an hour ahead is about an hour (whatever the machine's speed, well over 50 minutes).
  expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT')).toBe(0);
  const wait = retryAfterMs(new Date(Date.now() + 3_600_000).toUTCString())!;
  expect(wait).toBeGreaterThan(3_000_000);
  expect(wait).toBeLessThanOrEqual(3_600_000);
});

describe('one file through /resolve', () => {
  const client = () => new HubClient(hubSettings({ HF_ENDPOINT: hub.endpoint, HF_TOKEN: 'hf_reader' }), { env: {} });

  test('an LFS file: the redirect\'s X-Linked-Etag, X-Linked-Size and X-Repo-Commit, the bytes from the CDN', async () => {
    const commit = await resolveRevision(client(), 'karpathy/stories', 'main');
    const weights = fs.readFileSync(path.join(STORIES, 'model.safetensors'));
    const body = await openFile(client(), 'karpathy/stories', commit, 'model.safetensors', 1000);
    expect(body.response.status).toBe(206);
    expect(body.commit).toBe(commit);
    expect(body.size).toBe(weights.length);
    expect(body.etag).toBe(sha256(weights));
    // The token went to the Hub, not with the redirect to the CDN.
    expect(hub.fileRequests().map((r) => [r.origin, r.authorization])).toEqual([['hub', 'Bearer hf_reader'], ['cdn', undefined]]);
    expect(Buffer.from(await body.response.arrayBuffer()).equals(weights.subarray(1000))).toBe(true);
  });

  test('a file the commit does not have is one line (EntryNotFound)', async () => {
    const commit = hub.repos.get('karpathy/stories')!.refs.main!;
    await expect(openFile(client(), 'karpathy/stories', commit, 'absent.bin', 0)).rejects.toThrow(`karpathy/stories@${commit} has no file absent.bin`);
  });
});
