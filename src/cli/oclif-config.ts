import { Config } from '@oclif/core';

/**
 * herd's oclif configuration, loaded with the commands sorted by plain code-unit order. oclif's
 * Plugin.load sorts a plugin's commands with `localeCompare`, the first use of which builds ICU's
 * collator: 2.8 MiB of RSS for the rest of every herd run (docs/performance.md, "Peak RSS of a
 * native load"), for ids of lowercase ASCII letters and colons that code-unit order sorts the same
 * way (test/oclif-config.test.ts). `localeCompare` is the plain comparison only while the config
 * loads, when nothing else runs; `execute({ loadOptions })` then reuses the loaded plugins.
 */
export async function loadOclifConfig(root: string): Promise<Config> {
  const localeCompare = String.prototype.localeCompare;
  String.prototype.localeCompare = function (this: string, that: string): number {
    const self = String(this);
    return self < that ? -1 : self > that ? 1 : 0;
  };
  try {
    return await Config.load(root);
  } finally {
    String.prototype.localeCompare = localeCompare;
  }
}
