/**
 * The hand-written layer over the generated types: one namespace per part of
 * the API, each method a typed call through openapi-fetch (so paths,
 * parameters, bodies and answers are checked against the OpenAPI document)
 * plus what the document cannot say: the API key, retries, idempotency keys,
 * pagination and streaming.
 */
import { randomUUID } from "node:crypto";
import createClient, { type Client } from "openapi-fetch";
import type { paths } from "./generated/schema.js";
import { parseJsonLines } from "./jsonl.js";
import { resolveRetry, send, type RawResult, type RetryOptions } from "./retry.js";
import type {
  BulkRequest,
  BulkResponse,
  CreateScheduleRequest,
  CreateWebhookRequest,
  Delivery,
  DeliveryList,
  Group,
  Health,
  Job,
  JobList,
  ListDeliveriesParams,
  ListJobsParams,
  ListSchedulesParams,
  NextWindow,
  NextWindowParams,
  PatchScheduleRequest,
  Readiness,
  ResultLine,
  Schedule,
  ScheduleList,
  SecretRotated,
  SubmitRequest,
  Tenant,
  UpdateWebhookRequest,
  UpgradeRequest,
  Usage,
  UsageParams,
  Webhook,
  WebhookCreated,
  WebhookList,
} from "./types.js";

export const VERSION = "0.1.0";

export interface OffpeakClientOptions {
  /** The scheduler's base URL, e.g. `https://offpeak.example.com`; defaults to `$OFFPEAK_URL`. */
  baseUrl?: string;
  /** The tenant's API key (`op_...`), sent as `Authorization: Bearer`; defaults to `$OFFPEAK_API_KEY`. */
  apiKey?: string;
  /** Retries of 429, 503 and lost connections (see {@link RetryOptions}). */
  retry?: RetryOptions;
  /** Per attempt: how long to wait for an answer, in milliseconds (default 60 000; 0: no limit). */
  timeoutMs?: number;
  /** Headers sent with every request (the key's `Authorization` aside). */
  headers?: Record<string, string>;
  /** A fetch to use instead of the global one (a proxy agent, a test double). */
  fetch?: (input: Request) => Promise<Response>;
}

/** Options every call takes. */
export interface CallOptions {
  /** Cancels the call, its retries and waits. */
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
  /** Overrides the client's retry options for this call. */
  retry?: RetryOptions;
}

/** Options of `jobs.submit` and `jobs.bulk`. */
export interface SubmitOptions extends CallOptions {
  /**
   * The `Idempotency-Key` of the submission. By default a random UUID per
   * call, reused by its retries, so a submission whose answer was lost is
   * not stored twice. Pass your own (e.g. `thumb-<sku>`) to make a
   * submission idempotent across calls and processes: the same body under
   * the same key returns the original job, another body is a 409
   * `idempotency_conflict`. `null` sends none (then a lost connection is
   * not retried).
   */
  idempotencyKey?: string | null;
}

type Raw = Client<paths>;
type Data<R> = R extends { data?: infer D } ? Exclude<D, undefined> : never;

/** What the namespaces share: the generated client and the retrying call. */
class Transport {
  readonly raw: Raw;
  private readonly retry: RetryOptions | undefined;
  private readonly timeoutMs: number;

  constructor(options: OffpeakClientOptions) {
    const baseUrl = options.baseUrl ?? process.env.OFFPEAK_URL;
    if (!baseUrl) throw new TypeError("OffpeakClient needs a baseUrl (or OFFPEAK_URL)");
    const apiKey = options.apiKey ?? process.env.OFFPEAK_API_KEY;
    this.retry = options.retry;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.raw = createClient<paths>({
      baseUrl: baseUrl.replace(/\/+$/, ""),
      headers: {
        "User-Agent": `offpeak-client-typescript/${VERSION}`,
        ...options.headers,
        ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}),
      },
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  }

  /** Sends one operation with retries; answers its data, or throws an OffpeakError / OffpeakConnectionError. */
  async call<R extends RawResult>(
    attempt: (signal: AbortSignal) => Promise<R>,
    idempotent: boolean,
    options: CallOptions | undefined,
    extra: { okStatuses?: readonly number[]; maxAttempts?: number } = {},
  ): Promise<Data<R>> {
    const retry = resolveRetry({ ...this.retry, ...options?.retry, ...(extra.maxAttempts ? { maxAttempts: extra.maxAttempts } : {}) });
    const result = await send(attempt as (signal: AbortSignal) => Promise<RawResult>, {
      idempotent,
      retry,
      timeoutMs: options?.timeoutMs ?? this.timeoutMs,
      signal: options?.signal,
      ...(extra.okStatuses ? { okStatuses: extra.okStatuses } : {}),
    });
    return (result.response.ok ? result.data : result.error) as Data<R>;
  }
}

