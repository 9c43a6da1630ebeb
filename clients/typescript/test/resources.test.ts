/** Schedules, webhooks, windows, usage, tenant and health against the real server. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OffpeakError } from "../src/index.js";
import { UUID_RE, client, collect, unique, waitFor } from "./helpers.js";

describe("schedules", () => {
  test("create, replay, get, list, iterate, update, delete", async () => {
    const offpeak = client();
    const name = unique("nightly");
    const definition = {
      name,
      cron: "0 3 * * *",
      timezone: "Europe/Berlin",
      catch_up: "none" as const,
      job: { model: "flux-schnell", input: { prompt: "nightly render" }, metadata: { source: name } },
    };
    const created = await offpeak.schedules.create(definition);
    assert.match(created.id, UUID_RE);
    assert.equal(created.name, name);
    assert.equal(created.timezone, "Europe/Berlin");
    assert.equal(created.paused, false);
    assert.equal(created.job.priority, "low");
    assert.ok(created.next_fire_at);
    assert.ok((created.next_fire_times ?? []).length > 0);
    for (const t of created.next_fire_times ?? []) assert.match(t.local, /T03:00:00\+0[12]:00$/);

    const replay = await offpeak.schedules.create(definition);
    assert.equal(replay.id, created.id, "the same definition under the same name answers that schedule");
    const conflict = await offpeak.schedules.create({ ...definition, cron: "0 4 * * *" }).catch((e: unknown) => e);
    assert.ok(conflict instanceof OffpeakError);
    assert.equal(conflict.status, 409);
    assert.equal(conflict.code, "schedule_conflict");
    assert.equal(conflict.field, "name");

    const got = await offpeak.schedules.get(created.id);
    assert.equal(got.cron, "0 3 * * *");
    assert.ok(Array.isArray(got.recent_firings));

    const page = await offpeak.schedules.list({ limit: 1000 });
    assert.ok(page.schedules.some((s) => s.id === created.id));
    const all = await collect(offpeak.schedules.iterate({ limit: 1 }));
    assert.ok(all.some((s) => s.id === created.id));
    assert.equal(new Set(all.map((s) => s.id)).size, all.length);

    const paused = await offpeak.schedules.update(created.id, { paused: true });
    assert.equal(paused.paused, true);
    assert.equal(paused.next_fire_at, null);
    const moved = await offpeak.schedules.update(created.id, { paused: false, cron: "30 4 * * *" });
    assert.equal(moved.cron, "30 4 * * *");
    assert.equal(moved.paused, false);

    const bad = await offpeak.schedules.update(created.id, { cron: "not a cron" }).catch((e: unknown) => e);
    assert.ok(bad instanceof OffpeakError);
    assert.equal(bad.status, 422);
    assert.equal(bad.field, "cron");

    const deleted = await offpeak.schedules.delete(created.id);
    assert.equal(deleted.id, created.id);
    const gone = await offpeak.schedules.get(created.id).catch((e: unknown) => e);
    assert.ok(gone instanceof OffpeakError);
    assert.equal(gone.status, 404);
  });
});

describe("webhooks", () => {
  test("create, get, list, update, rotateSecret, deliveries, delete", async () => {
    const offpeak = client();
    const description = unique("hook");
    const created = await offpeak.webhooks.create({ url: "http://127.0.0.1:9/offpeak", events: ["job.failed"], description });
    try {
      assert.match(created.id, UUID_RE);
      assert.match(created.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
      assert.equal(Buffer.from(created.secret.slice(6), "base64").length, 32);
      assert.deepEqual(created.events, ["job.failed"]);
      assert.equal(created.enabled, true);

      const got = await offpeak.webhooks.get(created.id);
      assert.equal(got.description, description);
      assert.equal("secret" in got, false, "the secret is shown only when created or rotated");

      const list = await offpeak.webhooks.list();
      assert.ok(list.webhooks.some((w) => w.id === created.id));

      const updated = await offpeak.webhooks.update(created.id, { events: ["job.failed", "group.completed"], enabled: false, description: null });
      assert.deepEqual([...updated.events].sort(), ["group.completed", "job.failed"]);
      assert.equal(updated.enabled, false);
      assert.equal(updated.description, null);

      const refused = await offpeak.webhooks.update(created.id, { events: ["job.exploded" as "job.failed"] }).catch((e: unknown) => e);
      assert.ok(refused instanceof OffpeakError);
      assert.equal(refused.status, 422);

      const rotated = await offpeak.webhooks.rotateSecret(created.id);
      assert.equal(rotated.id, created.id);
      assert.notEqual(rotated.secret, created.secret);
      assert.match(rotated.secret, /^whsec_/);
      assert.ok(Date.parse(rotated.previous_secret_expires_at) > Date.now() + 23 * 3600 * 1000);

      const deliveries = await offpeak.webhooks.deliveries(created.id, { limit: 10 });
      assert.deepEqual(deliveries.deliveries, []);
      assert.equal(deliveries.next_cursor, null);
      assert.deepEqual(await collect(offpeak.webhooks.iterateDeliveries(created.id)), []);

      const missing = await offpeak.webhooks.replay(created.id, "00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
      assert.ok(missing instanceof OffpeakError);
      assert.equal(missing.status, 404);
    } finally {
      const deleted = await offpeak.webhooks.delete(created.id);
      assert.equal(deleted.id, created.id);
    }
    const gone = await offpeak.webhooks.get(created.id).catch((e: unknown) => e);
    assert.ok(gone instanceof OffpeakError);
    assert.equal(gone.status, 404);
  });
});

describe("windows, usage, tenant, health", () => {
  test("windows.next: the fall-back night in Berlin is five hours long", async () => {
    const offpeak = client();
    const window = await offpeak.windows.next({ timezone: "Europe/Berlin", at: "2027-10-30T12:00:00Z" });
    assert.equal(window.timezone, "Europe/Berlin");
    assert.equal(Date.parse(window.opens_at), Date.parse("2027-10-31T00:00:00Z"));
    assert.equal(Date.parse(window.closes_at), Date.parse("2027-10-31T05:00:00Z"));
    assert.equal(window.duration_seconds, 18000);
    assert.equal(window.open_now, false);

    const tenants = await offpeak.windows.next();
    assert.equal(tenants.timezone, "UTC");
    assert.equal(tenants.window, "02:00-06:00");

    const bad = await offpeak.windows.next({ timezone: "Mars/Olympus" }).catch((e: unknown) => e);
    assert.ok(bad instanceof OffpeakError);
    assert.equal(bad.code, "invalid_timezone");
  });

  test("usage and tenant count a job that succeeded", async () => {
    const offpeak = client();
    const job = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: unique("usage") }, priority: "normal", user_id: unique("user") });
    await waitFor("the job to succeed", async () => ((await offpeak.jobs.get(job.id)).state === "succeeded" ? true : undefined));

    const byModel = await offpeak.usage.get({ group_by: "model" });
    assert.equal(byModel.group_by, "model");
    assert.equal(byModel.timezone, "UTC");
    const schnell = byModel.groups["flux-schnell"];
    assert.ok(schnell && schnell.requests >= 1 && schnell.credits >= 1, JSON.stringify(byModel.groups));
    assert.ok(byModel.totals.credits >= schnell.credits);

    const byUser = await offpeak.usage.get({ group_by: "user" });
    const mine = byUser.groups[job.user_id ?? ""];
    assert.equal(mine?.requests, 1);
    assert.equal(mine?.credits, 1);

    const today = new Date().toISOString().slice(0, 10);
    const byDay = await offpeak.usage.get({ start: today, end: today, group_by: "day" });
    assert.ok(byDay.groups[today]);

    const bad = await offpeak.usage.get({ group_by: "planet" as "day" }).catch((e: unknown) => e);
    assert.ok(bad instanceof OffpeakError);
    assert.equal(bad.status, 400);
    assert.equal(bad.code, "invalid_query");
    assert.equal(bad.field, "group_by");

    const tenant = await offpeak.tenant.get();
    assert.equal(tenant.timezone, "UTC");
    assert.equal(tenant.window, "02:00-06:00");
    assert.equal(tenant.daily_credits, null);
    assert.ok(tenant.today.requests >= 1);
    assert.ok(tenant.quota.used >= 1);
  });

  test("healthz, readyz, metrics, openapi", async () => {
    const offpeak = client();
    assert.deepEqual(await offpeak.health.healthz(), { status: "ok" });
    assert.deepEqual(await offpeak.health.readyz(), { status: "ready", checks: { postgres: true, rabbitmq: true } });
    assert.match(await offpeak.health.metrics(), /^# (HELP|TYPE) offpeak_/m);
    const document = await offpeak.openapi();
    assert.equal(document.openapi, "3.1.0");
  });

  test("a wrong key is a typed 401", async () => {
    const offpeak = client({ apiKey: "op_not_a_key" });
    const error = await offpeak.tenant.get().catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakError);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthorized");
  });
});
