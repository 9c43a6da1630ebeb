/** Another tenant sees none of ours; a daily limit fails fast instead of waiting for tomorrow. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OffpeakError, type OffpeakClient } from "../src/index.js";
import { HELD_TZ, client, frugal, rival, timesBilled, unique, waitFor } from "./helpers.js";

async function status(call: Promise<unknown>): Promise<number | string> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return error instanceof OffpeakError ? `${error.status} ${error.code}` : String(error);
  }
}

describe("tenants", () => {
  test("a rival tenant gets 404 for every object of ours, and lists none of them", async () => {
    const offpeak = client();
    const other: OffpeakClient = rival();
    const tag = unique("private");
    const job = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: tag }, timezone: HELD_TZ, group: tag });
    const bulk = await offpeak.jobs.bulk({ model: "flux-schnell", inputs: [{ prompt: `${tag} bulk` }], timezone: HELD_TZ });
    const schedule = await offpeak.schedules.create({ name: tag, cron: "0 3 * * *", job: { model: "flux-schnell", input: { prompt: tag } } });
    const hook = await offpeak.webhooks.create({ url: "http://127.0.0.1:9/private", events: ["job.dead"] });
    try {
      const attempts: Record<string, () => Promise<unknown>> = {
        "jobs.get": () => other.jobs.get(job.id),
        "jobs.cancel": () => other.jobs.cancel(job.id),
        "jobs.upgrade": () => other.jobs.upgrade(job.id),
        "groups.get (named)": () => other.groups.get(job.group_id ?? ""),
        "groups.get (bulk)": () => other.groups.get(bulk.group_id),
        "groups.results": async () => {
          for await (const line of other.groups.results(bulk.group_id)) assert.fail(`saw ${line.id}`);
        },
        "schedules.get": () => other.schedules.get(schedule.id),
        "schedules.update": () => other.schedules.update(schedule.id, { paused: true }),
        "schedules.delete": () => other.schedules.delete(schedule.id),
        "webhooks.get": () => other.webhooks.get(hook.id),
        "webhooks.update": () => other.webhooks.update(hook.id, { enabled: false }),
        "webhooks.rotateSecret": () => other.webhooks.rotateSecret(hook.id),
        "webhooks.deliveries": () => other.webhooks.deliveries(hook.id),
        "webhooks.delete": () => other.webhooks.delete(hook.id),
      };
      for (const [what, call] of Object.entries(attempts)) {
        assert.equal(await status(call()), "404 not_found", what);
      }

      const theirJobs = await other.jobs.list({ limit: 1000 });
      assert.ok(!theirJobs.jobs.some((j) => j.id === job.id || bulk.ids.includes(j.id)));
      const theirSchedules = await other.schedules.list({ limit: 1000 });
      assert.ok(!theirSchedules.schedules.some((s) => s.id === schedule.id));
      const theirHooks = await other.webhooks.list();
      assert.ok(!theirHooks.webhooks.some((w) => w.id === hook.id));

      // Still ours, untouched.
      assert.equal((await offpeak.jobs.get(job.id)).state, "held");
      assert.equal((await offpeak.schedules.get(schedule.id)).paused, false);
      assert.equal((await offpeak.webhooks.get(hook.id)).enabled, true);
    } finally {
      await offpeak.webhooks.delete(hook.id);
      await offpeak.schedules.delete(schedule.id);
      await offpeak.jobs.cancel(job.id).catch(() => undefined);
    }
  });

  test("over the daily limit: a 429 quota_exceeded at once, typed, with Retry-After; nothing billed", async () => {
    // Retries allowed and a generous wait: the client must still not wait for
    // a Retry-After of hours.
    const offpeak = frugal({ retry: { maxAttempts: 5, maxRetryWaitMs: 30_000 } });
    const accepted: { id: string; input: { prompt: string } }[] = [];
    let refusedInput = {};
    let refusal: OffpeakError | undefined;
    let refusalMs = 0;
    // flux-pro costs 5 and the tenant may spend 10 a day: the third is refused
    // (sooner if another suite of this run spent some of today's credits).
    for (let i = 0; i < 3 && !refusal; i++) {
      const started = performance.now();
      const input = { prompt: unique("hero") };
      try {
        const job = await offpeak.jobs.submit({ model: "flux-pro", input, priority: "normal" });
        accepted.push({ id: job.id, input });
      } catch (error) {
        refusedInput = input;
        refusalMs = performance.now() - started;
        if (!(error instanceof OffpeakError)) throw error;
        refusal = error;
      }
    }
    assert.ok(refusal, "a submission over the limit is refused");
    assert.ok(accepted.length <= 2);
    assert.equal(refusal.status, 429);
    assert.equal(refusal.code, "quota_exceeded");
    assert.equal(refusal.field, undefined);
    assert.match(refusal.message, /daily credit limit of 10/);
    assert.equal(refusal.details?.scope, "tenant");
    assert.equal(refusal.details?.limit, 10);
    assert.equal(refusal.details?.requested, 5);
    assert.ok(typeof refusal.retryAfter === "number" && refusal.retryAfter > 0, `retryAfter ${refusal.retryAfter}`);
    const resetsAt = Date.parse(String(refusal.details?.resets_at));
    assert.ok(Math.abs(Date.now() + refusal.retryAfter * 1000 - resetsAt) < 5_000, "Retry-After is the time until the day resets");
    assert.equal(refusal.attempts, 1, "not retried");
    assert.ok(refusalMs < 2_000, `failed fast (${Math.round(refusalMs)} ms)`);

    // The accepted ones are billed once each when they finish; the refused ones never.
    await Promise.all(
      accepted.map((a) => waitFor(`job ${a.id}`, async () => ((await offpeak.jobs.get(a.id)).state === "succeeded" ? true : undefined))),
    );
    for (const a of accepted) assert.equal(await timesBilled("flux-pro", a.input), 1);
    const input = { prompt: unique("hero") };
    const again = await offpeak.jobs.submit({ model: "flux-pro", input, priority: "normal" }).catch((e: unknown) => e);
    assert.ok(again instanceof OffpeakError && again.code === "quota_exceeded");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await timesBilled("flux-pro", refusedInput), 0, "nothing sent to the provider for a refused job");
    assert.equal(await timesBilled("flux-pro", input), 0);

    const tenant = await offpeak.tenant.get();
    assert.equal(tenant.daily_credits, 10);
    assert.ok((tenant.quota.remaining ?? 0) < 5);
  });
});
