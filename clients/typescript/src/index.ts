/**
 * @offpeak/client: the TypeScript client of the offpeak API.
 *
 * Types are generated from the API's OpenAPI document (src/generated); this
 * package adds what a generator cannot know: the key, retries honouring
 * `Retry-After`, idempotency keys, pagination, JSON Lines streaming, typed
 * errors and webhook verification.
 */
export {
  OffpeakClient,
  JobsApi,
  SchedulesApi,
  GroupsApi,
  WebhooksApi,
  WindowsApi,
  UsageApi,
  TenantApi,
  HealthApi,
  VERSION,
  type OffpeakClientOptions,
  type CallOptions,
  type SubmitOptions,
} from "./client.js";
export { OffpeakError, OffpeakConnectionError, OffpeakStreamError, WebhookVerificationError } from "./errors.js";
export { parseRetryAfter, type RetryOptions } from "./retry.js";
export { parseJsonLines } from "./jsonl.js";
export {
  verifyWebhook,
  WEBHOOK_TOLERANCE_SECONDS,
  type WebhookEvent,
  type JobEvent,
  type JobEventData,
  type GroupCompletedEvent,
  type WebhookHeaders,
  type VerifyWebhookOptions,
} from "./webhooks.js";
export type * from "./types.js";
export type { paths, components, operations } from "./generated/schema.js";
