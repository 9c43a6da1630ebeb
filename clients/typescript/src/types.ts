/**
 * Friendly names for the generated types (src/generated/schema.ts). Nothing
 * here is written by hand beyond the names: change the API, regenerate.
 */
import type { components, operations } from "./generated/schema.js";

type S = components["schemas"];

export type Job = S["JobView"];
export type JobState = S["JobState"];
export type JobList = S["ListResponse"];
export type Priority = S["Priority"];
export type SubmitRequest = S["SubmitRequest"];
export type BulkRequest = S["BulkRequest"];
export type BulkResponse = S["BulkResponse"];
export type UpgradeRequest = S["UpgradeRequest"];
export type UpgradeTarget = S["UpgradeTarget"];
export type PreviewRequest = S["PreviewRequest"];
export type CacheMode = S["CacheMode"];
export type CacheKind = S["CacheKind"];
export type Json = S["Json"];
export type JsonObject = S["JsonObject"];

export type Schedule = S["Schedule"];
export type ScheduleList = S["ScheduleList"];
export type CreateScheduleRequest = S["CreateScheduleRequest"];
export type PatchScheduleRequest = S["PatchScheduleRequest"];
export type JobTemplate = S["JobTemplate"];
export type JobTemplateRequest = S["JobTemplateRequest"];
export type CatchUp = S["CatchUp"];
export type FireTime = S["FireTime"];
export type Firing = S["Firing"];

export type Group = S["GroupView"];
export type GroupCounts = S["GroupCounts"];
export type ResultLine = S["ResultLine"];

export type Webhook = S["WebhookView"];
export type WebhookCreated = S["WebhookCreated"];
export type WebhookList = S["WebhookList"];
export type CreateWebhookRequest = S["CreateWebhook"];
export type UpdateWebhookRequest = S["UpdateWebhook"];
export type WebhookEventName = S["WebhookEventName"];
export type SecretRotated = S["SecretRotated"];
export type Delivery = S["DeliveryView"];
export type DeliveryList = S["DeliveryList"];
export type DeliveryAttempt = S["AttemptView"];

export type NextWindow = S["NextWindow"];
export type Usage = S["UsageResponse"];
export type UsageGroup = S["UsageGroup"];
export type UsageGroupBy = S["UsageGroupBy"];
export type Tenant = S["TenantView"];
export type Quota = S["QuotaView"];
export type TodayUsage = S["TodayUsage"];
export type Health = S["Health"];
export type Readiness = S["Readiness"];
export type ErrorBody = S["ErrorBody"];
export type ErrorDetail = S["ErrorDetail"];

type Query<Op extends keyof operations> = NonNullable<operations[Op]["parameters"]["query"]>;

/** `GET /v1/jobs`: `state`, `model`, `limit` (1 to 1000) and `cursor`. */
export type ListJobsParams = Query<"list_jobs">;
/** `GET /v1/schedules`: `limit` and `cursor`. */
export type ListSchedulesParams = Query<"list_schedules">;
/** `GET /v1/webhooks/{id}/deliveries`: `limit` and `cursor`. */
export type ListDeliveriesParams = Query<"list_webhook_deliveries">;
/** `GET /v1/usage`: `start`, `end` (RFC 3339 or `YYYY-MM-DD`) and `group_by`. */
export type UsageParams = Query<"get_usage">;
/** `GET /v1/windows/next`: `timezone` and `at`. */
export type NextWindowParams = Query<"next_window">;
