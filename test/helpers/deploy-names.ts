import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './repo.js';

export const DEPLOY_DIR = join(REPO_ROOT, 'deploy');

/** Every metric name (`aster_...`) the shipped dashboard and alert rules query, as written there. */
export function deployMetricNames(): string[] {
  const text = ['prometheus-alerts.yml', 'grafana-dashboard.json'].map((f) => readFileSync(join(DEPLOY_DIR, f), 'utf8')).join('\n');
  return [...new Set([...text.matchAll(/\baster_[a-z0-9_]+/g)].map((m) => m[0]))].sort();
}

/** metrics only a primary with workers has (a single process has no workers to restart) */
const WORKERS_ONLY = new Set(['aster_worker_restarts_total']);

/**
 * The names of `deployMetricNames` a scrape does not declare: neither a `# TYPE name` line nor,
 * for a `_bucket`, `_sum` or `_count` series, a histogram of the name without it. `workers`:
 * the scrape is a primary's with workers (else the workers-only names are not asked for).
 */
export function missingFromScrape(scrape: string, workers: boolean): string[] {
  const declared = (name: string, type = '(counter|gauge|histogram|summary)'): boolean => new RegExp(`^# TYPE ${name} ${type}$`, 'm').test(scrape);
  return deployMetricNames().filter((n) => {
    if (!workers && WORKERS_ONLY.has(n)) return false;
    if (declared(n)) return false;
    const base = /^(.*)_(bucket|sum|count)$/.exec(n);
    return !(base !== null && declared(base[1], 'histogram'));
  });
}
