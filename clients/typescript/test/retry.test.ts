/**
 * The client's own logic against a tiny local server that answers what a
 * test asks for (429 and 503 with or without Retry-After, cut connections,
 * slow answers, JSON Lines in pieces), since the real server does not
 * produce those on demand.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { OffpeakClient, OffpeakConnectionError, OffpeakError, OffpeakStreamError, parseRetryAfter, type OffpeakClientOptions } from "../src/index.js";
import { collect } from "./helpers.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  at: number;
}
type Handler = (req: Seen, res: ServerResponse, n: number) => void;

let handler: Handler = (_req, res) => res.writeHead(500).end();
const seen: Seen[] = [];
let baseUrl = "";
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const entry = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: performance.now() };
    seen.push(entry);
    handler(entry, res, seen.length);
  });
});

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A fresh scenario: `handler` answers the n-th request (1-based). */
function scenario(h: Handler, options: OffpeakClientOptions = {}): OffpeakClient {
  seen.length = 0;
  handler = h;
  return new OffpeakClient({ baseUrl, apiKey: "op_test", retry: { baseDelayMs: 20, maxDelayMs: 100 }, ...options });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers }).end(text);
}

const JOB = {
  id: "01a242b6-c11d-7246-99d5-c2cc02d4b525",
  state: "held",
  model: "flux-schnell",
  input: { prompt: "a" },
  priority: "low",
  timezone: "UTC",
};
const busy = { error: { code: "unavailable", message: "the database is unreachable; retry later" } };
const quota = {
  error: { code: "quota_exceeded", message: "daily credit limit of 10 reached", details: { scope: "tenant", limit: 10, used: 10, requested: 5 } },
};
const submit = { model: "flux-schnell", input: { prompt: "a" } };

describe("retries", () => {
  test("429 with a short Retry-After, then success: waits that long, same Idempotency-Key", async () => {
    const offpeak = scenario((_req, res, n) => (n === 1 ? json(res, 429, busy, { "retry-after": "1" }) : json(res, 201, JOB)));
    const job = await offpeak.jobs.submit(submit);
    assert.equal(job.id, JOB.id);
    assert.equal(seen.length, 2);
    const [first, second] = seen as [Seen, Seen];
    assert.ok(second.at - first.at >= 950, `waited ${Math.round(second.at - first.at)} ms`);
    assert.match(String(first.headers["idempotency-key"]), /^[0-9a-f-]{36}$/);
    assert.equal(second.headers["idempotency-key"], first.headers["idempotency-key"]);
    assert.equal(second.body, first.body);
    assert.equal(first.headers.authorization, "Bearer op_test");
    assert.equal(first.headers["content-type"], "application/json");
  });

  test("503 without Retry-After: exponential backoff with jitter, then success", async () => {
    const offpeak = scenario((_req, res, n) => (n <= 2 ? json(res, 503, busy) : json(res, 200, JOB)), {
      retry: { baseDelayMs: 100, maxDelayMs: 1000 },
    });
    const job = await offpeak.jobs.get(JOB.id);
    assert.equal(job.id, JOB.id);
    assert.equal(seen.length, 3);
    const gaps = [seen[1]!.at - seen[0]!.at, seen[2]!.at - seen[1]!.at];
    assert.ok(gaps[0]! >= 45 && gaps[0]! < 1500, `first backoff ${gaps[0]} ms (50..100 expected)`);
    assert.ok(gaps[1]! >= 95 && gaps[1]! < 1500, `second backoff ${gaps[1]} ms (100..200 expected)`);
  });

  test("Retry-After as an HTTP date", async () => {
    const offpeak = scenario((_req, res, n) =>
      n === 1 ? json(res, 503, busy, { "retry-after": new Date(Date.now() + 2000).toUTCString() }) : json(res, 200, JOB),
    );
    await offpeak.jobs.get(JOB.id);
    assert.equal(seen.length, 2);
    assert.ok(seen[1]!.at - seen[0]!.at >= 900, `waited ${Math.round(seen[1]!.at - seen[0]!.at)} ms`);
  });

  test("a Retry-After longer than maxRetryWaitMs is not waited for: a typed error at once", async () => {
    const offpeak = scenario((_req, res) => json(res, 429, quota, { "retry-after": "41234" }));
    const started = performance.now();
    const error = await offpeak.jobs.submit(submit).catch((e: unknown) => e);
    assert.ok(performance.now() - started < 1500);
    assert.ok(error instanceof OffpeakError);
    assert.equal(error.status, 429);
    assert.equal(error.code, "quota_exceeded");
    assert.equal(error.retryAfter, 41234);
    assert.deepEqual(error.details, quota.error.details);
    assert.equal(error.attempts, 1);
    assert.equal(seen.length, 1);

    // The limit is the caller's: with a lower one, even 2 s is too long.
    const impatient = scenario((_req, res) => json(res, 503, busy, { "retry-after": "2" }), { retry: { maxRetryWaitMs: 1000 } });
    const quick = await impatient.jobs.get(JOB.id).catch((e: unknown) => e);
    assert.ok(quick instanceof OffpeakError && quick.status === 503 && quick.retryAfter === 2);
    assert.equal(seen.length, 1);
  });

  test("maxAttempts bounds the retries; the last answer is the error", async () => {
    const offpeak = scenario((_req, res) => json(res, 503, busy), { retry: { maxAttempts: 3, baseDelayMs: 5 } });
    const error = await offpeak.jobs.get(JOB.id).catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakError);
    assert.equal(error.status, 503);
    assert.equal(error.code, "unavailable");
    assert.equal(error.attempts, 3);
    assert.equal(seen.length, 3);

    const once = scenario((_req, res) => json(res, 503, busy), { retry: { maxAttempts: 1 } });
    await assert.rejects(once.jobs.get(JOB.id), OffpeakError);
    assert.equal(seen.length, 1);
  });

  test("other errors are not retried", async () => {
    for (const status of [400, 404, 409, 422, 500]) {
      const offpeak = scenario((_req, res) => json(res, status, { error: { code: `e${status}`, message: "no", field: "model" } }));
      const error = await offpeak.jobs.submit(submit).catch((e: unknown) => e);
      assert.ok(error instanceof OffpeakError);
      assert.equal(error.status, status);
      assert.equal(error.code, `e${status}`);
      assert.equal(error.field, "model");
      assert.equal(seen.length, 1, `${status} sent once`);
    }
  });

  test("an error body that is not the API's JSON still becomes an OffpeakError", async () => {
    const offpeak = scenario((_req, res) => res.writeHead(502, { "content-type": "text/html" }).end("<h1>Bad Gateway</h1>"));
    const error = await offpeak.tenant.get().catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakError);
    assert.equal(error.status, 502);
    assert.equal(error.code, "http_502");
    assert.match(error.message, /Bad Gateway/);
  });
});

