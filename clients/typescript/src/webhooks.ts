/**
 * Verifying webhook deliveries as the Standard Webhooks specification
 * (https://www.standardwebhooks.com) says, and the events' types.
 *
 * The OpenAPI document describes the API's answers but not the events
 * offpeak POSTs to a tenant's endpoints, so their types are written here,
 * after the server's payloads (docs/spec.md, "Webhooks" and "Groups").
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { WebhookVerificationError, isRecord } from "./errors.js";
import type { components } from "./generated/schema.js";

type Schemas = components["schemas"];

/** What a job event's `data` carries: the job as it ended. */
export interface JobEventData {
  id: string;
  state: Schemas["JobState"];
  model: string;
  result: unknown;
  error: unknown;
  credits: number | null;
  cache_hit: boolean;
  user_id: string | null;
  metadata: unknown;
  group_id: string | null;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

/** `job.succeeded`, `job.failed`, `job.dead` or `job.cancelled`. */
export interface JobEvent {
  type: "job.succeeded" | "job.failed" | "job.dead" | "job.cancelled";
  /** When the job finished (RFC 3339, UTC). */
  timestamp: string;
  data: JobEventData;
}

/** `group.completed`: the last job of a group reached a terminal state. */
export interface GroupCompletedEvent {
  type: "group.completed";
  timestamp: string;
  data: {
    id: string;
    /** The name single submissions gave the group; null for a bulk submission's. */
    name: string | null;
    counts: Schemas["GroupCounts"];
    credits: number;
    created_at: string;
    completed_at: string;
  };
}

/** Every event offpeak delivers: `{"type", "timestamp", "data"}`. Switch on `type`. */
export type WebhookEvent = JobEvent | GroupCompletedEvent;

/** The headers of a delivery: a fetch `Headers`, or a plain object such as Node's `req.headers` (any case). */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export interface VerifyWebhookOptions {
  /** Largest distance between `webhook-timestamp` and now, in seconds (default 300, the specification's 5 minutes). */
  toleranceSeconds?: number;
  /** "Now", for tests: a Date or milliseconds since the epoch. */
  now?: Date | number;
}

/** The default timestamp tolerance: 5 minutes, either way. */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/**
 * Verifies a delivery and returns its event; throws a
 * {@link WebhookVerificationError} when a header is missing or malformed,
 * the timestamp is more than `toleranceSeconds` from now (a replay), or no
 * signature matches.
 *
 * `secret` is the endpoint's `whsec_...` (from creating it or rotating its
 * secret); pass several while you move from an old secret to a new one.
 * `body` must be the raw bytes as received (a string or a Buffer): a body
 * parsed and serialised again does not verify.
 *
 * The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, signed
 * with HMAC-SHA256 under the secret's base64-decoded bytes; the
 * `webhook-signature` header holds one or more space-separated `v1,<base64>`
 * (two while a rotated secret still signs). Signatures are compared in
 * constant time.
 */
export function verifyWebhook(
  secret: string | readonly string[],
  headers: WebhookHeaders,
  body: string | Uint8Array,
  options: VerifyWebhookOptions = {},
): WebhookEvent {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header");
  }

  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("webhook-timestamp is not a Unix time in seconds");
  const sentAt = Number(timestamp);
  const now = Math.floor((options.now === undefined ? Date.now() : Number(options.now)) / 1000);
  const tolerance = options.toleranceSeconds ?? WEBHOOK_TOLERANCE_SECONDS;
  if (now - sentAt > tolerance) throw new WebhookVerificationError("webhook-timestamp is too old");
  if (sentAt - now > tolerance) throw new WebhookVerificationError("webhook-timestamp is too far in the future");

  const payload = typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`, "utf8"), payload]);
  const secrets = typeof secret === "string" ? [secret] : secret;
  if (secrets.length === 0) throw new WebhookVerificationError("no secret to verify with");
  const expected = secrets.map((s) => createHmac("sha256", secretKey(s)).update(signed).digest());

  const offered = signatures
    .split(" ")
    .filter((s) => s.startsWith("v1,"))
    .map((s) => Buffer.from(s.slice(3), "base64"));
  // Compare every pair, so the time taken does not say which matched.
  let matched = false;
  for (const candidate of offered) {
    for (const digest of expected) {
      if (candidate.length === digest.length && timingSafeEqual(candidate, digest)) matched = true;
    }
  }
  if (!matched) throw new WebhookVerificationError("no matching signature");

  let event: unknown;
  try {
    event = JSON.parse(payload.toString("utf8"));
  } catch {
    throw new WebhookVerificationError("the body is not JSON");
  }
  if (!isRecord(event) || typeof event.type !== "string" || !isRecord(event.data)) {
    throw new WebhookVerificationError('the body is not an event ({"type", "timestamp", "data"})');
  }
  return event as unknown as WebhookEvent;
}

function secretKey(secret: string): Buffer {
  const encoded = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret;
  const key = Buffer.from(encoded, "base64");
  if (key.length === 0) throw new WebhookVerificationError("the secret is not whsec_ followed by base64");
  return key;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function" && typeof (headers as Headers).has === "function") {
    return (headers as Headers).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() === name) {
      const value = record[key];
      return Array.isArray(value) ? value.join(" ") : value;
    }
  }
  return undefined;
}
