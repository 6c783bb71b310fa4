/**
 * The one time limit the tests have: a hang guard, not a speed requirement. A loaded or slow
 * machine may take many times longer than an idle one, so no test, hook or child process gets a
 * shorter limit (test/test-timeouts.test.ts checks that); jest.config.js's testTimeout is this
 * value. spawnSync blocks the event loop, so jest's own timer cannot stop a hung child: children
 * get this as their `timeout`.
 */
export const HANG_GUARD_MS = 15 * 60 * 1000;
