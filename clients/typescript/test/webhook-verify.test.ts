/** verifyWebhook against the Standard Webhooks test vector and deliveries signed here. */
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { WebhookVerificationError, verifyWebhook } from "../src/index.js";

const SECRET = `whsec_${randomBytes(32).toString("base64")}`;

function sign(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

function delivery(body: string, at = Math.floor(Date.now() / 1000), secret = SECRET) {
  const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
  return { "webhook-id": id, "webhook-timestamp": String(at), "webhook-signature": sign(secret, id, at, body) };
}

const BODY = JSON.stringify({
  type: "job.succeeded",
  timestamp: "2027-06-01T02:03:04.000000Z",
  data: { id: "01a242b6-c11d-7246-99d5-c2cc02d4b525", state: "succeeded", credits: 1 },
});

const refused = (pattern: RegExp) => (e: unknown) => e instanceof WebhookVerificationError && pattern.test(e.message);

describe("verifyWebhook", () => {
  test("the Standard Webhooks specification's example verifies", () => {
    // From the specification's reference libraries' tests.
    const headers = {
      "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
      "webhook-timestamp": "1614265330",
      "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    };
    const body = '{"test": 2432232314}';
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert.throws(() => verifyWebhook(secret, headers, body), refused(/too old/));
    // Verified as of when it was signed (it is not an offpeak event, so the shape check refuses it after the signature passed).
    assert.throws(() => verifyWebhook(secret, headers, body, { now: 1614265330_000 }), refused(/not an event/));
    assert.throws(() => verifyWebhook(secret, { ...headers, "webhook-signature": "v1,AAAA" }, body, { now: 1614265330_000 }), refused(/signature/));
  });

  test("returns the parsed event, from a string, a Buffer, a Uint8Array, any header case", () => {
    const headers = delivery(BODY);
    const event = verifyWebhook(SECRET, headers, BODY);
    assert.equal(event.type, "job.succeeded");
    assert.equal(event.data.id, "01a242b6-c11d-7246-99d5-c2cc02d4b525");
    assert.deepEqual(verifyWebhook(SECRET, headers, Buffer.from(BODY)), event);
    assert.deepEqual(verifyWebhook(SECRET, headers, new TextEncoder().encode(BODY)), event);
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    assert.deepEqual(verifyWebhook(SECRET, upper, BODY), event);
    assert.deepEqual(verifyWebhook(SECRET, new Headers(headers), BODY), event);
    // A secret without its prefix is its base64 all the same.
    assert.deepEqual(verifyWebhook(SECRET.slice(6), headers, BODY), event);
  });

  test("several signatures: any one that matches will do", () => {
    const at = Math.floor(Date.now() / 1000);
    const id = "msg_rotated";
    const previous = `whsec_${randomBytes(32).toString("base64")}`;
    const signature = [sign(previous, id, at, BODY), "v2,notsupported", sign(SECRET, id, at, BODY)].join(" ");
    const headers = { "webhook-id": id, "webhook-timestamp": String(at), "webhook-signature": signature };
    assert.equal(verifyWebhook(SECRET, headers, BODY).type, "job.succeeded");
    assert.equal(verifyWebhook(previous, headers, BODY).type, "job.succeeded");
    assert.equal(verifyWebhook(["whsec_AAAA", SECRET], headers, BODY).type, "job.succeeded");
    // Node gives a repeated header as an array.
    const repeated = { ...headers, "webhook-signature": [sign(previous, id, at, BODY), sign(SECRET, id, at, BODY)] };
    assert.equal(verifyWebhook(SECRET, repeated, BODY).type, "job.succeeded");
  });

  test("refuses tampering, replays, wrong secrets and malformed headers", () => {
    const now = Math.floor(Date.now() / 1000);
    const headers = delivery(BODY, now);
    assert.throws(() => verifyWebhook(SECRET, headers, BODY.replace('"credits":1', '"credits":0')), refused(/signature/));
    assert.throws(() => verifyWebhook(SECRET, headers, `${BODY} `), refused(/signature/));
    assert.throws(() => verifyWebhook(SECRET, { ...headers, "webhook-id": "msg_other" }, BODY), refused(/signature/));
    assert.throws(() => verifyWebhook(`whsec_${randomBytes(32).toString("base64")}`, headers, BODY), refused(/signature/));

    // The timestamp is signed: moving it breaks the signature...
    assert.throws(() => verifyWebhook(SECRET, { ...headers, "webhook-timestamp": String(now + 1) }, BODY), refused(/signature/));
    // ... and a genuine one older or newer than 5 minutes is refused.
    assert.throws(() => verifyWebhook(SECRET, delivery(BODY, now - 301), BODY), refused(/too old/));
    assert.throws(() => verifyWebhook(SECRET, delivery(BODY, now + 301), BODY), refused(/future/));
    assert.equal(verifyWebhook(SECRET, delivery(BODY, now - 290), BODY).type, "job.succeeded");
    assert.equal(verifyWebhook(SECRET, delivery(BODY, now - 3000), BODY, { toleranceSeconds: 3600 }).type, "job.succeeded");

    const { "webhook-signature": _s, ...unsigned } = headers;
    assert.throws(() => verifyWebhook(SECRET, unsigned, BODY), refused(/missing/));
    assert.throws(() => verifyWebhook(SECRET, { ...headers, "webhook-timestamp": "yesterday" }, BODY), refused(/Unix time/));
    assert.throws(() => verifyWebhook(SECRET, { ...headers, "webhook-signature": "g0hM9SsE" }, BODY), refused(/signature/));
    assert.throws(() => verifyWebhook([], headers, BODY), refused(/no secret/));

    const notJson = "not json";
    assert.throws(() => verifyWebhook(SECRET, delivery(notJson, now), notJson), refused(/not JSON/));
  });
});
