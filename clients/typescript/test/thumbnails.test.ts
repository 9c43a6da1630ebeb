/**
 * "Submit tonight's thumbnails and get a webhook when the group completes",
 * end to end: a receiver on 127.0.0.1, a group of thumbnails, the signed
 * `group.completed` delivery verified with the secret from registering the
 * endpoint, the group's results streamed, the delivery listed and replayed
 * after a secret rotation.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { WebhookVerificationError, verifyWebhook, type GroupCompletedEvent, type JobEvent, type WebhookEvent } from "../src/index.js";
import { client, collect, unique, waitFor } from "./helpers.js";

interface Received {
  headers: IncomingHttpHeaders;
  body: Buffer;
  event: WebhookEvent;
}

/** A webhook receiver that keeps every delivery, answering 200. */
async function receiver() {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        received.push({ headers: req.headers, body, event: JSON.parse(body.toString("utf8")) as WebhookEvent });
      } catch {
        // not an event: ignore
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/offpeak`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

test("submit tonight's thumbnails and get a webhook when the group completes", async () => {
  const offpeak = client();
  const hooks = await receiver();
  const endpoint = await offpeak.webhooks.create({
    url: hooks.url,
    events: ["group.completed", "job.succeeded", "job.failed", "job.dead"],
    description: unique("thumbnails"),
  });
  try {
    // Tonight's thumbnails: `normal` so that the test need not wait for 02:00.
    const batch = unique("thumbs");
    const skus = [101, 102, 103, 104];
    const submitted = await offpeak.jobs.bulk({
      model: "flux-schnell",
      inputs: skus.map((sku) => ({ prompt: `${batch}: product shot of sku ${sku}`, width: 256, height: 256 })),
      priority: "normal",
      metadata: { batch },
    });
    const groupId = submitted.group_id;

    const completed = await waitFor(
      "the group.completed delivery",
      async () => hooks.received.find((r) => r.event.type === "group.completed" && r.event.data.id === groupId),
      30_000,
      50,
    );

    // Verified with the secret from creating the endpoint, from Node's headers or a fetch Headers.
    const event = verifyWebhook(endpoint.secret, completed.headers, completed.body);
    assert.equal(event.type, "group.completed");
    const group = (event as GroupCompletedEvent).data;
    assert.equal(group.id, groupId);
    assert.equal(group.name, null);
    assert.deepEqual(group.counts, { held: 0, queued: 0, running: 0, succeeded: 4, failed: 0, dead: 0, cancelled: 0, total: 4 });
    assert.equal(group.credits, 4);
    const asHeaders = new Headers();
    for (const [name, value] of Object.entries(completed.headers)) if (typeof value === "string") asHeaders.set(name, value);
    assert.deepEqual(verifyWebhook(endpoint.secret, asHeaders, completed.body.toString("utf8")), event);
    assert.match(String(completed.headers["webhook-id"]), /^msg_/);

    // Refused: a tampered body, a stale timestamp (a replay 10 minutes later), a wrong secret.
    const tampered = Buffer.from(completed.body.toString("utf8").replace('"succeeded": 4', '"succeeded": 5'));
    assert.notDeepEqual(tampered, completed.body);
    assert.throws(() => verifyWebhook(endpoint.secret, completed.headers, tampered), WebhookVerificationError);
    const sentAt = Number(completed.headers["webhook-timestamp"]) * 1000;
    assert.throws(
      () => verifyWebhook(endpoint.secret, completed.headers, completed.body, { now: sentAt + 10 * 60_000 }),
      (e: unknown) => e instanceof WebhookVerificationError && /too old/.test(e.message),
    );
    const otherSecret = `whsec_${randomBytes(32).toString("base64")}`;
    assert.throws(
      () => verifyWebhook(otherSecret, completed.headers, completed.body),
      (e: unknown) => e instanceof WebhookVerificationError && /signature/.test(e.message),
    );
    const forgedId = { ...completed.headers, "webhook-id": "msg_forged" };
    assert.throws(() => verifyWebhook(endpoint.secret, forgedId, completed.body), WebhookVerificationError);

    // One job.succeeded per thumbnail, each verified.
    const jobEvents = await waitFor(
      "the job.succeeded deliveries",
      async () => {
        const mine = hooks.received.filter((r) => r.event.type === "job.succeeded" && r.event.data.group_id === groupId);
        return mine.length >= skus.length ? mine : undefined;
      },
      30_000,
      50,
    );
    const verified = jobEvents.map((r) => verifyWebhook(endpoint.secret, r.headers, r.body) as JobEvent);
    assert.deepEqual(verified.map((e) => e.data.id).sort(), [...submitted.ids].sort());
    for (const e of verified) {
      assert.equal(e.data.state, "succeeded");
      assert.equal(e.data.credits, 1);
      assert.deepEqual(e.data.metadata, { batch });
      assert.ok(e.data.result);
    }

    // The group as the API shows it, and every result as JSON Lines.
    const view = await offpeak.groups.get(groupId);
    assert.ok(view.completed_at);
    assert.equal(view.counts.succeeded, 4);
    assert.equal(view.credits, 4);
    const lines = await collect(offpeak.groups.results(groupId));
    assert.deepEqual(
      lines.map((l) => l.id),
      [...submitted.ids].sort(),
      "one line per job, in id order",
    );
    for (const line of lines) {
      assert.equal(line.state, "succeeded");
      assert.equal(line.credits, 1);
      assert.deepEqual(line.metadata, { batch });
      assert.equal(typeof line.result?.url, "string");
    }

    // The endpoint's deliveries: the group's, delivered at the first attempt.
    const delivery = await waitFor("the delivery to be listed as delivered", async () => {
      const page = await offpeak.webhooks.deliveries(endpoint.id, { limit: 1000 });
      return page.deliveries.find(
        (d) => d.event_type === "group.completed" && `msg_${d.event_id.replaceAll("-", "")}` === completed.headers["webhook-id"] && d.state === "delivered",
      );
    });
    assert.equal(delivery.attempts, 1);
    assert.equal(delivery.attempt_log[0]?.status, 200);

    // Rotate the secret, replay the delivery: the same webhook-id comes again,
    // signed with both secrets while the previous one is still valid.
    const rotated = await offpeak.webhooks.rotateSecret(endpoint.id);
    const replay = await offpeak.webhooks.replay(endpoint.id, delivery.id);
    assert.equal(replay.id, delivery.id);
    const again = await waitFor(
      "the replayed delivery",
      async () => {
        const copies = hooks.received.filter((r) => r.headers["webhook-id"] === completed.headers["webhook-id"]);
        return copies.length >= 2 ? copies[copies.length - 1] : undefined;
      },
      30_000,
      50,
    );
    assert.deepEqual(again.body, completed.body, "the same body");
    assert.equal(String(again.headers["webhook-signature"]).split(" ").length, 2, "signed by both secrets");
    assert.deepEqual(verifyWebhook(rotated.secret, again.headers, again.body), event);
    assert.deepEqual(verifyWebhook(endpoint.secret, again.headers, again.body), event);
    assert.deepEqual(verifyWebhook([otherSecret, rotated.secret], again.headers, again.body), event);
  } finally {
    await offpeak.webhooks.delete(endpoint.id);
    await hooks.close();
  }
});
