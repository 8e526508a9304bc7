// A protocol's serving side, run the js-libp2p way (as protocol-ping and protocol-identify do): the service keeps
// the components it was given and does nothing in the constructor; start() registers the handler and stop()
// removes it, so a role starts and stops its protocols as a list of Startables. Each protocol's service says only
// how it serves one stream.
import type { Connection, Startable, Stream } from '@libp2p/interface'
import type { GridHost } from './host.ts'

export abstract class ProtocolService<Components extends { host: GridHost }> implements Startable {
  protected readonly components: Components
  private readonly protocol: string
  private readonly maxInboundStreams: number

  /** `maxInboundStreams`: streams of this protocol one connection may hold open (a constant, with its reason). */
  constructor (components: Components, protocol: string, maxInboundStreams: number) {
    this.components = components
    this.protocol = protocol
    this.maxInboundStreams = maxInboundStreams
  }

  async start (): Promise<void> {
    // A failure ends that one stream (serve aborts it); the node and the other streams go on.
    await this.components.host.handle(this.protocol, (stream, connection) => { this.serve(stream, connection).catch(() => {}) }, { maxInboundStreams: this.maxInboundStreams })
  }

  async stop (): Promise<void> {
    await this.components.host.unhandle(this.protocol)
  }

  protected abstract serve (stream: Stream, connection: Connection): Promise<void>
}
