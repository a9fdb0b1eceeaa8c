/**
 * What this Sluice is: the package version, and the build (the git commit the code was built or
 * packed from, recorded in dist/build-info.json by scripts/build-info.ts; "unknown" when it was
 * built outside a git checkout). VERSION reads "0.1.0+abc123def456": semver build metadata, so
 * `sluice --version`, /status and metrics show both in one string.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export interface BuildInfo {
  version: string;
  /** Short commit hash, "-dirty" when tracked files differed from it; "unknown" outside git. */
  commit: string;
  builtAt: string;
}

/** The package root: the nearest ancestor holding Sluice's package.json. */
function findPackage(): { root: string; version: string } | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sluice' && pkg.version) return { root: dir, version: pkg.version };
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  return null;
}

function readBuildInfo(): BuildInfo {
  const pkg = findPackage();
  const version = pkg?.version ?? 'unknown';
  if (pkg) {
    try {
      const info = JSON.parse(readFileSync(join(pkg.root, 'dist', 'build-info.json'), 'utf8')) as Partial<BuildInfo>;
      if (typeof info.commit === 'string' && /^[\w.-]{1,64}$/.test(info.commit)) {
        return { version, commit: info.commit, builtAt: typeof info.builtAt === 'string' ? info.builtAt : 'unknown' };
      }
    } catch {
      // not built with scripts/build-info.ts (e.g. tests running from source before a build)
    }
  }
  return { version, commit: 'unknown', builtAt: 'unknown' };
}

export const BUILD_INFO: BuildInfo = readBuildInfo();
/** The package version alone, e.g. "0.1.0". */
export const PACKAGE_VERSION = BUILD_INFO.version;
/** Version and build, e.g. "0.1.0+abc123def456" or "0.1.0+unknown". */
export const VERSION = `${BUILD_INFO.version}+${BUILD_INFO.commit}`;
