import type { Logger } from 'pino';
import type { Config } from '../config/types.js';

export interface ProxyOptions {
  /** address announced in CLUSTER replies */
  ip: string;
  /** Prometheus port; 0 = off */
  metricsPort: number;
  reload: boolean;
  logger: Logger;
}

export interface RunningProxy {
  /** the listeners, with their bound ports (a config port of 0 binds a free one) */
  listeners: Array<{ cluster: string; host: string; port: number }>;
  close(): Promise<void>;
}

export async function startProxy(_config: Config, _opts: ProxyOptions): Promise<RunningProxy> {
  throw new Error('startProxy: not implemented yet');
}
