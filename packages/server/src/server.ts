import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import pino from "pino";
import { buildApp } from "./app.js";
import { loadConfig, type ServerConfig } from "./config.js";
import { ImageService } from "./images/image-service.js";
import { RegistryClient } from "./images/registry-client.js";
import type { ApiKeyFormat } from "./lib/ids.js";
import { loadOrCreateServerKey } from "./lib/server-key.js";
import { blockedDestinations, isBlockedAddress } from "./network/blocked-destinations.js";
import { DnsProxy, hostUpstream } from "./network/dns-proxy.js";
import { EgressAudit } from "./network/egress-audit.js";
import { EgressBroker } from "./network/egress-broker.js";
import { EgressCa } from "./network/egress-ca.js";
import { HostNetwork } from "./network/host-network.js";
import { OutboundGuard } from "./outbound/outbound-guard.js";
import { GvisorRuntime } from "./runtime/gvisor-runtime.js";
import { Runsc } from "./runtime/runsc.js";
import { AuthService } from "./services/auth-service.js";
import { EventService } from "./services/event-service.js";
import { ExecService } from "./services/exec-service.js";
import { FileService } from "./services/file-service.js";
import { IdempotencyService } from "./services/idempotency-service.js";
import { MetricsSampler } from "./services/metrics-sampler.js";
import { PortService } from "./services/port-service.js";
import { QuotaService } from "./services/quota-service.js";
import { SandboxOrigins } from "./services/sandbox-origin.js";
import { SandboxService } from "./services/sandbox-service.js";
import { ServerMetrics } from "./services/server-metrics.js";
import { SnapshotService } from "./services/snapshot-service.js";
import { TemplateBuildService } from "./services/template-build-service.js";
import { TerminalService } from "./services/terminal-service.js";
import { VolumeService } from "./services/volume-service.js";
import { WarmPoolService } from "./services/warm-pool-service.js";
import { WebhookService } from "./services/webhook-service.js";
import { SourceFetcher } from "./sources/source-fetcher.js";
import { openStore } from "./store/open-store.js";
import { TemplateService } from "./templates/template-service.js";

export interface StartServerOptions {
  listen?: string;
  dataDir?: string;
  apiKey?: string;
  /** Separates several servers on one host: veth/netns names and the nftables table. Default "sp". */
  netPrefix?: string;
  sandboxSubnet?: string;
  templatesDir?: string;
}

export interface RunningServer {
  url: string;
  /** The key generated on first start, if one was. */
  generatedApiKey: string | undefined;
  close(): Promise<void>;
}

const TICK_MS = 1000;

function parseHostPort(value: string, defaultPort?: number): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  if (i < 0 && defaultPort !== undefined) return { host: value, port: defaultPort };
  const port = Number(value.slice(i + 1));
  if (i < 0 || !Number.isInteger(port)) throw new Error(`expected host:port, got "${value}"`);
  return { host: value.slice(0, i).replace(/^\[|\]$/g, ""), port };
}

/**
 * Wires the services by hand, reconciles the host with the database, and listens. Sandboxes keep
 * running when the server stops; the next start picks them up.
 */
