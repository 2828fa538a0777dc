/** How to open and close one kind of listener (a TCP server, a UDP socket). */
export interface ListenerKind<L> {
  open(host: string, port: number): Promise<L>;
  portOf(listener: L): number;
  close(listener: L): void;
}

const RESERVATION_HOST = "127.0.0.1";

/**
 * The listeners of a host service that sandboxes reach at their gateway (the host end of their veth,
 * where nftables redirects them): one per gateway of a sandbox it serves, so the service listens on no
 * other address of the host. They all share one port, chosen at `reserve()` and held meanwhile by a
 * listener on loopback that no sandbox can reach — a wildcard listener elsewhere on the host can then not
 * take the port away from the gateways.
 */
export class GatewayListeners<L> {
  private reservation: L | undefined;
  private port: number | undefined;
  private readonly byGateway = new Map<string, Promise<L>>();

  constructor(private readonly kind: ListenerKind<L>) {}

  /** Picks the port and holds it; returns it. */
  async reserve(): Promise<number> {
    this.reservation = await this.kind.open(RESERVATION_HOST, 0);
    this.port = this.kind.portOf(this.reservation);
    return this.port;
  }

  /** Listens on a gateway (once, however often it is asked). */
  async add(gateway: string): Promise<void> {
    if (this.port === undefined) throw new Error("GatewayListeners.reserve() was not called");
    let listener = this.byGateway.get(gateway);
    if (!listener) {
      listener = this.kind.open(gateway, this.port);
      this.byGateway.set(gateway, listener);
      // A failed listen is not kept: the next policy change tries again.
      listener.catch(() => {
        if (this.byGateway.get(gateway) === listener) this.byGateway.delete(gateway);
      });
    }
    await listener;
  }

  async remove(gateway: string): Promise<void> {
    const listener = this.byGateway.get(gateway);
    if (!listener) return;
    this.byGateway.delete(gateway);
    const opened = await listener.catch(() => undefined);
    if (opened) this.kind.close(opened);
  }

  close() {
    if (this.reservation) this.kind.close(this.reservation);
    for (const listener of this.byGateway.values()) {
      listener.then((l) => this.kind.close(l)).catch(() => undefined);
    }
    this.byGateway.clear();
  }
}