/** Yields every item of a cursor-paginated list, fetching each page when the previous one is used up. */
async function* paginate<T>(
  page: (cursor: string | undefined) => Promise<{ items: T[]; next: string | null }>,
  cursor: string | undefined,
): AsyncGenerator<T, void, undefined> {
  for (;;) {
    const { items, next } = await page(cursor);
    yield* items;
    if (!next || items.length === 0) return;
    cursor = next;
  }
}

/** The caller's key, none (`null`), or a fresh one: the same for every retry of the call. */
function idempotencyKey(options: SubmitOptions): string | null {
  return options.idempotencyKey === undefined ? randomUUID() : options.idempotencyKey;
}

export class JobsApi {
  constructor(private readonly t: Transport) {}

  /**
   * `POST /v1/jobs`: submit one job. Sends an `Idempotency-Key` (a random
   * UUID unless you pass yours), so retries never store it twice. A replay
   * (same key, same body) answers the original job.
   */
  submit(body: SubmitRequest, options: SubmitOptions = {}): Promise<Job> {
    const key = idempotencyKey(options);
    return this.t.call(
      (signal) =>
        this.t.raw.POST("/v1/jobs", {
          body,
          params: key === null ? {} : { header: { "Idempotency-Key": key } },
          signal,
        }),
      key !== null,
      options,
    );
  }

  /**
   * `POST /v1/jobs/bulk`: many inputs of one model, all stored or none, as
   * one group. Like {@link submit}, sends an `Idempotency-Key` (a random UUID
   * unless you pass yours): a replay answers the original jobs, another body
   * under the key is a 409 `idempotency_conflict`. (Keys of bulk and single
   * submissions are apart.)
   */
  bulk(body: BulkRequest, options: SubmitOptions = {}): Promise<BulkResponse> {
    const key = idempotencyKey(options);
    return this.t.call(
      (signal) => this.t.raw.POST("/v1/jobs/bulk", { body, params: key === null ? {} : { header: { "Idempotency-Key": key } }, signal }),
      key !== null,
      options,
    );
  }

  /** `GET /v1/jobs/{id}`. */
  get(id: string, options?: CallOptions): Promise<Job> {
    return this.t.call((signal) => this.t.raw.GET("/v1/jobs/{id}", { params: { path: { id } }, signal }), true, options);
  }

  /** `GET /v1/jobs`: one page, newest first; pass `next_cursor` as `cursor` for the next. */
  list(params: ListJobsParams = {}, options?: CallOptions): Promise<JobList> {
    return this.t.call((signal) => this.t.raw.GET("/v1/jobs", { params: { query: params }, signal }), true, options);
  }

  /** Every job matching `params`, newest first, across all pages (`limit` is the page size). */
  iterate(params: ListJobsParams = {}, options?: CallOptions): AsyncGenerator<Job, void, undefined> {
    return paginate(async (cursor) => {
      const page = await this.list({ ...params, ...(cursor ? { cursor } : {}) }, options);
      return { items: page.jobs, next: page.next_cursor };
    }, params.cursor);
  }

  /** `DELETE /v1/jobs/{id}`: cancel a job no worker has started; a 409 `not_cancellable` otherwise. */
  cancel(id: string, options?: CallOptions): Promise<Job> {
    return this.t.call((signal) => this.t.raw.DELETE("/v1/jobs/{id}", { params: { path: { id } }, signal }), true, options);
  }

  /**
   * `POST /v1/jobs/{id}/upgrade`: the full-quality job of a succeeded one
   * (a preview). Made once: the same upgrade again answers the same job, so
   * it is retried like an idempotent call.
   */
  upgrade(id: string, body?: UpgradeRequest, options?: CallOptions): Promise<Job> {
    return this.t.call(
      (signal) => this.t.raw.POST("/v1/jobs/{id}/upgrade", { params: { path: { id } }, ...(body ? { body } : {}), signal }),
      true,
      options,
    );
  }
}

export class SchedulesApi {
  constructor(private readonly t: Transport) {}

  /**
   * `POST /v1/schedules`. Names are unique per tenant and the same
   * definition under the same name answers the existing schedule, so it is
   * retried like an idempotent call.
   */
  create(body: CreateScheduleRequest, options?: CallOptions): Promise<Schedule> {
    return this.t.call((signal) => this.t.raw.POST("/v1/schedules", { body, signal }), true, options);
  }

  /** `GET /v1/schedules`: one page, newest first (without next fire times). */
  list(params: ListSchedulesParams = {}, options?: CallOptions): Promise<ScheduleList> {
    return this.t.call((signal) => this.t.raw.GET("/v1/schedules", { params: { query: params }, signal }), true, options);
  }

