/** Display helpers: ages, sizes and times as an operator reads them. */

/** "45s", "12m", "3h 5m", "2d 4h": the two largest units of a duration. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** Time since an RFC 3339 timestamp. */
export function age(since: string, now = Date.now()): string {
  return formatDuration(now - Date.parse(since));
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** Bytes in binary units with up to one decimal: "512 B", "1.5 KiB", "2 GiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const rounded = unit === 0 || value >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
  return `${rounded} ${UNITS[unit]}`;
}

/** A megabyte count as the API gives resources: "512 MiB", "2 GiB". */
export function formatMb(mb: number): string {
  return formatBytes(mb * 1024 * 1024);
}

/** "used / limit" with the share of the limit, or only "used" when there is no limit. */
export function formatUsage(used: number, limit: number): string {
  if (!limit) return formatBytes(used);
  return `${formatBytes(used)} / ${formatBytes(limit)} (${Math.round((used / limit) * 100)}%)`;
}

/** A timestamp in the browser's local time, to the second. */
export function formatTime(at: string): string {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? at : d.toLocaleString(undefined, { hour12: false });
}

/**
 * Splits the metadata search box: `key=value` words filter on the server (exact match), other words
 * match anywhere in a sandbox's id, template or metadata.
 */
export function parseSearch(text: string): { metadata: Record<string, string>; words: string[] } {
  const metadata: Record<string, string> = {};
  const words: string[] = [];
  for (const token of text.trim().split(/\s+/).filter(Boolean)) {
    const eq = token.indexOf("=");
    if (eq > 0) metadata[token.slice(0, eq)] = token.slice(eq + 1);
    else words.push(token.toLowerCase());
  }
  return { metadata, words };
}

/** Parses "key=value" lines (the create form's metadata box); blank lines are skipped. */
export function parseKeyValueLines(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`metadata line ${i + 1}: expected key=value, got "${line}"`);
    result[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return result;
}

/** Joins a directory and a name into an absolute path. */
export function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name}`;
}

/** The parent of an absolute path ("/" stays "/"). */
export function parentPath(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const cut = trimmed.lastIndexOf("/");
  return cut <= 0 ? "/" : trimmed.slice(0, cut);
}
