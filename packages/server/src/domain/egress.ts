/** One outbound connection attempt (or brokered request, or DNS decision) of a sandbox. */
export interface EgressLogRecord {
  seq: number;
  orgId: string;
  sandboxId: string;
  at: number;
  protocol: "tcp" | "udp" | "icmp" | "http" | "https" | "dns";
  ip: string | null;
  port: number | null;
  domain: string | null;
  decision: "allowed" | "denied";
  rule: string;
  bytesOut: number | null;
  bytesIn: number | null;
  detail: string | null;
}

export interface EgressLogFilter {
  sandboxId?: string;
  since?: number;
  decision?: "allowed" | "denied";
  /** Only entries after this sequence number (for following). */
  afterSeq?: number;
  limit?: number;
}