  /** Every schedule, across all pages. */
  iterate(params: ListSchedulesParams = {}, options?: CallOptions): AsyncGenerator<Schedule, void, undefined> {
    return paginate(async (cursor) => {
      const page = await this.list({ ...params, ...(cursor ? { cursor } : {}) }, options);
      return { items: page.schedules, next: page.next_cursor };
    }, params.cursor);
  }

  /** `GET /v1/schedules/{id}`, with its next fire times and recent firings. */
  get(id: string, options?: CallOptions): Promise<Schedule> {
    return this.t.call((signal) => this.t.raw.GET("/v1/schedules/{id}", { params: { path: { id } }, signal }), true, options);
  }

  /** `PATCH /v1/schedules/{id}`: pause, resume or change it (`job` replaces the whole template). */
  update(id: string, body: PatchScheduleRequest, options?: CallOptions): Promise<Schedule> {
    return this.t.call((signal) => this.t.raw.PATCH("/v1/schedules/{id}", { params: { path: { id } }, body, signal }), true, options);
  }

  /** `DELETE /v1/schedules/{id}`: the jobs it made stay. Answers the schedule as it was. */
  delete(id: string, options?: CallOptions): Promise<Schedule> {
    return this.t.call((signal) => this.t.raw.DELETE("/v1/schedules/{id}", { params: { path: { id } }, signal }), true, options);
  }
}

export class GroupsApi {
  constructor(private readonly t: Transport) {}

  /** `GET /v1/groups/{id}`: the group's jobs counted by state, its credits, `completed_at`. */
  get(id: string, options?: CallOptions): Promise<Group> {
    return this.t.call((signal) => this.t.raw.GET("/v1/groups/{id}", { params: { path: { id } }, signal }), true, options);
  }

  /**
   * `GET /v1/groups/{id}/results`: every job of the group (id order), parsed
   * line by line as the JSON Lines body streams in; never held whole. Errors
   * before the first byte (404, 429, 503) are thrown by the first `next()`;
   * a body cut short throws an `OffpeakStreamError`.
   */
  async *results(id: string, options?: CallOptions): AsyncGenerator<ResultLine, void, undefined> {
    const body = await this.t.call(
      (signal) => this.t.raw.GET("/v1/groups/{id}/results", { params: { path: { id } }, parseAs: "stream", signal }),
      true,
      options,
    );
    if (!body) return;
    yield* parseJsonLines<ResultLine>(body as ReadableStream<Uint8Array>);
  }
}

export class WebhooksApi {
  constructor(private readonly t: Transport) {}

  /**
   * `POST /v1/webhooks`: register an endpoint for some events (all five when
   * `events` is absent). The answer's `secret` (`whsec_...`) is shown only
   * here: keep it for {@link verifyWebhook}. Not retried on a lost
   * connection (it would register a second endpoint).
   */
  create(body: CreateWebhookRequest, options?: CallOptions): Promise<WebhookCreated> {
    return this.t.call((signal) => this.t.raw.POST("/v1/webhooks", { body, signal }), false, options);
  }

  /** `GET /v1/webhooks`: every endpoint of the tenant (at most 20), oldest first. */
  list(options?: CallOptions): Promise<WebhookList> {
    return this.t.call((signal) => this.t.raw.GET("/v1/webhooks", { signal }), true, options);
  }

  /** `GET /v1/webhooks/{id}`. */
  get(id: string, options?: CallOptions): Promise<Webhook> {
    return this.t.call((signal) => this.t.raw.GET("/v1/webhooks/{id}", { params: { path: { id } }, signal }), true, options);
  }

  /** `PATCH /v1/webhooks/{id}`: `url`, `events`, `description`, `enabled`. */
  update(id: string, body: UpdateWebhookRequest, options?: CallOptions): Promise<Webhook> {
    return this.t.call((signal) => this.t.raw.PATCH("/v1/webhooks/{id}", { params: { path: { id } }, body, signal }), true, options);
  }

  /** `DELETE /v1/webhooks/{id}`, with its pending deliveries. Answers the endpoint as it was. */
  delete(id: string, options?: CallOptions): Promise<Webhook> {
    return this.t.call((signal) => this.t.raw.DELETE("/v1/webhooks/{id}", { params: { path: { id } }, signal }), true, options);
  }

  /**
   * `POST /v1/webhooks/{id}/rotate-secret`: a new secret (shown only here);
   * the previous one signs beside it for 24 hours. Not retried on a lost
   * connection: a second rotation would replace the secret you never saw.
   */
  rotateSecret(id: string, options?: CallOptions): Promise<SecretRotated> {
    return this.t.call((signal) => this.t.raw.POST("/v1/webhooks/{id}/rotate-secret", { params: { path: { id } }, signal }), false, options);
  }

  /** `GET /v1/webhooks/{id}/deliveries`: one page, newest first, each with its attempts. */
  deliveries(id: string, params: ListDeliveriesParams = {}, options?: CallOptions): Promise<DeliveryList> {
    return this.t.call(
      (signal) => this.t.raw.GET("/v1/webhooks/{id}/deliveries", { params: { path: { id }, query: params }, signal }),
      true,
      options,
    );
  }

