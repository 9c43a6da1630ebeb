/**
 * Sending one operation: a timeout per attempt, and retries of what may be
 * retried. This is the part of the client a generator cannot know, because
 * it depends on what the server promises (which statuses mean "nothing was
 * done, try later", which operations are safe to send twice).
 */
import { OffpeakConnectionError, OffpeakError } from "./errors.js";

export interface RetryOptions {
  /** Requests sent at most for one call, the first included (default 4; 1 disables retries). */
  maxAttempts?: number;
  /**
   * The longest `Retry-After` the client waits for, in milliseconds (default 30 000). A 429 or
   * 503 asking for a longer wait (a `quota_exceeded` until the day resets) is returned at once
   * as an {@link OffpeakError} carrying `retryAfter`.
   */
  maxRetryWaitMs?: number;
  /** First backoff step when an answer has no `Retry-After`, in milliseconds (default 500); doubles per attempt, with jitter. */
  baseDelayMs?: number;
  /** Longest backoff step, in milliseconds (default 10 000). */
  maxDelayMs?: number;
}

export interface ResolvedRetryOptions {
  maxAttempts: number;
  maxRetryWaitMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export function resolveRetry(options: RetryOptions | undefined): ResolvedRetryOptions {
  return {
    maxAttempts: Math.max(1, Math.floor(options?.maxAttempts ?? 4)),
    maxRetryWaitMs: Math.max(0, options?.maxRetryWaitMs ?? 30_000),
    baseDelayMs: Math.max(0, options?.baseDelayMs ?? 500),
    maxDelayMs: Math.max(0, options?.maxDelayMs ?? 10_000),
  };
}

/**
 * `Retry-After` in seconds: delta-seconds (`120`) or an HTTP date
 * (`Wed, 21 Oct 2026 07:28:00 GMT`, 0 when it has passed); undefined when
 * absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value == null) return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  // An HTTP date starts with the day's name (IMF-fixdate, RFC 850, asctime).
  if (!/^[A-Za-z]/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Exponential backoff with "equal jitter": half the step fixed, half random. */
export function backoffMs(attempt: number, options: ResolvedRetryOptions, random: () => number = Math.random): number {
  const step = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return step / 2 + random() * (step / 2);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** What openapi-fetch answers for one request. */
export interface RawResult {
  data?: unknown;
  error?: unknown;
  response: Response;
}

export interface SendOptions {
  /** Whether sending the request twice has the effect of sending it once: a connection failure is retried only then. */
  idempotent: boolean;
  retry: ResolvedRetryOptions;
  /** Per attempt, until the answer's headers (and, for JSON, its body) have arrived; 0: none. */
  timeoutMs: number;
  /** The caller's own cancellation. */
  signal?: AbortSignal | undefined;
  /** Statuses that are answers rather than errors for this operation (e.g. 503 of `/readyz`). */
  okStatuses?: readonly number[];
}

class AttemptTimeout extends Error {
  override readonly name = "TimeoutError";
}

/**
 * Runs `attempt` until it succeeds or may not be retried:
 *
 * - 429 and 503 (the server did nothing; "try later") are retried for every
 *   operation, after `Retry-After` when the answer has one and it is at most
 *   `maxRetryWaitMs`, else with exponential backoff and jitter. A longer
 *   `Retry-After` is not waited for: the error is thrown at once.
 * - No answer at all (refused, reset, timed out) is retried only for an
 *   idempotent operation: GET, DELETE, PATCH, and submissions carrying an
 *   `Idempotency-Key`, which the server answers with the original job.
 * - Any other error status is thrown as an {@link OffpeakError} at once.
 */
export async function send(attempt: (signal: AbortSignal) => Promise<RawResult>, options: SendOptions): Promise<RawResult> {
  const { retry, signal: callerSignal } = options;
  for (let n = 1; ; n++) {
    const controller = new AbortController();
    const timer =
      options.timeoutMs > 0 ? setTimeout(() => controller.abort(new AttemptTimeout(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs) : undefined;
    // The caller's signal aborts the attempt too (by hand rather than with
    // AbortSignal.any, which Node 18, Debian 12's, does not have).
    const abortAttempt = () => controller.abort(callerSignal?.reason);
    if (callerSignal?.aborted) abortAttempt();
    callerSignal?.addEventListener("abort", abortAttempt, { once: true });
    const signal = controller.signal;
    let result: RawResult;
    try {
      result = await attempt(signal);
    } catch (error) {
      if (callerSignal?.aborted) throw callerSignal.reason ?? error;
      const connection = asConnectionError(error, controller.signal, n);
      if (!connection) throw error;
      if (options.idempotent && n < retry.maxAttempts) {
        await sleep(backoffMs(n, retry), callerSignal);
        continue;
      }
      throw connection;
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener("abort", abortAttempt);
    }

    const { response } = result;
    if (response.ok || options.okStatuses?.includes(response.status)) return result;

    const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
    if ((response.status === 429 || response.status === 503) && n < retry.maxAttempts) {
      const waitMs = retryAfter === undefined ? backoffMs(n, retry) : retryAfter * 1000;
      if (waitMs <= retry.maxRetryWaitMs) {
        await sleep(waitMs, callerSignal);
        continue;
      }
    }
    throw OffpeakError.fromResponse(response.status, result.error, retryAfter, n);
  }
}

/** A failure to get an answer (as opposed to a bug or a bad answer), or undefined. */
function asConnectionError(error: unknown, attemptSignal: AbortSignal, attempts: number): OffpeakConnectionError | undefined {
  if (attemptSignal.aborted) {
    const reason = attemptSignal.reason;
    return new OffpeakConnectionError(reason instanceof Error ? reason.message : "timed out", { cause: error, timedOut: true, attempts });
  }
  // undici (Node's fetch) reports refused, reset and cut connections as a
  // TypeError ("fetch failed", "terminated") with the system error as cause;
  // other TypeErrors (an invalid URL, a bug) are not connection failures.
  if (error instanceof TypeError) {
    const cause = (error as { cause?: unknown }).cause;
    const code = typeof cause === "object" && cause !== null ? (cause as { code?: unknown }).code : undefined;
    if (error.message === "fetch failed" || error.message === "terminated" || typeof code === "string") {
      const detail = cause instanceof Error ? `: ${cause.message}` : "";
      return new OffpeakConnectionError(`${error.message}${detail}`, { cause: error, attempts });
    }
  }
  return undefined;
}
