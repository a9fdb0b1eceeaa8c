/**
 * What `sluice check <file>` verifies, beyond parsing: the files the config names (today the
 * cluster key file) and the advice that does not make a config invalid. Kept apart from load.ts
 * because a reload must not depend on the checking user's view of the file system.
 */
import { statSync } from 'node:fs';
import { clusterKeyIssues } from '../control/cluster-config.js';
import { ConfigError, type ConfigIssue } from './issues.js';
import { readConfigFile } from './load.js';
import type { SluiceConfig } from './types.js';

export interface CheckedConfig {
  config: SluiceConfig;
  /** Advice: printed, exit status stays 0. */
  warnings: ConfigIssue[];
}

/** Loads and verifies a config file; throws a ConfigError listing every problem found. */
export function checkConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): CheckedConfig {
  const { config, warnings } = readConfigFile(path);
  const cluster = config.cluster;
  if (cluster === undefined) return { config, warnings };
  const key = clusterKeyIssues(cluster, { env });
  if (key.errors.length > 0) throw new ConfigError(key.errors, path);
  const out = [...warnings, ...key.warnings];
  if (cluster.keyFile !== undefined) {
    // Readable by group or others: anyone who can read it can forge owner answers.
    const mode = statSync(cluster.keyFile).mode & 0o777;
    if ((mode & 0o044) !== 0) {
      out.push({
        path: '$.cluster.keyFile',
        rule: 'cluster-key',
        message: `${cluster.keyFile} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); restrict it with: chmod 600 ${cluster.keyFile}`,
      });
    }
  }
  return { config, warnings: out };
}
