/**
 * Preference pairs from rated generations, as UltraFeedback's binarisation makes them: the chosen
 * response is the highest rated, the rejected one the lowest rated or a random one rated lower;
 * unrated responses take no part, and a row whose responses all tie gives no pair.
 */
import type { PairRules } from './pipeline-config.js';

/** Indices into the row's generations. */
export interface PreferencePair {
  chosen: number;
  rejected: number;
}

/** Why a row has no pair: fewer than two rated responses, all rated alike, or too close. */
export type DropReason = 'too-few-ratings' | 'tie' | 'margin';

export type PairOutcome = { pair: PreferencePair } | { dropped: DropReason };

/**
 * Picks the pair. Among equal top (or, for `lowest`, bottom) ratings the earliest response wins,
 * so the result depends only on the ratings and, for `random-lower`, the row's random draw.
 */
export function selectPair(ratings: ReadonlyArray<number | null>, rules: PairRules, random: () => number): PairOutcome {
  const rated = ratings.flatMap((rating, index) => (rating === null ? [] : [{ index, rating }]));
  if (rated.length < 2) return { dropped: 'too-few-ratings' };
  const top = Math.max(...rated.map((r) => r.rating));
  const chosen = rated.find((r) => r.rating === top)!;
  const lower = rated.filter((r) => top - r.rating >= rules.minMargin);
  if (lower.length === 0) return { dropped: rated.every((r) => r.rating === top) ? 'tie' : 'margin' };
  if (rules.rejected === 'random-lower') return { pair: { chosen: chosen.index, rejected: lower[Math.floor(random() * lower.length)]!.index } };
  const bottom = Math.min(...lower.map((r) => r.rating));
  return { pair: { chosen: chosen.index, rejected: lower.find((r) => r.rating === bottom)!.index } };
}
