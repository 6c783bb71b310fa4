// Writes oclif.manifest.json beside package.json from the built commands (dist/commands), as
// `oclif manifest` does. Without it oclif imports every command module at every start to learn
// their flags: each run of one command held all of them (tfjs, Prompt Guard, training: ~30 MB of
// RSS beside a model's weights) and paid their start-up time. Run by `npm run build` after tsc.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = path.join(root, 'oclif.manifest.json');
fs.rmSync(file, { force: true });
const config = await Config.load({ root, ignoreManifest: true });
const manifest = config.getPluginsList().find((plugin) => plugin.root === root)?.manifest;
if (!manifest || Object.keys(manifest.commands).length === 0) throw new Error('oclif found no commands in dist/commands: build them first');
const temporary = `${file}.${process.pid}.tmp`;
fs.writeFileSync(temporary, JSON.stringify(manifest));
fs.renameSync(temporary, file);
console.log(`oclif.manifest.json: ${Object.keys(manifest.commands).length} commands`);
