/**
 * The errors the client throws. Every answer of the API that is not a
 * success becomes an {@link OffpeakError}; a request that got no answer at
 * all (refused connection, reset, timeout) an {@link OffpeakConnectionError}.
 */

/** The API answered with an error: `{"error": {"code", "message", "field"?, "details"?}}`. */
export class OffpeakError extends Error {
  override readonly name = "OffpeakError";
  /** The HTTP status (400, 401, 404, 409, 413, 422, 429, 500, 503, ...). */
  readonly status: number;
  /** Stable and machine-readable, e.g. `quota_exceeded`, `not_cancellable`, `idempotency_conflict`. */
  readonly code: string;
  /** The request field or query parameter at fault, when there is one. */
  readonly field: string | undefined;
  /** Particulars of some errors, e.g. for `quota_exceeded`: `scope`, `limit`, `used`, `requested`, `day`, `resets_at`. */
  readonly details: Record<string, unknown> | undefined;
  /** `Retry-After` of the answer, in seconds, when it had one (a 429 `quota_exceeded`: until the day resets). */
  readonly retryAfter: number | undefined;
  /** How many requests were sent before this error was returned (1 when it was not retried). */
  readonly attempts: number;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    field?: string | undefined;
    details?: Record<string, unknown> | undefined;
    retryAfter?: number | undefined;
    attempts?: number | undefined;
  }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.field = init.field;
    this.details = init.details;
    this.retryAfter = init.retryAfter;
    this.attempts = init.attempts ?? 1;
  }

  /**
   * Builds the error from an answer's status, its body (parsed JSON, or text
   * when it was not JSON, e.g. from a proxy) and its `Retry-After`.
   */
  static fromResponse(status: number, body: unknown, retryAfter: number | undefined, attempts = 1): OffpeakError {
    const detail = isRecord(body) && isRecord(body.error) ? body.error : undefined;
    if (detail && typeof detail.code === "string") {
      return new OffpeakError({
        status,
        code: detail.code,
        message: typeof detail.message === "string" ? detail.message : detail.code,
        field: typeof detail.field === "string" ? detail.field : undefined,
        details: isRecord(detail.details) ? detail.details : undefined,
        retryAfter,
        attempts,
      });
    }
    const text = typeof body === "string" ? body.trim().slice(0, 500) : "";
    return new OffpeakError({
      status,
      code: `http_${status}`,
      message: text ? `HTTP ${status}: ${text}` : `HTTP ${status} without an error body`,
      retryAfter,
      attempts,
    });
  }
}

/** No answer: the connection was refused or reset, or the request timed out (after the retries it was allowed). */
export class OffpeakConnectionError extends Error {
  override readonly name = "OffpeakConnectionError";
  /** True when the client's own timeout (`timeoutMs`) ended the request. */
  readonly timedOut: boolean;
  readonly attempts: number;

  constructor(message: string, init: { cause?: unknown; timedOut?: boolean; attempts?: number } = {}) {
    super(message, { cause: init.cause });
    this.timedOut = init.timedOut ?? false;
    this.attempts = init.attempts ?? 1;
  }
}

/** `groups.results()` ended before its last line: the server stopped mid-stream (e.g. a database failure). */
export class OffpeakStreamError extends Error {
  override readonly name = "OffpeakStreamError";
  /** Lines read before the stream broke. */
  readonly linesRead: number;

  constructor(message: string, linesRead: number, cause?: unknown) {
    super(message, { cause });
    this.linesRead = linesRead;
  }
}

/** A webhook delivery that {@link verifyWebhook} refused; `message` says why. */
export class WebhookVerificationError extends Error {
  override readonly name = "WebhookVerificationError";
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
