/**
 * Runs after tsc (npm run build, and so before npm pack): records which source this build came
 * from in dist/build-info.json, which `sluice --version` prints, and marks the CLI executable so
 * a symlink to it (scripts/setup.sh) or npm's bin link runs it directly.
 * The commit is the checkout's HEAD, with "-dirty" when tracked files differ from it; "unknown"
 * outside a git checkout (a build from an unpacked tarball keeps the file the tarball carries).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './lib/repo.js';
import type { BuildInfo } from '../src/version.js';

function git(root: string, args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return null;
  }
}

const root = repoRoot();
const file = join(root, 'dist', 'build-info.json');
const inGit = existsSync(join(root, '.git')) && git(root, ['rev-parse', '--show-toplevel']) !== null;
if (!inGit && existsSync(file)) {
  process.stdout.write(`build-info: not a git checkout; keeping ${file}\n`);
} else {
  const commit = inGit ? git(root, ['rev-parse', '--short=12', 'HEAD']) : null;
  // Only tracked files count: a build leaves untracked outputs that do not change the source.
  const dirty = inGit ? (git(root, ['status', '--porcelain', '--untracked-files=no']) ?? '') !== '' : false;
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const info: BuildInfo = { version: pkg.version, commit: commit ? `${commit}${dirty ? '-dirty' : ''}` : 'unknown', builtAt: new Date().toISOString() };
  writeFileSync(file, JSON.stringify(info, null, 2) + '\n');
  process.stdout.write(`build-info: ${info.version} (${info.commit})\n`);
}
chmodSync(join(root, 'dist', 'src', 'cli.js'), 0o755);
