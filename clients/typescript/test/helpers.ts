/**
 * What the tests share: the stack's variables, clients of its tenants, and
 * names no other test (nor another run against the same tenant) uses.
 */
import { createHash, randomUUID } from "node:crypto";
import { OffpeakClient, type OffpeakClientOptions } from "../src/index.js";

export function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the tests with ../../target/debug/offpeak-client-stack -- ./test.sh (see README.md)`);
  }
  return value;
}

/** The tenant `clients` (timezone UTC). */
export function client(options: OffpeakClientOptions = {}): OffpeakClient {
  return new OffpeakClient({ baseUrl: env("OFFPEAK_URL"), apiKey: env("OFFPEAK_API_KEY"), ...options });
}

/** Another tenant, which must never see the first one's objects. */
export function rival(): OffpeakClient {
  return new OffpeakClient({ baseUrl: env("OFFPEAK_URL"), apiKey: env("OFFPEAK_RIVAL_API_KEY") });
}

/** A tenant with a daily limit of 10 credits. */
export function frugal(options: OffpeakClientOptions = {}): OffpeakClient {
  return new OffpeakClient({ baseUrl: env("OFFPEAK_URL"), apiKey: env("OFFPEAK_FRUGAL_API_KEY"), ...options });
}

/** A name (or prompt) of this test only: the exact cache never answers it from another run's job. */
export function unique(prefix: string): string {
  return `ts-${prefix}-${randomUUID()}`;
}

/** Calls `probe` every `intervalMs` until it returns something other than undefined; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** JSON with object keys sorted at every level (the simulator's canonical form, for ASCII strings). */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** How many times the simulator billed this input of this model (`GET $OFFPEAK_SIM_URL/v1/stats/inputs`). */
export async function timesBilled(model: string, input: unknown): Promise<number> {
  const hash = createHash("sha256").update(`${model}\0${canonical(input)}`).digest("hex");
  const response = await fetch(`${env("OFFPEAK_SIM_URL")}/v1/stats/inputs`);
  if (!response.ok) throw new Error(`simulator inputs: HTTP ${response.status}`);
  return ((await response.json()) as Record<string, number>)[hash] ?? 0;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Collects an async iterable. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/**
 * A timezone whose off-peak window (02:00–06:00) is at least an hour away
 * now, so `low` jobs submitted in it stay `held` while the test runs,
 * whatever the time of day the suite runs at.
 */
export const HELD_TZ: string = (() => {
  for (const timeZone of ["UTC", "Asia/Tokyo", "America/New_York"]) {
    const hour = Number(new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", hourCycle: "h23" }).format(new Date()));
    if (hour < 1 || hour >= 7) return timeZone;
  }
  return "UTC";
})();