describe("lost connections", () => {
  const cut: Handler = (_req, res) => res.socket?.destroy();

  test("a GET is retried", async () => {
    const offpeak = scenario((req, res, n) => (n === 1 ? cut(req, res, n) : json(res, 200, JOB)));
    assert.equal((await offpeak.jobs.get(JOB.id)).id, JOB.id);
    assert.equal(seen.length, 2);
  });

  test("a submission is retried under the same Idempotency-Key", async () => {
    const offpeak = scenario((req, res, n) => (n <= 2 ? cut(req, res, n) : json(res, 201, JOB)));
    assert.equal((await offpeak.jobs.submit(submit, { idempotencyKey: "thumb-42" })).id, JOB.id);
    assert.deepEqual(
      seen.map((s) => s.headers["idempotency-key"]),
      ["thumb-42", "thumb-42", "thumb-42"],
    );
  });

  test("a bulk submission is retried under the same Idempotency-Key", async () => {
    const offpeak = scenario((req, res, n) =>
      n === 1 ? cut(req, res, n) : json(res, 201, { ids: [JOB.id], count: 1, state: "held", cache_hits: 0, group_id: JOB.id }),
    );
    assert.deepEqual((await offpeak.jobs.bulk({ model: "flux-schnell", inputs: [{ prompt: "a" }] })).ids, [JOB.id]);
    assert.equal(seen.length, 2);
    assert.match(String(seen[0]?.headers["idempotency-key"]), /^[0-9a-f-]{36}$/);
    assert.equal(seen[1]?.headers["idempotency-key"], seen[0]?.headers["idempotency-key"]);
  });

  test("submissions without a key, and creating a webhook, are not retried after a lost connection", async () => {
    const offpeak = scenario(cut);
    const error = await offpeak.jobs.bulk({ model: "flux-schnell", inputs: [{ prompt: "a" }] }, { idempotencyKey: null }).catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakConnectionError, String(error));
    assert.equal(error.timedOut, false);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.headers["idempotency-key"], undefined);

    const unkeyed = scenario(cut);
    await assert.rejects(unkeyed.jobs.submit(submit, { idempotencyKey: null }), OffpeakConnectionError);
    assert.equal(seen.length, 1);

    const hook = scenario(cut);
    await assert.rejects(hook.webhooks.create({ url: "https://example.com/hook" }), OffpeakConnectionError);
    assert.equal(seen.length, 1);
  });

  test("no server at all: an OffpeakConnectionError after the attempts", async () => {
    const offpeak = new OffpeakClient({ baseUrl: "http://127.0.0.1:9", apiKey: "op_test", retry: { maxAttempts: 2, baseDelayMs: 5 } });
    const error = await offpeak.health.healthz().catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakConnectionError, String(error));
    assert.match(error.message, /ECONNREFUSED|fetch failed/);
  });

  test("a slow answer times out and is retried", async () => {
    const offpeak = scenario((_req, res, n) => (n === 1 ? setTimeout(() => json(res, 200, JOB), 1500) : json(res, 200, JOB)), {
      timeoutMs: 300,
    });
    assert.equal((await offpeak.jobs.get(JOB.id)).id, JOB.id);
    assert.equal(seen.length, 2);

    const slow = scenario((_req, res) => setTimeout(() => json(res, 200, JOB), 1500), { timeoutMs: 200, retry: { maxAttempts: 2, baseDelayMs: 5 } });
    const error = await slow.jobs.get(JOB.id).catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakConnectionError, String(error));
    assert.equal(error.timedOut, true);
  });

  test("the caller's signal cancels the call, its waits included", async () => {
    const offpeak = scenario((_req, res) => json(res, 503, busy, { "retry-after": "5" }));
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 200);
    const started = performance.now();
    await assert.rejects(offpeak.jobs.get(JOB.id, { signal: controller.signal }), /stop/);
    assert.ok(performance.now() - started < 3000, "not the 5 s of Retry-After");
  });
});

