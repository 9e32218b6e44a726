/**
 * The deploy files are checked, not only read: the alert rules pass `promtool check rules`
 * (Debian's prometheus package; `sh scripts/ensure-deps.sh test` installs it), and the
 * dashboard is valid JSON whose queries name only aster metrics that exist. (That every name
 * they use is declared in a real scrape is asserted beside the scrapes: metrics.test.ts for a
 * standalone proxy, workers.test.ts with workers, cluster-observability.test.ts in cluster mode.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEPLOY_DIR, deployMetricNames } from '../helpers/deploy-names.js';

const run = (cmd: string, args: string[]): Promise<{ code: number; out: string }> =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, out: stdout + stderr });
    });
  });

describe('deploy files', () => {
  it('promtool check rules passes deploy/prometheus-alerts.yml', async () => {
    const r = await run('promtool', ['check', 'rules', join(DEPLOY_DIR, 'prometheus-alerts.yml')]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });

  it('promtool refuses a broken rule (the check can fail)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aster-rules-'));
    const file = join(dir, 'broken-rules.yml');
    writeFileSync(file, 'groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(aster_commands_total[5m]\n');
    try {
      const r = await run('promtool', ['check', 'rules', file]);
      assert.notEqual(r.code, 0, r.out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the dashboard is JSON and queries aster metrics', () => {
    const dash = JSON.parse(readFileSync(join(DEPLOY_DIR, 'grafana-dashboard.json'), 'utf8')) as { panels?: unknown[] };
    assert.ok(Array.isArray(dash.panels) && dash.panels.length > 0, 'the dashboard has panels');
    assert.ok(deployMetricNames().includes('aster_commands_total'), deployMetricNames().join(', '));
  });
});
