import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, parseConfig, type LoadResult } from '../config/load.js';

/** Reads and validates a config file; a missing or unreadable file is a `ConfigError` naming it. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EISDIR'
          ? 'is a directory'
          : e.code === 'EACCES'
            ? 'permission denied'
            : (e.message ?? String(err));
    throw new ConfigError([`${file}: cannot read the config file: ${why}`]);
  }
  // `password_file` and the like are read relative to the config file
  return parseConfig(text, file, env, (path) => readFileSync(resolve(dirname(file), path), 'utf8'));
}
