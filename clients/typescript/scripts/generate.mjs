// Generates src/generated/schema.ts from the API's OpenAPI document with
// openapi-typescript's Node API: the same options as its CLI would take,
// plus one transform (see JSON_VALUE below). Deterministic: no timestamps,
// no formatter; the same document always gives byte-identical output.
//
// usage: node scripts/generate.mjs <openapi.json> <out.ts>
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER, tsUnion, STRING, NUMBER, BOOLEAN, NULL } from "openapi-typescript";
import ts from "typescript";

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: node scripts/generate.mjs <openapi.json> <out.ts>");
  process.exit(2);
}

// `components.schemas.Json` ("any JSON value without NUL characters") has no
// `type` but has `additionalProperties` and `items`, so openapi-typescript
// reads it as an object of objects: `metadata: {"sku": 42}` and every
// `input` with a string in it would not type-check. Written as a union of
// the JSON types inside `components`, it would refer to itself through
// `components["schemas"]["Json"][]`, which TypeScript refuses (TS2502), so
// it becomes a reference to a recursive type alias appended to the file:
// `JsonValue`, any JSON value.
const JSON_SCHEMA = "#/components/schemas/Json";
const JSON_VALUE = "JsonValue";
function jsonValueAlias() {
  const self = ts.factory.createTypeReferenceNode(JSON_VALUE);
  const object = ts.factory.createTypeLiteralNode([
    ts.factory.createIndexSignature(
      undefined,
      [ts.factory.createParameterDeclaration(undefined, undefined, "key", undefined, STRING)],
      self,
    ),
  ]);
  const alias = ts.factory.createTypeAliasDeclaration(
    [ts.factory.createModifier(ts.SyntaxKind.ExportKeyword)],
    JSON_VALUE,
    undefined,
    tsUnion([STRING, NUMBER, BOOLEAN, NULL, ts.factory.createArrayTypeNode(self), object]),
  );
  return ts.addSyntheticLeadingComment(
    alias,
    ts.SyntaxKind.MultiLineCommentTrivia,
    "* Any JSON value: what `components[\"schemas\"][\"Json\"]` means (added by scripts/generate.mjs). ",
    true,
  );
}

const ast = await openapiTS(pathToFileURL(path.resolve(input)), {
  // `{"type": "object"}` without properties (a job's `input`, an error's
  // `details`) is an object of any JSON, not `Record<string, never>`.
  emptyObjectsUnknown: true,
  // A `default` (the `cache` of a submission) does not make a request
  // property required.
  defaultNonNullable: false,
  silent: true,
  transform(schemaObject, options) {
    if (options.path === JSON_SCHEMA) return ts.factory.createTypeReferenceNode(JSON_VALUE);
    return undefined;
  },
});

fs.mkdirSync(path.dirname(output), { recursive: true });
fs.writeFileSync(output, COMMENT_HEADER + astToString([...ast, jsonValueAlias()]), "utf8");
