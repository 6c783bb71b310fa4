/**
 * CPython's `random.Random`, reproduced from its C and Python sources: the MT19937 Mersenne
 * Twister seeded by `init_by_array` with the integer seed's 32-bit words, `random()` from two
 * draws (53 bits), `_randbelow` by rejection over `getrandbits`, and `sample`/`choices` with the
 * same draws in the same order. lm-eval picks few-shot documents with `random.Random(1234).sample`
 * and bootstraps with `Random(i).choices`, so herd picks the same documents and resamples.
 */
const N = 624;
const M = 397;

export class PythonRandom {
  private readonly state = new Uint32Array(N);
  private index = N + 1;

  constructor(seed: number) {
    this.seed(seed);
  }

  /** `random.seed(n)` for an int n: the key is |n| split into 32-bit words, least significant first. */
  seed(seed: number): void {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed ${seed} is not a safe integer`);
    let rest = Math.abs(seed);
    const key: number[] = [];
    do {
      key.push(rest % 2 ** 32);
      rest = Math.floor(rest / 2 ** 32);
    } while (rest > 0);
    this.initByArray(key);
  }

  /** A float in [0, 1) with 53 random bits, as `random.random()`. */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** `getrandbits(k)` for 1 ≤ k ≤ 32. */
  getrandbits(bits: number): number {
    if (bits < 1 || bits > 32) throw new RangeError('getrandbits supports 1 to 32 bits here');
    return this.nextUint32() >>> (32 - bits);
  }

  /** `_randbelow_with_getrandbits(n)`: uniform in [0, n), drawing bit_length(n) bits until below n. */
  randbelow(n: number): number {
    if (n <= 0) return 0;
    const bits = 32 - Math.clz32(n);
    let value = this.getrandbits(bits);
    while (value >= n) value = this.getrandbits(bits);
    return value;
  }

  /** `random.sample(population, k)`: k distinct items, in selection order. */
  sample<T>(population: readonly T[], k: number): T[] {
    const n = population.length;
    if (k < 0 || k > n) throw new RangeError(`sample larger than population (${k} > ${n})`);
    let setsize = 21;
    if (k > 5) setsize += 4 ** Math.ceil(Math.log(k * 3) / Math.log(4));
    const result: T[] = [];
    if (n <= setsize) {
      const pool = [...population];
      for (let i = 0; i < k; i++) {
        const j = this.randbelow(n - i);
        result.push(pool[j]!);
        pool[j] = pool[n - i - 1]!;
      }
      return result;
    }
    const selected = new Set<number>();
    for (let i = 0; i < k; i++) {
      let j = this.randbelow(n);
      while (selected.has(j)) j = this.randbelow(n);
      selected.add(j);
      result.push(population[j]!);
    }
    return result;
  }

  /** `random.choices(population, k=k)` without weights: `floor(random() * n)` per draw. */
  choices<T>(population: readonly T[], k: number): T[] {
    const n = population.length;
    return Array.from({ length: k }, () => population[Math.floor(this.random() * n)]!);
  }

  private initGenrand(seed: number): void {
    const mt = this.state;
    mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const previous = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      mt[i] = (Math.imul(1812433253, previous) + i) >>> 0;
    }
    this.index = N;
  }

  private initByArray(key: readonly number[]): void {
    const mt = this.state;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const previous = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      mt[i] = ((mt[i]! ^ Math.imul(previous, 1664525)) + key[j]! + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const previous = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      mt[i] = ((mt[i]! ^ Math.imul(previous, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  private nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.state;
    for (let k = 0; k < N; k++) {
      const y = (mt[k]! & 0x80000000) | (mt[(k + 1) % N]! & 0x7fffffff);
      mt[k] = mt[(k + M) % N]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}
