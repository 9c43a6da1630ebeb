/** Jobs against the real server: submit, idempotency, bulk, get, list and iterate, cancel, upgrade. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OffpeakError, type Job } from "../src/index.js";
import { HELD_TZ, UUID_RE, client, collect, unique, waitFor } from "./helpers.js";

/** A client that records the Idempotency-Key of every request it sends. */
function recordingClient() {
  const keys: (string | null)[] = [];
  const offpeak = client({
    fetch: (request) => {
      keys.push(request.headers.get("idempotency-key"));
      return fetch(request);
    },
  });
  return { offpeak, keys };
}

async function finished(id: string): Promise<Job> {
  const offpeak = client();
  return waitFor(`job ${id} to finish`, async () => {
    const job = await offpeak.jobs.get(id);
    return ["succeeded", "failed", "dead", "cancelled"].includes(job.state) ? job : undefined;
  });
}

describe("jobs", () => {
  test("submit sends a fresh Idempotency-Key by default, and answers the stored job", async () => {
    const { offpeak, keys } = recordingClient();
    const prompt = unique("submit");
    const job = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt, width: 512 }, timezone: HELD_TZ, metadata: { sku: 42, tags: ["a"] } });
    assert.match(job.id, UUID_RE);
    assert.equal(job.state, "held");
    assert.equal(job.priority, "low");
    assert.equal(job.timezone, HELD_TZ);
    assert.deepEqual(job.input, { prompt, width: 512 });
    assert.deepEqual(job.metadata, { sku: 42, tags: ["a"] });
    assert.ok(job.release_at.startsWith("20"));

    await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: `${prompt}-2` }, timezone: HELD_TZ });
    assert.equal(keys.length, 2);
    assert.match(keys[0] ?? "", UUID_RE);
    assert.match(keys[1] ?? "", UUID_RE);
    assert.notEqual(keys[0], keys[1], "each call gets its own key");

    const got = await offpeak.jobs.get(job.id);
    assert.equal(got.id, job.id);
    assert.deepEqual(got.metadata, { sku: 42, tags: ["a"] });
  });

  test("a caller's key: a replay answers the same job, another body under it is a 409", async () => {
    const { offpeak, keys } = recordingClient();
    const key = unique("key");
    const body = { model: "flux-schnell", input: { prompt: unique("replay") }, priority: "low" as const, timezone: HELD_TZ };
    const first = await offpeak.jobs.submit(body, { idempotencyKey: key });
    const replay = await offpeak.jobs.submit({ ...body, input: { ...body.input } }, { idempotencyKey: key });
    assert.equal(replay.id, first.id);
    assert.deepEqual(keys, [key, key]);

    const conflict = await offpeak.jobs.submit({ ...body, input: { prompt: "another body" } }, { idempotencyKey: key }).catch((e: unknown) => e);
    assert.ok(conflict instanceof OffpeakError, String(conflict));
    assert.equal(conflict.status, 409);
    assert.equal(conflict.code, "idempotency_conflict");
    assert.equal(conflict.attempts, 1, "a 409 is not retried");
  });

  test("idempotencyKey: null sends none", async () => {
    const { offpeak, keys } = recordingClient();
    const job = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: unique("nokey") }, timezone: HELD_TZ }, { idempotencyKey: null });
    assert.match(job.id, UUID_RE);
    assert.deepEqual(keys, [null]);
  });

  test("a bad submission is a typed 422 naming the field, and nothing is stored", async () => {
    const offpeak = client();
    const error = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: "x" }, timezone: "Mars/Olympus" }).catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakError);
    assert.equal(error.status, 422);
    assert.equal(error.code, "invalid_timezone");
    assert.equal(error.field, "timezone");
    assert.match(error.message, /Mars\/Olympus/);

    const missing = await offpeak.jobs.get("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    assert.ok(missing instanceof OffpeakError);
    assert.equal(missing.status, 404);
    assert.equal(missing.code, "not_found");
  });

  test("bulk stores every input as one group; each job can be read", async () => {
    const offpeak = client();
    const tag = unique("bulk");
    const answer = await offpeak.jobs.bulk({
      model: "flux-dev",
      inputs: [{ prompt: `${tag} a` }, { prompt: `${tag} b` }, { prompt: `${tag} c` }],
      timezone: HELD_TZ,
      metadata: { tag },
    });
    assert.equal(answer.count, 3);
    assert.equal(answer.ids.length, 3);
    assert.equal(answer.state, "held");
    assert.match(answer.group_id, UUID_RE);
    const jobs = await Promise.all(answer.ids.map((id) => offpeak.jobs.get(id)));
    jobs.forEach((job, i) => {
      assert.equal(job.group_id, answer.group_id);
      assert.equal(job.timezone, HELD_TZ);
      assert.deepEqual(job.input, { prompt: `${tag} ${"abc"[i]}` });
    });
    const group = await offpeak.groups.get(answer.group_id);
    assert.equal(group.counts.total, 3);
    assert.equal(group.counts.held, 3);
    assert.equal(group.completed_at, null);
  });

  test("bulk sends an Idempotency-Key too: a replay answers the same jobs, another body is a 409", async () => {
    const { offpeak, keys } = recordingClient();
    const tag = unique("bulk-key");
    const body = { model: "flux-schnell", inputs: [{ prompt: `${tag} 1` }, { prompt: `${tag} 2` }], timezone: HELD_TZ };
    const first = await offpeak.jobs.bulk(body);
    assert.match(keys[0] ?? "", UUID_RE, "a fresh key by default");

    const key = unique("bulk-key");
    const mine = await offpeak.jobs.bulk(body, { idempotencyKey: key });
    assert.notDeepEqual(mine.ids, first.ids, "another key, other jobs");
    const replay = await offpeak.jobs.bulk(body, { idempotencyKey: key });
    assert.deepEqual(replay.ids, mine.ids);
    assert.equal(replay.group_id, mine.group_id);
    const conflict = await offpeak.jobs.bulk({ ...body, inputs: [{ prompt: "another" }] }, { idempotencyKey: key }).catch((e: unknown) => e);
    assert.ok(conflict instanceof OffpeakError);
    assert.equal(conflict.status, 409);
    assert.equal(conflict.code, "idempotency_conflict");
    assert.deepEqual(keys.slice(1), [key, key, key]);
  });

  test("list answers one page; iterate walks every page with next_cursor", async () => {
    const offpeak = client();
    const model = "stable-audio";
    const tag = unique("pages");
    const submitted = await offpeak.jobs.bulk({ model, inputs: Array.from({ length: 7 }, (_, i) => ({ prompt: `${tag} ${i}` })), timezone: HELD_TZ });

    const page = await offpeak.jobs.list({ state: "held", model, limit: 2 });
    assert.equal(page.jobs.length, 2);
    assert.ok(page.next_cursor, "a full page has a next_cursor");
    const next = await offpeak.jobs.list({ state: "held", model, limit: 2, cursor: page.next_cursor });
    assert.ok(next.jobs.every((j) => !page.jobs.some((p) => p.id === j.id)), "the next page holds other jobs");

    // Count the pages the iterator asks for: with 2 per page, at least 4 for our 7 jobs.
    let requests = 0;
    const counting = client({
      fetch: (request) => {
        requests++;
        return fetch(request);
      },
    });
    const all = await collect(counting.jobs.iterate({ state: "held", model, limit: 2 }));
    assert.ok(requests >= 4, `${requests} pages`);
    const ids = all.map((j) => j.id);
    assert.equal(new Set(ids).size, ids.length, "no job twice");
    for (const id of submitted.ids) assert.ok(ids.includes(id), `job ${id} listed`);
    assert.ok(all.every((j) => j.state === "held" && j.model === model));
    // Newest first: our jobs appear in the reverse of their ids' order.
    const ours = all.filter((j) => submitted.ids.includes(j.id)).map((j) => j.created_at);
    assert.deepEqual(ours, [...ours].sort().reverse());

    // Stopping early fetches no more pages.
    requests = 0;
    for await (const job of counting.jobs.iterate({ state: "held", model, limit: 2 })) {
      assert.ok(job.id);
      break;
    }
    assert.equal(requests, 1);
  });

  test("cancel a held job; cancelling it again, or a finished job, is a 409 not_cancellable", async () => {
    const offpeak = client();
    const held = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: unique("cancel") }, priority: "low", timezone: HELD_TZ });
    const cancelled = await offpeak.jobs.cancel(held.id);
    assert.equal(cancelled.id, held.id);
    assert.equal(cancelled.state, "cancelled");

    const again = await offpeak.jobs.cancel(held.id).catch((e: unknown) => e);
    assert.ok(again instanceof OffpeakError);
    assert.equal(again.status, 409);
    assert.equal(again.code, "not_cancellable");

    const quick = await offpeak.jobs.submit({ model: "flux-schnell", input: { prompt: unique("done") }, priority: "normal" });
    const done = await finished(quick.id);
    assert.equal(done.state, "succeeded");
    const late = await offpeak.jobs.cancel(quick.id).catch((e: unknown) => e);
    assert.ok(late instanceof OffpeakError);
    assert.equal(late.status, 409);
    assert.equal(late.code, "not_cancellable");
  });

  test("upgrade a succeeded preview once; a job that has not succeeded is a 409", async () => {
    const offpeak = client();
    const preview = await offpeak.jobs.submit({
      model: "auto",
      use_case: "hero-image",
      preview: { use_case: "thumbnail" },
      input: { prompt: unique("preview") },
      timezone: HELD_TZ,
    });
    assert.equal(preview.model, "flux-schnell");
    assert.equal(preview.priority, "normal");
    assert.deepEqual(preview.upgrade, { model: "flux-pro", use_case: "hero-image" });
    const done = await finished(preview.id);
    assert.equal(done.state, "succeeded");
    assert.ok(done.result);

    const full = await offpeak.jobs.upgrade(preview.id);
    assert.equal(full.parent_id, preview.id);
    assert.equal(full.model, "flux-pro");
    assert.equal(full.priority, "low");
    assert.equal(full.state, "held");
    const twice = await offpeak.jobs.upgrade(preview.id);
    assert.equal(twice.id, full.id, "the same upgrade again answers the same job");
    assert.deepEqual((await offpeak.jobs.get(preview.id)).children, [full.id]);

    const notYet = await offpeak.jobs.upgrade(full.id, { model: "flux-pro" }).catch((e: unknown) => e);
    assert.ok(notYet instanceof OffpeakError);
    assert.equal(notYet.status, 409);
    assert.equal(notYet.code, "not_upgradable");
  });
});
