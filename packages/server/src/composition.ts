import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { FastifyBaseLogger } from "fastify";
import { ClusterJobs } from "./cluster/cluster-jobs.js";
import { NodeClient } from "./cluster/node-client.js";
import { NodeForwarder } from "./cluster/node-forwarder.js";
import { NodeMembership } from "./cluster/node-membership.js";
import { SandboxPlacer } from "./cluster/sandbox-placer.js";
import type { ServerConfig } from "./config.js";
import { ImageService } from "./images/image-service.js";
import { RegistryClient } from "./images/registry-client.js";
import { loadOrCreateSharedKey } from "./lib/server-key.js";
import { blockedDestinations, isBlockedAddress } from "./network/blocked-destinations.js";
import { DnsProxy, hostUpstream } from "./network/dns-proxy.js";
import { EgressAudit } from "./network/egress-audit.js";
import { EgressBroker } from "./network/egress-broker.js";
import { EgressCa } from "./network/egress-ca.js";
import { HostNetwork } from "./network/host-network.js";
import { OutboundGuard } from "./outbound/outbound-guard.js";
import { GvisorRuntime } from "./runtime/gvisor-runtime.js";
import { Runsc } from "./runtime/runsc.js";
import type { SandboxRuntime } from "./runtime/runtime.js";
import { AgentPool } from "./services/agent-pool.js";
import { AuthService } from "./services/auth-service.js";
import { CodeService } from "./services/code-service.js";
import { DesktopService } from "./services/desktop-service.js";
import { DesktopStreamService } from "./services/desktop-stream-service.js";
import { EventService } from "./services/event-service.js";
import { ExecService } from "./services/exec-service.js";
import { FileService } from "./services/file-service.js";
import { IdempotencyService } from "./services/idempotency-service.js";
import type { AppServices } from "./services/index.js";
import { MetricsSampler } from "./services/metrics-sampler.js";
import { NodeService } from "./services/node-service.js";
import { PortService } from "./services/port-service.js";
import { QuotaService } from "./services/quota-service.js";
import { SandboxDeaths } from "./services/sandbox-deaths.js";
import { SandboxMoves } from "./services/sandbox-moves.js";
import { SandboxOrigins } from "./services/sandbox-origin.js";
import { SandboxService } from "./services/sandbox-service.js";
import { SandboxSupervisor } from "./services/sandbox-supervisor.js";
import { ServerMetrics } from "./services/server-metrics.js";
import { SnapshotService } from "./services/snapshot-service.js";
import { TemplateBuildService } from "./services/template-build-service.js";
import { TerminalService } from "./services/terminal-service.js";
import { VolumeService } from "./services/volume-service.js";
import { WarmPoolService } from "./services/warm-pool-service.js";
import { WebhookService } from "./services/webhook-service.js";
import { SourceFetcher } from "./sources/source-fetcher.js";
import { openStore } from "./store/open-store.js";
import type { Store } from "./store/store.js";
import { TemplateService } from "./templates/template-service.js";

/** What the services run on: the host's drivers (gVisor, nftables, the egress proxies) or, in tests, fakes. */
export interface ServiceDrivers {
  store: Store;
  runtime: SandboxRuntime;
  egressAudit: EgressAudit;
  egressCa: EgressCa;
  logger: FastifyBaseLogger;
  /** Stops the drivers once the services are closed (the store is closed after it). */
  close?(): Promise<void>;
}

/** The wired services, with what runs them in the background and what stops them. */
export interface Composition {
  services: AppServices;
  store: Store;
  /** Brings the host and the database into agreement; once, before the server takes requests. */
  reconcile(): Promise<void>;
  /**
   * One round of background work; `tick` counts the rounds. This node's own sandboxes (deaths, expiries,
   * idle timeouts, warm-pool refills) on every node; the cluster-wide jobs (lost nodes, purges) on the node
   * that leads them (ClusterJobs).
   */
  maintain(tick: number): Promise<void>;
  /** Stops every service, then the drivers, then the store. Sandboxes keep running. */
  close(): Promise<void>;
}

/**
 * How long past its lease a node is declared lost: a moment for a renewal that is on its way (the lease
 * itself is SANDPIT_NODE_LEASE_TTL_MS).
 */
