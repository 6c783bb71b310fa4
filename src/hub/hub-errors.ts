import { HerdError } from '../errors.js';

/**
 * The Hub's failures as one line each. The Hub names its errors in the X-Error-Code header
 * (GatedRepo, RepoNotFound, RevisionNotFound, EntryNotFound) with details in X-Error-Message,
 * as huggingface_hub's hf_raise_for_status reads them.
 */

/** What a request was about, for the message. */
export interface RequestSubject {
  repo: string;
  revision?: string;
  file?: string;
}

interface ClientFacts {
  endpoint: string;
  hasToken: boolean;
  /** How many tries were made, for the 429 and 5xx messages. */
  attempts: number;
}

export async function hubError(response: Response, subject: RequestSubject, facts: ClientFacts): Promise<HerdError> {
  const code = response.headers.get('x-error-code');
  const serverMessage = response.headers.get('x-error-message') ?? (await bodyMessage(response));
  const page = `${facts.endpoint}/${subject.repo}`;
  const revision = subject.revision ?? 'main';
  if (code === 'GatedRepo') {
    return new HerdError(
      facts.hasToken
        ? `${subject.repo} is gated and this token's access is not approved yet (the request is pending or was declined): see ${page}`
        : `${subject.repo} is a gated model: accept its license at ${page}, then set HF_TOKEN to a token of that account`,
      { kind: 'network' },
    );
  }
  if (code === 'RepoNotFound' || (response.status === 404 && code === null && subject.file === undefined)) {
    return new HerdError(`no model ${subject.repo} on ${facts.endpoint}${facts.hasToken ? ' that this token can read' : ' (a private one needs HF_TOKEN)'}`, { kind: 'input' });
  }
  if (code === 'RevisionNotFound') return new HerdError(`${subject.repo} has no revision ${revision} (a branch, tag or commit)`, { kind: 'input' });
  if (code === 'EntryNotFound' || response.status === 404) return new HerdError(`${subject.repo}@${revision} has no file ${subject.file ?? '?'}`, { kind: 'input' });
  if (response.status === 401) {
    return new HerdError(facts.hasToken ? `${facts.endpoint} refused the token (401): check HF_TOKEN or log in again` : `${facts.endpoint} asks for a token to read ${subject.repo} (401): set HF_TOKEN`, { kind: 'network' });
  }
  if (response.status === 429) return new HerdError(`${facts.endpoint} is rate-limiting requests (429) after ${facts.attempts} tries; wait and run again`, { kind: 'network' });
  const detail = serverMessage === '' ? '' : `: ${serverMessage}`;
  const tries = response.status >= 500 ? ` after ${facts.attempts} tries` : '';
  return new HerdError(`${new URL(response.url || facts.endpoint).host} answered ${response.status} ${response.statusText} for ${describe(subject)}${tries}${detail}`, { kind: 'network' });
}

/** No answer at all from the Hub; a cached model can still be used (as huggingface_hub falls back). */
export class HubUnreachable extends HerdError {
  constructor(message: string) {
    super(message, { kind: 'network' });
  }
}

/** A fetch that failed before any answer: no network, an unknown host, a refused connection. */
export function networkError(url: string, error: unknown): HerdError {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : (error as Error).message;
  const origin = new URL(url).origin;
  return new HubUnreachable(`cannot reach ${origin} (${code}): check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache`);
}

function describe(subject: RequestSubject): string {
  return `${subject.repo}${subject.revision === undefined ? '' : `@${subject.revision}`}${subject.file === undefined ? '' : ` ${subject.file}`}`;
}

/** The Hub's JSON error body ({"error": "…"}), one line of it; '' when there is none. */
async function bodyMessage(response: Response): Promise<string> {
  try {
    const text = await response.text();
    const parsed = JSON.parse(text) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error.split('\n')[0]! : '';
  } catch {
    return '';
  }
}
