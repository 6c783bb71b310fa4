/**
 * The 16 non-uniform levels of IQ4_NL and IQ4_XS codes (ggml's kvalues_iq4nl): a 4-bit code c
 * stands for IQ4_NL_VALUES[c] times its block's scale. Denser near zero, where most weights are.
 */
export const IQ4_NL_VALUES: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