const LOST_NODE_GRACE_MS = 1000;

/** The server package's version, as nodes report it. */
function serverVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

export function parseHostPort(value: string, defaultPort?: number): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  if (i < 0 && defaultPort !== undefined) return { host: value, port: defaultPort };
  const port = Number(value.slice(i + 1));
  if (i < 0 || !Number.isInteger(port)) throw new Error(`expected host:port, got "${value}"`);
  return { host: value.slice(0, i).replace(/^\[|\]$/g, ""), port };
}

/**
 * The composition root: opens the store, sets up the host's network (firewall, DNS and egress proxies)
 * and the gVisor runtime, and wires every service over them.
 */
export async function createServices(
  config: ServerConfig,
  opts: { logger: FastifyBaseLogger; netPrefix: string },
): Promise<Composition> {
  const { logger, netPrefix } = opts;
  const store = await openStore(config, { server: true });
  const network = new HostNetwork(netPrefix);
  const upstream = config.dnsUpstream ? parseHostPort(config.dnsUpstream, 53) : hostUpstream();
  const dns = new DnsProxy(
    upstream,
    (a, ips) => network.admitResolved(a, ips),
    logger,
    (ip, name, ips, refused) => egressAudit.recordLookup(ip, name, ips, refused),
  );
  const dnsPort = await dns.start();
  const blockedCidrs = await blockedDestinations({
    sandboxSubnet: config.sandboxSubnet,
    netPrefix,
    allowPrivateNetworks: config.allowPrivateNetworks,
  });
  const egressAudit = new EgressAudit(store, {
    table: network.table,
    subnet: config.sandboxSubnet,
    retentionMs: config.egressLogRetentionMs,
    log: logger,
  });
  await egressAudit.start();
  const egressCa = new EgressCa(path.join(config.dataDir, "egress-ca"));
  const broker = new EgressBroker({
    ca: egressCa,
    resolve: (name) => dns.resolve(name),
    isBlocked: (ip) => isBlockedAddress(blockedCidrs, ip),
    upstreamCa: config.upstreamCaFile ? await readFile(config.upstreamCaFile, "utf8") : undefined,
    onRequest: (r) => egressAudit.recordBrokered(r),
    log: logger,
  });
  const brokerPort = await broker.start();
  await network.installFirewall({ subnet: config.sandboxSubnet, dnsPort, brokerPort, blockedCidrs });
  const runtime = new GvisorRuntime({
    dataDir: config.dataDir,
    runsc: new Runsc(
      config.runscPath,
      path.join(config.dataDir, "runsc"),
      config.runscPlatform,
      config.checkpointCompression,
    ),
    network,
    dns,
    broker,
    audit: egressAudit,
    subnet: config.sandboxSubnet,
    netPrefix,
    agentBinary: config.agentBinary,
    helperServerDirs: config.helperServerDirs,
    sharedDir: config.cluster.sharedDir,
  });
  await runtime.prepare();
  return wireServices(config, {
    store,
    runtime,
    egressAudit,
    egressCa,
    logger,
    async close() {
      await runtime.close();
      dns.close();
      broker.close();
      egressAudit.close();
      if (!(await network.removeFirewallIfUnused())) {
        logger.info("sandboxes keep running: their firewall table stays until the server starts again");
      }
    },
  });
}

