/**
 * The TypeScript SDK of Sandpit, a self-hosted sandbox platform on gVisor.
 *
 * @example
 * ```ts
 * import { Sandbox } from "sandpit";
 *
 * const sandbox = await Sandbox.create();
 * const result = await sandbox.commands.run("uname -a", { onStdout: (data) => process.stdout.write(data) });
 * await sandbox.kill();
 * ```
 *
 * @module
 */
export type { ErrorCode, ExecStreamEvent, FieldIssue, Resources } from "@sandpit/contract";
export {
  Admin,
  Meta,
  type OpenApiDocument,
  type OrgQuota,
  type OrgQuotaResponse,
  type PutWarmPoolRequest,
  type WarmPool,
  type WarmPoolStatus,
} from "./admin.js";
export {
  ApiClient,
  backoffDelayMs,
  type HttpMethod,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  type RequestOptions,
  type RetryHooks,
  type StreamResponse,
} from "./api-client.js";
export {
  Code,
  type CodeCallbacks,
  type CodeContext,
  type CodeError,
  type CodeEvent,
  type CodeExecution,
  type CodeLanguage,
  type CodeResult,
  type CreateCodeContextOptions,
  type RunCodeOptions,
} from "./code.js";
export {
  CommandHandle,
  type CommandInfo,
  type CommandResult,
  Commands,
  type OutputCallbacks,
  type RunOptions,
  type Signal,
} from "./commands.js";
export {
  type ConnectionOptions,
  DEFAULT_API_URL,
  DEFAULT_MAX_RETRIES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type FetchFunction,
  type ResolvedConfig,
  resolveConfig,
} from "./config.js";
export {
  Desktop,
  type DesktopPoint,
  type DesktopState,
  type DesktopWindow,
  type MouseButton,
  type ScreenshotOptions,
  type ScrollDirection,
} from "./desktop.js";
export { type DesktopStream, DesktopStreams, type StartDesktopStreamOptions } from "./desktop-stream.js";
export {
  EgressLog,
  type EgressLogEntry,
  type EgressLogFilter,
  type EgressLogFollowOptions,
} from "./egress-log.js";
export {
  AuthenticationError,
  type ClientErrorCode,
  ConflictError,
  createError,
  FileNotFoundError,
  ImageAuthError,
  NetworkError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  SandboxNotFoundError,
  SandpitError,
  type SandpitErrorCode,
  type SandpitErrorInit,
  ServerError,
  TimeoutError,
  ValidationError,
} from "./errors.js";
export {
  type CreatedWebhook,
  type CreateWebhookRequest,
  type EventFilter,
  type EventStreamOptions,
  Events,
  type EventType,
  type SandpitEvent,
  type Webhook,
  type WebhookDeliveryAttempt,
  Webhooks,
} from "./events.js";
export { type FileEntry, Files, type ReadFormat, type WriteData, type WriteInfo } from "./files.js";
export { type Image, type ImagePullEvent, Images, type PullCallbacks, type PullImageRequest } from "./images.js";
export { parseNdjson, parseNdjsonEvents } from "./ndjson.js";
export { type ClusterNode, type NodeState, Nodes } from "./nodes.js";
export { type SdkRoute, sdkRoutes } from "./routes.js";
export {
  type CreateSandboxRequest,
  type ExposedPort,
  type MetadataPatch,
  type MetricsSample,
  type NetworkPolicyInput,
  Sandbox,
  type SandboxFilter,
  type SandboxInfo,
  type SandboxMetrics,
  type SandboxPorts,
  type SandboxStatus,
} from "./sandbox.js";
export { type Snapshot, Snapshots } from "./snapshots.js";
export { parseSse, type SseMessage } from "./sse.js";
export {
  type BuildCallbacks,
  type Template,
  type TemplateBuildEvent,
  type TemplateDefinition,
  Templates,
} from "./templates.js";
export { Terminal, type TerminalInfo, type TerminalOptions, Terminals } from "./terminals.js";
export { type CreateVolumeRequest, type Volume, type VolumeMount, Volumes } from "./volumes.js";
