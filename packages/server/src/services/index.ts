import type { NodeClient } from "../cluster/node-client.js";
import type { NodeForwarder } from "../cluster/node-forwarder.js";
import type { NodeMembership } from "../cluster/node-membership.js";
import type { ImageService } from "../images/image-service.js";
import type { EgressAudit } from "../network/egress-audit.js";
import type { TemplateService } from "../templates/template-service.js";
import type { AuthService } from "./auth-service.js";
import type { CodeService } from "./code-service.js";
import type { DesktopService } from "./desktop-service.js";
import type { DesktopStreamService } from "./desktop-stream-service.js";
import type { EventService } from "./event-service.js";
import type { ExecService } from "./exec-service.js";
import type { FileService } from "./file-service.js";
import type { IdempotencyService } from "./idempotency-service.js";
import type { MetricsSampler } from "./metrics-sampler.js";
import type { NodeService } from "./node-service.js";
import type { PortService } from "./port-service.js";
import type { QuotaService } from "./quota-service.js";
import type { SandboxMoves } from "./sandbox-moves.js";
import type { SandboxService } from "./sandbox-service.js";
import type { ServerMetrics } from "./server-metrics.js";
import type { SnapshotService } from "./snapshot-service.js";
import type { TemplateBuildService } from "./template-build-service.js";
import type { TerminalService } from "./terminal-service.js";
import type { VolumeService } from "./volume-service.js";
import type { WarmPoolService } from "./warm-pool-service.js";
import type { WebhookService } from "./webhook-service.js";

/**
 * Everything the HTTP layer is built over, as `createServices` (composition.ts) wires it. Routes and
 * dialects take the part they use (a `Pick<>` of this), never the whole bag.
 */
export interface AppServices {
  auth: AuthService;
  sandboxes: SandboxService;
  exec: ExecService;
  /** Code contexts (live interpreters) and cells run in them. */
  code: CodeService;
  /** Desktops: screenshots, mouse, keyboard, windows of a sandbox's display. */
  desktop: DesktopService;
  desktopStreams: DesktopStreamService;
  files: FileService;
  templates: TemplateService;
  templateBuilds: TemplateBuildService;
  images: ImageService;
  terminals: TerminalService;
  egressAudit: EgressAudit;
  ports: PortService;
  idempotency: IdempotencyService;
  quotas: QuotaService;
  snapshots: SnapshotService;
  warmPools: WarmPoolService;
  events: EventService;
  webhooks: WebhookService;
  /** Per-sandbox resource samples. */
  metricsSampler: MetricsSampler;
  /** The server's Prometheus metrics. */
  serverMetrics: ServerMetrics;
  /** Serve `/metrics` without the admin key. */
  metricsPublic: boolean;
  adminKey: string | undefined;
  maxUploadBytes: number;
  volumes: VolumeService;
  /** This server as a node of the cluster (with SQLite: the only node). */
  membership: NodeMembership;
  /** Signed requests between nodes (internal calls, forwarded requests) and their check. */
  nodeClient: NodeClient;
  /** Sandboxes that change node: resumes elsewhere, drains. */
  moves: SandboxMoves;
  /** Passes requests for sandboxes on other nodes to them, and checks those other nodes pass here. */
  forwarder: NodeForwarder;
  /** The cluster's nodes for operators: list, drain, undrain. */
  nodes: NodeService;
}