/** Wires every service over the given drivers (by hand: the order is the dependency order). */
export async function wireServices(config: ServerConfig, drivers: ServiceDrivers): Promise<Composition> {
  const { store, runtime, egressAudit, egressCa, logger } = drivers;
  const templates = new TemplateService(config.templatesDir, config.debianMirror, (orgId, name, work, build) =>
    templateBuilds.build(orgId, name, work, build),
  );
  const auth = new AuthService(store);
  // On shared storage every node creates from a snapshot, whichever node took it.
  const snapshotDir = (id: string) => path.join(config.cluster.sharedDir ?? config.dataDir, "snapshots", id);
  const outbound = new OutboundGuard({
    allowedHosts: config.outboundAllowedHosts,
    sandboxSubnet: config.sandboxSubnet,
  });
  const images = new ImageService(
    path.join(config.dataDir, "images"),
    new RegistryClient({
      guard: outbound,
      insecureRegistries: config.insecureRegistries,
      mirrors: config.registryMirrors,
    }),
    logger,
  );
  await images.init();
  const origins = new SandboxOrigins(
    templates,
    new SourceFetcher(outbound, path.join(config.dataDir, "tmp")),
    images,
    egressCa,
  );
  const volumes = new VolumeService(
    store,
    path.join(config.dataDir, "volumes"),
    path.join(config.dataDir, "volume-access-token.key"),
    config.hostVolumePaths,
    logger,
  );
  await volumes.init();
  const agents = new AgentPool(runtime);
  const deaths = new SandboxDeaths(store, runtime, agents, logger);
  const sandboxes = new SandboxService(
    {
      store,
      runtime,
      origins,
      volumes,
      agents,
      deaths,
      log: logger,
      // The exec service needs this service, so it is made after it; the starter reaches it when called.
      startMainProcess: (record, agent, argv) => exec.startMainProcess(record, agent, argv),
      // The moves need this service and the node's membership, so they are made later.
      resumeElsewhere: (record) => moves.resumeElsewhere(record),
    },
    {
      maxPorts: config.maxPorts,
      defaultQuota: config.defaultQuota,
      snapshotDir,
      overcommit: config.cluster.overcommit,
    },
    await loadOrCreateSharedKey(store, "sandbox-client-token", path.join(config.dataDir, "sandbox-client-token.key")),
  );

  const snapshots = new SnapshotService(store, sandboxes, runtime, snapshotDir, logger);
  const nodes = new NodeService(store);
  const serverMetrics: ServerMetrics = new ServerMetrics(
    store,
    () => warmPools.list(),
    () => nodes.list(),
  );
  const nodeClient = new NodeClient(
    config.cluster.nodeId,
    config.cluster.secret ?? (await store.sharedKey("node-auth", randomBytes(32))).toString("hex"),
  );
  const placer = new SandboxPlacer(store, nodeClient, config.cluster.overcommit, logger);
  const warmPools = new WarmPoolService(
    store,
    sandboxes,
    placer,
    logger,
    serverMetrics,
    config.cluster.sharedDir !== undefined,
  );
  await warmPools.init(config.warmPools);
  const exec: ExecService = new ExecService(sandboxes, store, config.maxOutputBytes, serverMetrics);
  const terminals = new TerminalService(sandboxes, exec, logger);
  const code = new CodeService(sandboxes, exec, (template) => templates.warmCodeContexts(template));
  const desktop = new DesktopService(sandboxes, exec);
  // Sandboxes of templates with warm code contexts (code-interpreter) start their interpreters at once,
  // and desktop sandboxes their display.
  store.onEvents((events) => {
    for (const event of events) {
      if (event.type !== "sandbox.created" || event.data.node !== store.nodeId) continue;
      if (templates.warmCodeContexts(String(event.data.template)).length > 0) {
        code.warmUp(event.sandboxId).catch((err: unknown) => {
          logger.warn({ err, sandbox: event.sandboxId }, "starting the warm code contexts failed");
        });
      }
      desktop.warmUp(event.sandboxId).catch((err: unknown) => {
        logger.warn({ err, sandbox: event.sandboxId }, "starting the desktop failed");
      });
    }
  });
  const templateBuilds: TemplateBuildService = new TemplateBuildService(
    templates,
    sandboxes,
    origins,
    exec,
    runtime,
    logger,
    config.maxUploadBytes,
  );
  const files = new FileService(sandboxes);
  // Each needs the other: the proxy asks who opens a live view's port; a live view's URL is a proxy URL.
  const ports: PortService = new PortService(sandboxes, config.domain, (id, token) =>
    desktopStreams.streamAccess(id, token),
  );
  const desktopStreams: DesktopStreamService = new DesktopStreamService(sandboxes, exec, store, ports);
  const idempotency = new IdempotencyService(store);
  const quotas = new QuotaService(store, sandboxes);
  const events = new EventService(store, config.eventRetentionMs);
  // Webhook receivers are outbound requests on an organisation's behalf: the same guard as sources.
  const webhooks = new WebhookService(store, outbound, logger, config.webhooks);
  webhooks.start();
  const metricsSampler = new MetricsSampler(store, runtime, logger, config.metricsIntervalMs);
  // Idle means no API activity and no work of the sandbox's own: a job running in the background keeps it awake.
  const supervisor = new SandboxSupervisor(store, runtime, sandboxes, deaths, agents, logger, {
    hibernateAfterMs: config.hibernateAfterMs,
    liveIdleMax: config.liveIdleMax,
    hibernateUnderPressureAfterMs: config.hibernateUnderPressureAfterMs,
    workedSince: (id, sinceMs) => metricsSampler.workedSince(id, sinceMs),
  });
  const membership = new NodeMembership(
    store,
    { ...config.cluster, dataDir: config.dataDir, version: serverVersion() },
    logger,
  );
  const moves: SandboxMoves = new SandboxMoves({
    store,
    runtime,
    sandboxes,
    nodeClient,
    membership,
    log: logger,
    sharedStorage: config.cluster.sharedDir !== undefined,
  });
  // With SQLite this server is the only node: every sandbox is its own, no request needs an owner look-up.
  const forwarder = new NodeForwarder(nodeClient, (sandboxId) =>
    config.databaseUrl ? store.sandboxOwner(sandboxId) : Promise.resolve(undefined),
  );
  // Cut off long enough to be declared lost: the cluster wrote this node's running sandboxes off, so they
  // leave the host before the node registers again (a new epoch) and picks up the rest.
  membership.onFenced = async () => {
    const removed = await supervisor.removeStrays();
    logger.warn({ removed }, "fenced: removed the sandboxes the cluster wrote off");
    await membership.rejoin();
    await supervisor.reconcile().catch((e) => logger.error({ err: e }, "reconcile after rejoining failed"));
  };
  const clusterJobs = new ClusterJobs(
    store,
    membership,
    { leaseTtlMs: config.cluster.leaseTtlMs, lostGraceMs: LOST_NODE_GRACE_MS },
    [
      {
        name: "lost_nodes",
        everyTicks: 1,
        needsSettledLease: true,
        async run() {
          for (const { node, sandboxIds } of await store.declareLostNodes(LOST_NODE_GRACE_MS)) {
            logger.warn(
              { lostNode: node.id, epoch: node.epoch, sandboxes: sandboxIds },
              "node lost: its lease ran out",
            );
          }
        },
      },
      {
        name: "purge_destroyed",
        everyTicks: 1,
        run: async () => void (await store.purgeDestroyed(Date.now() - config.destroyedRetentionMs)),
      },
      { name: "purge_idempotency_keys", everyTicks: 1, run: () => idempotency.purge() },
      { name: "purge_events", everyTicks: 60, run: () => events.purge() },
      { name: "purge_egress_log", everyTicks: 60, run: () => egressAudit.purge() },
    ],
    serverMetrics,
    logger,
  );
  clusterJobs.start();

  return {
    services: {
      auth,
      sandboxes,
      exec,
      code,
      desktop,
      desktopStreams,
      files,
      templates,
      templateBuilds,
      images,
      terminals,
      egressAudit,
      ports,
      idempotency,
      quotas,
      snapshots,
      warmPools,
      events,
      webhooks,
      metricsSampler,
      serverMetrics,
      metricsPublic: config.metricsPublic,
      adminKey: config.adminKey,
      maxUploadBytes: config.maxUploadBytes,
      volumes,
      membership,
      nodeClient,
      moves,
      forwarder,
      nodes,
    },
    store,
    reconcile: () => supervisor.reconcile(),
    async maintain(tick) {
      // A fenced node leaves its sandboxes alone until it registered again.
      const own = !membership.fenced;
      await Promise.all([own ? supervisor.tick() : undefined, terminals.sweep(), clusterJobs.tick(tick)]);
      // Refilling starts sandboxes: it runs beside the tick, never twice at once.
      if (own) {
        void warmPools.refill();
        // So does a drain's moving of sandboxes to other nodes.
        moves.drainIfDraining();
      }
    },
    async close() {
      clusterJobs.stop();
      membership.leave();
      await moves.idle();
      metricsSampler.stop();
      sandboxes.close();
      webhooks.close();
      events.close();
      await drivers.close?.();
      await store.close();
    },
  };
}