export async function startServer(opts: StartServerOptions = {}): Promise<RunningServer> {
  const config: ServerConfig = loadConfig({
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.listen ? { listen: opts.listen } : {}),
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    ...(opts.sandboxSubnet ? { sandboxSubnet: opts.sandboxSubnet } : {}),
    ...(opts.templatesDir ? { templatesDir: opts.templatesDir } : {}),
  });
  const netPrefix = opts.netPrefix ?? process.env.SANDPIT_NET_PREFIX ?? "sp";
  if (!/^[a-z]{1,4}$/.test(netPrefix)) throw new Error("SANDPIT_NET_PREFIX must be 1-4 lowercase letters");
  // Asynchronous writes: a synchronous write to a slow reader (a pipe, a busy journald) would stall the
  // event loop, and every request with it. pino flushes what is buffered when the process exits.
  const logger = pino({ level: config.logLevel, base: { service: "sandpit" } }, pino.destination({ sync: false }));
  await mkdir(config.dataDir, { recursive: true });

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
    runsc: new Runsc(config.runscPath, path.join(config.dataDir, "runsc")),
    network,
    dns,
    broker,
    audit: egressAudit,
    subnet: config.sandboxSubnet,
    netPrefix,
    agentBinary: config.agentBinary,
  });
  await runtime.prepare();
  const templates = new TemplateService(config.templatesDir, config.debianMirror);
  const auth = new AuthService(store);
  const snapshotDir = (id: string) => path.join(config.dataDir, "snapshots", id);
  const outbound = new OutboundGuard({
    allowedHosts: config.outboundAllowedHosts,
    sandboxSubnet: config.sandboxSubnet,
  });
  const origins = new SandboxOrigins(templates, new SourceFetcher(outbound, path.join(config.dataDir, "tmp")));
  origins.setEgressCa(egressCa);
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
  origins.setImageResolver(images);
  const volumes = new VolumeService(
    store,
    path.join(config.dataDir, "volumes"),
    path.join(config.dataDir, "volume-access-token.key"),
    config.hostVolumePaths,
    logger,
  );
  await volumes.init();
  const sandboxes = new SandboxService(
    store,
    runtime,
    origins,
    volumes,
    logger,
    { maxPorts: config.maxPorts, defaultQuota: config.defaultQuota, snapshotDir },
    await loadOrCreateServerKey(path.join(config.dataDir, "sandbox-client-token.key")),
  );
  const snapshots = new SnapshotService(store, sandboxes, runtime, snapshotDir, logger);
  const serverMetrics: ServerMetrics = new ServerMetrics(store, () => warmPools.list());
  const warmPools = new WarmPoolService(store, sandboxes, logger, serverMetrics);
  await warmPools.init(config.warmPools);
  const exec = new ExecService(sandboxes, store, config.maxOutputBytes, serverMetrics);
  sandboxes.setMainProcessStarter((record, agent, argv) => exec.startMainProcess(record, agent, argv));
  const terminals = new TerminalService(sandboxes, exec, logger);
  const templateBuilds = new TemplateBuildService(
    templates,
    sandboxes,
    origins,
    exec,
    runtime,
    logger,
    config.maxUploadBytes,
  );
  const files = new FileService(sandboxes);
  const ports = new PortService(sandboxes, config.domain);
  const idempotency = new IdempotencyService(store);
  const quotas = new QuotaService(store, sandboxes);
  const events = new EventService(store, config.eventRetentionMs);
  // Webhook receivers are outbound requests on an organisation's behalf: the same guard as sources.
  const webhooks = new WebhookService(store, outbound, logger, config.webhooks);
  webhooks.start();

  let generatedApiKey: string | undefined;
  if (config.apiKey) await auth.registerKey("default", config.apiKey);
  else if (!(await auth.hasAnyKey())) {
    generatedApiKey = (await auth.createKey("default", "generated on first start")).key;
    process.stderr.write(`\nSandpit API key for organisation "default" (shown once):\n\n  ${generatedApiKey}\n\n`);
  }

  await sandboxes.reconcile();
  let ticking = false;
  let ticks = 0;
  const metricsSampler = new MetricsSampler(store, runtime, logger, config.metricsIntervalMs);
  metricsSampler.start();
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    ticks++;
    Promise.all([
      sandboxes.tick(),
      terminals.sweep(),
      ticks % 60 === 0 ? egressAudit.purge() : undefined,
      ticks % 60 === 0 ? events.purge() : undefined,
      store.purgeDestroyed(Date.now() - config.destroyedRetentionMs),
      idempotency.purge(),
    ])
      .then(() => {
        // Refilling starts sandboxes: it runs beside the tick, never twice at once.
        void warmPools.refill();
      })
      .catch((e) => logger.error({ err: e }, "background tick failed"))
      .finally(() => {
        ticking = false;
      });
  }, TICK_MS);

  const app = buildApp(
    {
      auth,
      sandboxes,
      exec,
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
    },
    logger,
  );
  const { host, port } = parseHostPort(config.listen);
  const address = await app.listen({ host, port });
  logger.info(
    { address, dataDir: config.dataDir, store: config.databaseUrl ? "postgresql" : "sqlite" },
    "sandpit listening",
  );

  return {
    url: address,
    generatedApiKey,
    async close() {
      clearInterval(timer);
      metricsSampler.stop();
      await app.close();
      sandboxes.close();
      webhooks.close();
      events.close();
      dns.close();
      broker.close();
      egressAudit.close();
      if (!(await network.removeFirewallIfUnused())) {
        logger.info("sandboxes keep running: their firewall table stays until the server starts again");
      }
      await store.close();
    },
  };
}

/** Creates an API key for an organisation (creating the organisation) directly in the data directory. */
export async function createApiKey(opts: {
  dataDir?: string;
  org: string;
  /** `e2b`: a key in E2B's shape (`e2b_<hex>`), for E2B clients. */
  format?: ApiKeyFormat;
}): Promise<{ key: string; org: string }> {
  const config = loadConfig(opts.dataDir ? { dataDir: opts.dataDir } : {});
  const store = await openStore(config);
  try {
    const { key, org } = await new AuthService(store).createKey(opts.org, "created", opts.format);
    return { key, org: org.name };
  } finally {
    await store.close();
  }
}
