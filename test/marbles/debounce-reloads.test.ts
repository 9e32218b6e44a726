import { describe, it } from 'node:test';
import { map, merge, of, throwError } from 'rxjs';
import { debounceReloads } from '../../src/operators/debounce-reloads.js';
import type { ReloadTrigger } from '../../src/sources/config-watch.js';
import { testScheduler } from './helpers.js';

const upper = (t: string): string => t.toUpperCase();

describe('debounceReloads', () => {
  it('gives a burst of triggers one reload, for the last one, once they have been quiet for quietMs', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const triggers = hot('-a-b-c------|');
      const work = cold('    --(x|)');
      const out = triggers.pipe(debounceReloads({ quietMs: 3, scheduler: ts, reload: (t) => work.pipe(map(() => upper(t))) }));
      expectObservable(out).toBe('----------C-|');
      expectSubscriptions(work.subscriptions).toBe('--------^-!');
    });
  });

  it('puts SIGHUP through the same path: it joins a burst of file events, and alone it reloads after quietMs', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const f: ReloadTrigger = { kind: 'file', file: 'p.toml', event: 'change', path: 'p.toml' };
      const h: ReloadTrigger = { kind: 'signal', signal: 'SIGHUP' };
      const files = hot('-f-f-----------|', { f });
      const hups = hot(' ---h------h----|', { h }); // f and h at frame 3: h comes last
      const work = cold('--(x|)');
      const out = merge(files, hups).pipe(debounceReloads({ quietMs: 2, scheduler: ts, reload: (t) => work.pipe(map(() => t.kind)) }));
      expectObservable(out).toBe('-------s------s|', { s: 'signal' });
      expectSubscriptions(work.subscriptions).toBe(['-----^-!', '------------^-!']);
    });
  });

  it('never overlaps reloads: what settles while one runs becomes one reload after it (not dropped, not queued)', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const triggers = hot('-a--b--c----|');
      const work = cold('   --------(x|)');
      const out = triggers.pipe(debounceReloads({ quietMs: 2, scheduler: ts, reload: (t) => work.pipe(map(() => upper(t))) }));
      expectObservable(out).toBe('-----------A-------(C|)');
      expectSubscriptions(work.subscriptions).toBe(['---^-------!', '-----------^-------!']);
    });
  });

  it('runs reloads that complete synchronously one after the other', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable }) => {
      const reload = (t: string) => of(upper(t));
      expectObservable(hot('-a--b-|').pipe(debounceReloads({ quietMs: 1, scheduler: ts, reload }))).toBe('--A--B|');
      // a synchronous source: debounceTime releases its last value on completion
      expectObservable(cold('(ab|)').pipe(debounceReloads({ quietMs: 5, scheduler: ts, reload }))).toBe('(B|)');
    });
  });

  it('cancels the quiet-time timer and the running reload on unsubscribe', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const triggers = hot('-a---b---');
      const work = cold('   ----(x|)');
      const out = triggers.pipe(debounceReloads({ quietMs: 2, scheduler: ts, reload: (t) => work.pipe(map(() => upper(t))) }));
      expectObservable(out, '^----!').toBe('------');
      expectSubscriptions(work.subscriptions).toBe('---^-!');
      expectSubscriptions(triggers.subscriptions).toBe('^----!');
    });
  });

  it('passes an error of a reload on (the caller catches per reload to keep the stream alive)', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const out = hot('-a---b-|').pipe(debounceReloads({ quietMs: 1, scheduler: ts, reload: () => throwError(() => 'bad') }));
      expectObservable(out).toBe('--#', undefined, 'bad');
    });
  });
});
