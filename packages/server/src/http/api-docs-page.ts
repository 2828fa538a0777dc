/**
 * The OpenAPI document as one self-contained HTML page (no scripts, no CDN: browsers next to a
 * self-hosted server often have no internet): routes grouped by tag, each with its parameters, body and
 * responses, schemas shown as nested property lists.
 */

interface JsonSchema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  nullable?: boolean;
  default?: unknown;
  additionalProperties?: boolean | JsonSchema;
}

interface Operation {
  summary?: string;
  tags?: string[];
  parameters?: { name: string; in: string; required?: boolean; schema?: JsonSchema }[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }>; description?: string };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: JsonSchema }> }>;
  security?: unknown[];
}

export interface ApiDocument {
  info?: { title?: string; description?: string };
  paths: Record<string, Record<string, unknown>>;
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** A schema's type in a few words: `string`, `array of object`, `"a" | "b"`, `integer | null`. */
function typeName(schema: JsonSchema): string {
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return variants.map(typeName).join(" | ");
  if (schema.allOf?.length === 1) return typeName(schema.allOf[0]!);
  const base = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type ?? "any");
  const named = base === "array" && schema.items ? `array of ${typeName(schema.items)}` : base;
  return schema.nullable ? `${named} | null` : named;
}

/** The properties of an object schema (or of the objects in it) as a nested list. */
function renderSchema(schema: JsonSchema | undefined, depth = 0): string {
  if (!schema || depth > 6) return "";
  const target = schema.type === "array" && schema.items ? schema.items : schema;
  const variants = target.anyOf ?? target.oneOf;
  if (variants && !target.properties) {
    const objects = variants.filter((v) => v.properties);
    if (objects.length === 0) return "";
    return `<ol class="variants">${objects.map((v) => `<li>${renderSchema(v, depth + 1)}</li>`).join("")}</ol>`;
  }
  if (!target.properties) return "";
  const items = Object.entries(target.properties).map(([name, prop]) => {
    const required = target.required?.includes(name) ? ' <span class="req">required</span>' : "";
    const fallback =
      prop.default === undefined ? "" : ` <span class="def">default ${escapeHtml(JSON.stringify(prop.default))}</span>`;
    const description = prop.description ? ` — ${escapeHtml(prop.description)}` : "";
    return `<li><code>${escapeHtml(name)}</code> <span class="type">${escapeHtml(typeName(prop))}</span>${required}${fallback}${description}${renderSchema(prop, depth + 1)}</li>`;
  });
  return `<ul>${items.join("")}</ul>`;
}

function renderContent(content: Record<string, { schema?: JsonSchema }> | undefined): string {
  return Object.entries(content ?? {})
    .map(
      ([type, { schema }]) =>
        `<div class="content"><code>${escapeHtml(type)}</code>${schema ? ` <span class="type">${escapeHtml(typeName(schema))}</span>` : ""}${renderSchema(schema)}</div>`,
    )
    .join("");
}

function renderOperation(method: string, path: string, op: Operation): string {
  const id = `${method}-${path}`.replace(/[^A-Za-z0-9]+/g, "-");
  const parts = [
    `<section class="route" id="${escapeHtml(id)}"><h3><span class="method ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>`,
    `<p>${escapeHtml(op.summary ?? "")}</p>`,
  ];
  if (op.security?.length === 0) parts.push('<p class="public">No API key needed.</p>');
  if (op.parameters?.length) {
    const rows = op.parameters.map(
      (p) =>
        `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${escapeHtml(p.in)}</td><td>${escapeHtml(p.schema ? typeName(p.schema) : "string")}</td><td>${p.required ? "yes" : "no"}</td><td>${escapeHtml(p.schema?.description ?? "")}</td></tr>`,
    );
    parts.push(
      `<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>${rows.join("")}</table>`,
    );
  }
  if (op.requestBody) {
    const description = op.requestBody.description ? `<p>${escapeHtml(op.requestBody.description)}</p>` : "";
    parts.push(`<h4>Body</h4>${description}${renderContent(op.requestBody.content)}`);
  }
  const responses = Object.entries(op.responses ?? {}).map(
    ([status, r]) =>
      `<li><strong>${escapeHtml(status)}</strong> ${escapeHtml(r.description ?? "")}${renderContent(r.content)}</li>`,
  );
  if (responses.length) parts.push(`<h4>Responses</h4><ul class="responses">${responses.join("")}</ul>`);
  parts.push("</section>");
  return parts.join("\n");
}

const STYLE = `body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem 2rem;color:#222}
code{font-family:ui-monospace,monospace}h2{border-bottom:2px solid #ddd;margin-top:2.5rem}
.route{border-left:3px solid #ccc;padding-left:1rem;margin:1.5rem 0}.method{font-weight:700;padding:0 .4rem;border-radius:3px;color:#fff;background:#555}
.get{background:#2b6cb0}.post{background:#2f855a}.put{background:#b7791f}.patch{background:#805ad5}.delete{background:#c53030}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.type{color:#555}.req{color:#c53030;font-size:.85em}.def{color:#777;font-size:.85em}.public{color:#2f855a}
nav ul{columns:3}`;

/** Renders the OpenAPI document as a standalone HTML page. */
export function renderApiDocsPage(doc: ApiDocument): string {
  const byTag = new Map<string, string[]>();
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const tag = (op as Operation).tags?.[0] ?? "other";
      byTag.set(tag, [...(byTag.get(tag) ?? []), renderOperation(method, path, op as Operation)]);
    }
  }
  const title = escapeHtml(doc.info?.title ?? "API");
  const nav = [...byTag.keys()].map((tag) => `<li><a href="#tag-${escapeHtml(tag)}">${escapeHtml(tag)}</a></li>`);
  const sections = [...byTag.entries()].map(
    ([tag, ops]) => `<h2 id="tag-${escapeHtml(tag)}">${escapeHtml(tag)}</h2>\n${ops.join("\n")}`,
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title}</title><style>${STYLE}</style></head>
<body><h1>${title}</h1><p>${escapeHtml(doc.info?.description ?? "")}. Send the API key as <code>Authorization: Bearer &lt;key&gt;</code>. Errors are <code>{"error": {"code", "message", "details"?}}</code>. The machine-readable document is <a href="/v1/openapi.json">/v1/openapi.json</a>.</p>
<nav><ul>${nav.join("")}</ul></nav>
${sections.join("\n")}
</body></html>
`;
}
