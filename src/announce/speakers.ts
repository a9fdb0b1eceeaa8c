/**
 * The speaker for an "announce" config, and where its files live. The one place that knows the
 * implementations: a new speaker is a new file beside bird.ts plus a case here.
 */
import { basename, dirname, join } from 'node:path';
import type { AnnounceConfig } from './config.js';
import type { Speaker } from './speaker.js';
import { BirdSpeaker } from './bird.js';

/** Default run directory: beside the admin socket, named after it, so two instances on one host never share one. */
export function speakerDir(config: AnnounceConfig, adminSocket: string): string {
  return config.runDir ?? join(dirname(adminSocket), `${basename(adminSocket).replace(/\.sock$/, '')}.speaker`);
}

export function createSpeaker(config: AnnounceConfig, adminSocket: string, onLog: (line: string) => void): Speaker {
  switch (config.speaker) {
    case 'bird2':
      return new BirdSpeaker({ config, dir: speakerDir(config, adminSocket), onLog });
  }
}