  /** Every delivery of an endpoint, across all pages. */
  iterateDeliveries(id: string, params: ListDeliveriesParams = {}, options?: CallOptions): AsyncGenerator<Delivery, void, undefined> {
    return paginate(async (cursor) => {
      const page = await this.deliveries(id, { ...params, ...(cursor ? { cursor } : {}) }, options);
      return { items: page.deliveries, next: page.next_cursor };
    }, params.cursor);
  }

  /** `POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay`: send it again (same `webhook-id`, same body). */
  replay(id: string, deliveryId: string, options?: CallOptions): Promise<Delivery> {
    return this.t.call(
      (signal) =>
        this.t.raw.POST("/v1/webhooks/{id}/deliveries/{delivery_id}/replay", { params: { path: { id, delivery_id: deliveryId } }, signal }),
      false,
      options,
    );
  }
}

export class WindowsApi {
  constructor(private readonly t: Transport) {}

  /** `GET /v1/windows/next`: when a low-priority job submitted at `at` (default now) in `timezone` (default the tenant's) would run. */
  next(params: NextWindowParams = {}, options?: CallOptions): Promise<NextWindow> {
    return this.t.call((signal) => this.t.raw.GET("/v1/windows/next", { params: { query: params }, signal }), true, options);
  }
}

export class UsageApi {
  constructor(private readonly t: Transport) {}

  /** `GET /v1/usage`: requests, credits and savings per model, day or user (default: today, by model). */
  get(params: UsageParams = {}, options?: CallOptions): Promise<Usage> {
    return this.t.call((signal) => this.t.raw.GET("/v1/usage", { params: { query: params }, signal }), true, options);
  }
}

export class TenantApi {
  constructor(private readonly t: Transport) {}

  /** `GET /v1/tenant`: the tenant's settings, today's quota and usage. */
  get(options?: CallOptions): Promise<Tenant> {
    return this.t.call((signal) => this.t.raw.GET("/v1/tenant", { signal }), true, options);
  }
}

export class HealthApi {
  constructor(private readonly t: Transport) {}

  /** `GET /healthz`: the process is up. */
  healthz(options?: CallOptions): Promise<Health> {
    return this.t.call((signal) => this.t.raw.GET("/healthz", { signal }), true, options);
  }

  /**
   * `GET /readyz`: PostgreSQL and RabbitMQ reachable. Answers the readiness
   * whether it is `ready` (200) or `not_ready` (503), without retrying.
   */
  readyz(options?: CallOptions): Promise<Readiness> {
    return this.t.call((signal) => this.t.raw.GET("/readyz", { signal }), true, options, { okStatuses: [503], maxAttempts: 1 }) as Promise<Readiness>;
  }

  /** `GET /metrics`: the Prometheus text exposition. */
  metrics(options?: CallOptions): Promise<string> {
    return this.t.call((signal) => this.t.raw.GET("/metrics", { parseAs: "text", signal }), true, options);
  }
}

/**
 * The offpeak API.
 *
 * ```ts
 * const offpeak = new OffpeakClient({ baseUrl: "https://offpeak.example.com", apiKey: process.env.OFFPEAK_API_KEY });
 * const job = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: "a lighthouse" } });
 * for await (const j of offpeak.jobs.iterate({ state: "succeeded" })) console.log(j.id, j.credits);
 * ```
 */
export class OffpeakClient {
  readonly jobs: JobsApi;
  readonly schedules: SchedulesApi;
  readonly groups: GroupsApi;
  readonly webhooks: WebhooksApi;
  readonly windows: WindowsApi;
  readonly usage: UsageApi;
  readonly tenant: TenantApi;
  readonly health: HealthApi;
  /**
   * The generated openapi-fetch client, with the base URL and the key but
   * without retries: for anything the namespaces do not offer.
   */
  readonly raw: Raw;
  private readonly t: Transport;

  constructor(options: OffpeakClientOptions = {}) {
    this.t = new Transport(options);
    this.raw = this.t.raw;
    this.jobs = new JobsApi(this.t);
    this.schedules = new SchedulesApi(this.t);
    this.groups = new GroupsApi(this.t);
    this.webhooks = new WebhooksApi(this.t);
    this.windows = new WindowsApi(this.t);
    this.usage = new UsageApi(this.t);
    this.tenant = new TenantApi(this.t);
    this.health = new HealthApi(this.t);
  }

  /** `GET /openapi.json`: the document this client was generated from, as the server serves it now. */
  openapi(options?: CallOptions): Promise<Record<string, unknown>> {
    return this.t.call((signal) => this.t.raw.GET("/openapi.json", { signal }), true, options);
  }
}
