import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { watch } from 'chokidar';
import { Observable } from 'rxjs';

/** Why a reload is asked for: the config file changed, or the process got a signal. */
export type ReloadTrigger =
  | { kind: 'file'; file: string; event: string; path: string }
  | { kind: 'signal'; signal: NodeJS.Signals };

/**
 * What the config file is now: the path it resolves to through every symlink, and a hash of its
 * bytes. A Kubernetes ConfigMap update changes the first (`..data` points to a new directory)
 * and maybe the second; an editor changes the second.
 */
export function fileFingerprint(file: string): string {
  try {
    const real = realpathSync(file);
    return `${real}\0${createHash('sha256').update(readFileSync(real)).digest('hex')}`;
  } catch (err) {
    return `unreadable\0${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
}

export interface WatchOptions {
  /** called once the watcher is in place: a change from then on is seen */
  onReady?: () => void;
}

/**
 * Changes of a config file, as an Observable. Watches the file and its directory (chokidar),
 * and on any event there compares the file's fingerprint (real path and content) with the last
 * one seen; emits only when it differs. Watching the directory rather than trusting the file's
 * own inode is what catches a Kubernetes ConfigMap update: there the file is a symlink into a
 * `..data` symlink that is replaced by an atomic rename, and the old target is deleted. A write
 * that leaves the same bytes at the same place emits nothing.
 * Errors of the watcher error the Observable; unsubscribing closes the watcher.
 */
export function watchConfigFile(file: string, opts: WatchOptions = {}): Observable<ReloadTrigger> {
  return new Observable<ReloadTrigger>((subscriber) => {
    let last = fileFingerprint(file);
    const check = (event: string, where: string): void => {
      const now = fileFingerprint(file);
      if (now === last) return;
      last = now;
      subscriber.next({ kind: 'file', file, event, path: where });
    };
    const watcher = watch([file, path.dirname(file)], { ignoreInitial: true, depth: 0, persistent: true });
    watcher.on('all', (event, where) => check(event, where));
    // chokidar reports no event of its own for a symlink replaced by a rename (the `..data`
    // swap); the raw fs.watch event of the directory is there
    watcher.on('raw', (event, name, details) => {
      const dir = (details as { watchedPath?: string } | undefined)?.watchedPath ?? path.dirname(file);
      check(event, path.join(dir, (name as string | null) ?? '')); // fs.watch may give no name
    });
    watcher.on('error', (err) => subscriber.error(err));
    watcher.on('ready', () => {
      // a change made while the watches were being set up has no event of its own
      check('ready', file);
      opts.onReady?.();
    });
    // (the listeners stay: events after this reach a closed subscriber and do nothing)
    return () => {
      watcher.close().catch(() => undefined);
    };
  });
}

/**
 * A process signal as an Observable. While subscribed, the listener replaces Node's default
 * action for the signal (for SIGHUP: ending the process); unsubscribing removes it.
 */
export function fromSignal(signal: NodeJS.Signals): Observable<ReloadTrigger> {
  return new Observable<ReloadTrigger>((subscriber) => {
    const onSignal = (): void => subscriber.next({ kind: 'signal', signal });
    process.on(signal, onSignal);
    return () => {
      process.off(signal, onSignal);
    };
  });
}
