import { OffpeakConnectionError, OffpeakStreamError } from "./errors.js";

/**
 * Yields one parsed value per line of a JSON Lines body as the bytes arrive:
 * only the current partial line is ever held, whatever the body's size.
 *
 * Every line the server writes ends with `\n`, so a body that ends without
 * one was cut short (the server stops mid-stream when its database fails):
 * that, and a connection lost mid-body, throw an {@link OffpeakStreamError}
 * instead of ending quietly with a missing tail. Stopping the iteration
 * early (`break`) cancels the body.
 */
export async function* parseJsonLines<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let lines = 0;
  let done = false;
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw new OffpeakStreamError(`the results stream broke after ${lines} lines`, lines, new OffpeakConnectionError(String(error), { cause: error }));
      }
      if (chunk.done) {
        buffer += decoder.decode();
        break;
      }
      buffer += decoder.decode(chunk.value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line === "") continue;
        yield parseLine<T>(line, lines);
        lines++;
      }
    }
    done = true;
    if (buffer.trim() !== "") {
      throw new OffpeakStreamError(`the results stream ended in the middle of line ${lines + 1} (truncated by the server)`, lines);
    }
  } finally {
    if (!done) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

function parseLine<T>(line: string, linesBefore: number): T {
  try {
    return JSON.parse(line) as T;
  } catch (error) {
    throw new OffpeakStreamError(`line ${linesBefore + 1} of the results stream is not JSON`, linesBefore, error);
  }
}
