/** A parsed image reference, with Docker's defaults applied (docker.io, library/, latest). */
export interface ImageReference {
  /** Registry host[:port] as named (`docker.io` for Docker Hub). */
  registry: string;
  /** Repository path inside the registry, e.g. `library/debian` or `team/app`. */
  repository: string;
  tag: string | null;
  digest: string | null;
}

export const DOCKER_HUB = "docker.io";
/** Docker Hub's API host: `docker.io` itself serves no registry API. */
export const DOCKER_HUB_API = "registry-1.docker.io";

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

/** The reference is not one Sandpit can pull; the message says which part is wrong. */
export class ImageReferenceError extends Error {}

/**
 * Parses `[registry/]repository[:tag][@sha256:digest]` the way Docker does: the first path component
 * is a registry when it has a `.` or `:` or is `localhost`; Docker Hub names without a namespace get
 * `library/`; no tag and no digest means `latest`.
 *
 * @example
 * ```ts
 * parseImageReference("debian:13"); // { registry: "docker.io", repository: "library/debian", tag: "13", digest: null }
 * ```
 */
export function parseImageReference(uri: string): ImageReference {
  let rest = uri;
  let digest: string | null = null;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ImageReferenceError(`digest ${digest} is not sha256:<64 hex digits>`);
  }
  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ImageReferenceError(`tag "${tag}" is not a valid tag`);
  }
  const parts = rest.split("/");
  let registry = DOCKER_HUB;
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    registry = first;
    parts.shift();
    if (!HOST.test(registry)) throw new ImageReferenceError(`registry "${registry}" is not a host[:port]`);
  }
  if (registry === "index.docker.io" || registry === DOCKER_HUB_API) registry = DOCKER_HUB;
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw new ImageReferenceError(
      `repository "${parts.join("/")}" must be lowercase path components of letters, digits, '.', '_' and '-'`,
    );
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  const repository = parts.join("/");
  if (repository.length > 255) throw new ImageReferenceError("repository name is longer than 255 characters");
  if (tag === null && digest === null) tag = "latest";
  return { registry, repository, tag, digest };
}

/** The canonical form: `registry/repository:tag`, `registry/repository@digest` or both. */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== null ? `:${ref.tag}` : ""}${ref.digest !== null ? `@${ref.digest}` : ""}`;
}

/** What the manifest is fetched by: the digest when pinned (the tag is then only informative). */
export function manifestReferenceOf(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** Hosts whose registry is reached over plain HTTP: loopback, and the ones an admin lists. */
export function isInsecureRegistry(registry: string, insecure: string[]): boolean {
  const host = registry.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  if (host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)) return true;
  return insecure.includes(registry.toLowerCase()) || insecure.includes(host.toLowerCase());
}
