import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';
import { loadOclifConfig } from '../src/cli/oclif-config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe("herd's oclif config, loaded without ICU's collator", () => {
  test("lists the commands in the order oclif's localeCompare sort gives, and puts localeCompare back", async () => {
    const localeCompare = String.prototype.localeCompare;
    const lean = await loadOclifConfig(ROOT);
    expect(String.prototype.localeCompare).toBe(localeCompare);
    const reference = await Config.load(ROOT);
    const ids = (config: Config) => config.commands.map((command) => command.id);
    expect(ids(lean).length).toBeGreaterThan(10);
    expect(ids(lean)).toEqual(ids(reference));
    expect(lean.topics.map((topic) => topic.name)).toEqual(reference.topics.map((topic) => topic.name));
    // Every id is what makes code-unit order agree with the collator's: lowercase letters, digits, dashes and colons.
    expect(ids(reference).filter((id) => !/^[a-z0-9:-]+$/.test(id))).toEqual([]);
  });
});
