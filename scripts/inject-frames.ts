/**
 * Send hand-made Ethernet frames out of an interface (lab tool: malformed-frame corpora, crafted
 * packets). Reads a JSON list [{ "name": "...", "hex": "..." }], rewrites each frame's MAC
 * addresses to the given ones, sends each frame `--repeat` times and prints what it sent.
 *
 *   node dist/scripts/inject-frames.js --interface eth0 --dst-mac 02:.. --frames frames.json
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { PacketTx, interfaceInfo } from '../src/dataplane/capture-batch.js';
import { parseMac } from '../src/packet/mac.js';

const program = new Command()
  .requiredOption('--interface <name>', 'interface to send on')
  .requiredOption('--dst-mac <mac>', 'destination MAC written into every frame')
  .requiredOption('--frames <file>', 'JSON list of { name, hex }')
  .option('--repeat <n>', 'times each frame is sent (1..1000)', '1')
  .parse();
const o = program.opts<{ interface: string; dstMac: string; frames: string; repeat: string }>();
const repeat = Number(o.repeat);
if (!Number.isInteger(repeat) || repeat < 1 || repeat > 1000) throw new Error('--repeat must be 1..1000');

const frames = JSON.parse(readFileSync(o.frames, 'utf8')) as { name: string; hex: string }[];
const dst = parseMac(o.dstMac);
const src = interfaceInfo(o.interface).mac;
const tx = new PacketTx({ device: o.interface, batchSize: 1 });
const sent: Record<string, number> = {};
for (const f of frames) {
  const buf = Buffer.from(f.hex, 'hex');
  if (buf.length >= 12) {
    buf.set(dst, 0);
    buf.set(src, 6);
  }
  let ok = 0;
  for (let i = 0; i < repeat; i++) if (tx.sendOne(buf, buf.length)) ok++;
  sent[f.name] = ok;
}
tx.close();
console.log(JSON.stringify({ sent, errors: tx.errors }));
