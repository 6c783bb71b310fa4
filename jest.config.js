/** Jest in ESM mode through ts-jest; type checking is done once by `tsc` in `npm test`. */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts', '**/*.test.tsx'],
  extensionsToTreatAsEsm: ['.ts', '.tsx'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { useESM: true }],
  },
  // The hang guard (test/hang-guard.ts), not a speed limit: a loaded machine may be many times
  // slower than an idle one. test/test-timeouts.test.ts keeps the two equal.
  testTimeout: 15 * 60 * 1000,
};