describe("groups.results streams JSON Lines", () => {
  const line = (i: number) => JSON.stringify({ id: `id-${i}`, state: "succeeded", result: { url: `u${i}` }, credits: 1, metadata: null });

  test("lines are yielded as they arrive, split anywhere", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const offpeak = scenario((_req, res) => {
      res.writeHead(200, { "content-type": "application/jsonl" });
      const first = `${line(1)}\n${line(2)}\n`;
      // A line cut in the middle of a multi-byte character and of a chunk.
      const third = `${JSON.stringify({ id: "id-3", state: "failed", error: { message: "Zürich ☕" }, credits: 0, metadata: { k: "é" } })}\n`;
      const bytes = Buffer.from(third);
      res.write(first);
      res.write(bytes.subarray(0, bytes.indexOf(0xc3) + 1));
      void gate.then(() => {
        res.write(bytes.subarray(bytes.indexOf(0xc3) + 1));
        res.end(`\n${line(4)}\n`);
      });
    });
    const iterator = offpeak.groups.results("g");
    const one = await iterator.next();
    const two = await iterator.next();
    // Both arrived while the server still holds the rest back: not buffered whole.
    assert.equal(one.value?.id, "id-1");
    assert.equal(two.value?.id, "id-2");
    release();
    const rest = await collect({ [Symbol.asyncIterator]: () => iterator });
    assert.deepEqual(
      rest.map((l) => l.id),
      ["id-3", "id-4"],
    );
    assert.deepEqual(rest[0]?.error, { message: "Zürich ☕" });
    assert.equal(seen[0]?.url, "/v1/groups/g/results");
  });

  test("a body cut short throws OffpeakStreamError, not a quiet end", async () => {
    const offpeak = scenario((_req, res) => {
      res.writeHead(200, { "content-type": "application/jsonl" });
      res.end(`${line(1)}\n${line(2).slice(0, 20)}`);
    });
    const got: string[] = [];
    const error = await (async () => {
      for await (const l of offpeak.groups.results("g")) got.push(l.id);
    })().catch((e: unknown) => e);
    assert.deepEqual(got, ["id-1"]);
    assert.ok(error instanceof OffpeakStreamError, String(error));
    assert.equal(error.linesRead, 1);

    const reset = scenario((_req, res) => {
      res.writeHead(200, { "content-type": "application/jsonl" });
      res.write(`${line(1)}\n`);
      setTimeout(() => res.socket?.destroy(), 50);
    });
    await assert.rejects(collect(reset.groups.results("g")), OffpeakStreamError);
  });

  test("errors before the body are thrown as OffpeakError, after retries", async () => {
    const offpeak = scenario((_req, res, n) =>
      n === 1 ? json(res, 503, busy) : json(res, 404, { error: { code: "not_found", message: "no group of this tenant has this id" } }),
    );
    const error = await collect(offpeak.groups.results("g")).catch((e: unknown) => e);
    assert.ok(error instanceof OffpeakError);
    assert.equal(error.code, "not_found");
    assert.equal(seen.length, 2);
  });
});

test("parseRetryAfter: seconds, HTTP dates, junk", () => {
  const now = Date.parse("2027-06-01T12:00:00Z");
  assert.equal(parseRetryAfter("120", now), 120);
  assert.equal(parseRetryAfter(" 0 ", now), 0);
  assert.equal(parseRetryAfter("Tue, 01 Jun 2027 12:01:30 GMT", now), 90);
  assert.equal(parseRetryAfter("Tue, 01 Jun 2027 11:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter("soon", now), undefined);
  assert.equal(parseRetryAfter("-5", now), undefined);
  assert.equal(parseRetryAfter(null, now), undefined);
  assert.equal(parseRetryAfter("", now), undefined);
});
