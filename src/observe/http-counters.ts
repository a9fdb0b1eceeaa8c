/**
 * Counters of the HTTP edge: requests answered without reaching an endpoint, by listener and
 * reason, and admin requests refused for lack of rights. Registered on the daemon's registry,
 * so /metrics shows that the edge is being probed before anything else notices.
 */
import { Counter, type Registry } from 'prom-client';
import type { RejectReason } from './http.js';

export class HttpCounters {
  readonly rejected: Counter<'listener' | 'reason'>;
  readonly adminDenied: Counter<'access'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.rejected = new Counter({
      name: 'sluice_http_rejected_total',
      help: 'HTTP requests to the metrics port or admin socket answered with an error (bad request, limits, timeouts, handler errors, refusals)',
      labelNames: ['listener', 'reason'],
      registers,
    });
    this.adminDenied = new Counter({
      name: 'sluice_admin_denied_total',
      help: 'Admin requests refused by peer credentials (403), by access: write or read',
      labelNames: ['access'],
      registers,
    });
  }

  onReject(listener: string): (reason: RejectReason) => void {
    return (reason) => this.rejected.inc({ listener, reason });
  }
}
