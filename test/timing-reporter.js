import path from 'node:path';

/**
 * Prints, before jest's summary, the slowest suites by jest's own per-file times and the tier's
 * wall time, so that CI logs show where the time goes and which suites belong in SLOW_SUITES
 * (jest.config.js). Plain JavaScript: jest loads reporters without transforming them.
 */
export default class TimingReporter {
  constructor(globalConfig, options) {
    this.rootDir = globalConfig.rootDir;
    this.tier = options.tier;
    this.slow = new Set(options.slowSuites);
    this.started = Date.now();
  }

  onRunStart() {
    this.started = Date.now();
  }

  onRunComplete(_contexts, results) {
    const suites = results.testResults
      .map((result) => ({ file: path.relative(this.rootDir, result.testFilePath), seconds: result.perfStats.runtime / 1000 }))
      .sort((a, b) => b.seconds - a.seconds);
    const out = [`\nSlowest suites (${this.tier} tier, jest's per-file times):`];
    for (const { file, seconds } of suites.slice(0, 12)) out.push(`  ${seconds.toFixed(1).padStart(6)} s  ${file}${this.slow.has(file) ? '  (slow tier)' : ''}`);
    const unlisted = suites.filter(({ file, seconds }) => seconds > 20 && !this.slow.has(file));
    if (unlisted.length > 0) {
      out.push(`Over 20 s and not in SLOW_SUITES (jest.config.js), so in the fast tier: ${unlisted.map(({ file }) => file).join(', ')}` +
        ' (on a loaded machine every suite is slower; judge by an idle run)');
    }
    const wall = (Date.now() - this.started) / 1000;
    out.push(`${this.tier} tier: ${suites.length} suite${suites.length === 1 ? '' : 's'} in ${wall.toFixed(1)} s`);
    if (this.tier !== 'shared') out.push('Not run here: the opt-in tier (npm run test:shared), which reads ../shared.');
    process.stderr.write(out.join('\n') + '\n');
  }
}
