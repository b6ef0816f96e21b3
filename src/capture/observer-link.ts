/**
 * The capture's end of the link to the sandbox's observer (see src/agent/observer.ts). The capture
 * listens on an abstract Unix socket (abstract names belong to the network namespace, which the
 * two containers share); the first process to connect is the observer, started before any package
 * code. Any later connection is an impostor: refused and recorded.
 */
import { createServer, type Socket } from 'node:net';
import type { ProcessInfo } from '../core/terms.js';
import type { EventSink } from './sink.js';

/** How long an attempt's reply may wait for the owner of its socket. */
const LOOKUP_TIMEOUT_MS = 250;

export class ObserverLink {
  private sock: Socket | undefined;
  private state: 'waiting' | 'connected' | 'lost' = 'waiting';
  private nextId = 1;
  private readonly waiting = new Map<number, (p: ProcessInfo | undefined) => void>();

  constructor(private readonly sink: EventSink) {}

  listen(name: string): Promise<void> {
    const server = createServer((s) => this.onConnection(s));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: `\0${name}` }, () => resolve());
    });
  }

  private onConnection(s: Socket): void {
    if (this.state !== 'waiting') {
      this.sink.record({ kind: 'observer', status: 'rejected' });
      s.destroy();
      return;
    }
    this.state = 'connected';
    this.sock = s;
    this.sink.record({ kind: 'observer', status: 'connected' });
    let pending = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let msg: { id?: number; proc?: ProcessInfo };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          continue;
        }
        const done = msg.id !== undefined ? this.waiting.get(msg.id) : undefined;
        if (done) done(msg.proc);
      }
    });
    const lost = () => {
      if (this.state !== 'connected') return;
      this.state = 'lost';
      this.sink.record({ kind: 'observer', status: 'lost' });
      for (const done of this.waiting.values()) done(undefined);
    };
    s.on('close', lost);
    s.on('error', lost);
  }

  /** The process that owns the sandbox socket with this local port, if the observer can tell. */
  who(proto: 'tcp' | 'udp', port: number, rport?: number): Promise<ProcessInfo | undefined> {
    const sock = this.sock;
    if (this.state !== 'connected' || !sock) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), LOOKUP_TIMEOUT_MS);
      const finish = (p: ProcessInfo | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(p);
      };
      this.waiting.set(id, finish);
      sock.write(JSON.stringify({ id, proto, port, ...(rport ? { rport } : {}) }) + '\n');
    });
  }
}
