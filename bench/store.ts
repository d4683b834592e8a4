/**
 * SFTP upload throughput: our store's pipelined put vs `cat file | ssh host 'cat > file'` (one
 * stream in OpenSSH's own client) to the same test sshd on loopback, same file, same run.
 *   npx tsx bench/store.ts [MiB]        (default 512)
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync, openSync, closeSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/store/open.js';
import { startSshd } from '../test/helpers/sshd.js';

const mib = Number(process.argv[2] ?? 512);
const bytes = mib << 20;
const work = mkdtempSync(join(tmpdir(), 'sf-bench-store-'));
const src = join(work, 'random.bin');
const fd = openSync(src, 'w');
for (let at = 0; at < bytes; at += 8 << 20) writeSync(fd, randomBytes(Math.min(8 << 20, bytes - at)));
closeSync(fd);
const sshd = await startSshd();

async function ours(run: number): Promise<number> {
  const store = await openStore(`sftp://root@127.0.0.1:${sshd.port}${join(work, `repo${run}`)}`, { sshKey: sshd.clientKey, knownHostsFile: sshd.knownHosts, create: true });
  const t0 = process.hrtime.bigint();
  const put = await store.put('random.bin');
  for await (const chunk of createReadStream(src, { highWaterMark: 1 << 20 })) await put.write(chunk as Buffer);
  await put.end();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  await store.close();
  if (statSync(join(work, `repo${run}`, 'random.bin')).size !== bytes) throw new Error('size mismatch');
  rmSync(join(work, `repo${run}`), { recursive: true });
  return s;
}

async function openssh(): Promise<number> {
  const dest = join(work, 'ssh-copy.bin');
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('sh', ['-c', `cat "${src}" | ssh -T -i "${sshd.clientKey}" -p ${sshd.port} -o UserKnownHostsFile="${sshd.knownHosts}" -o StrictHostKeyChecking=yes -o BatchMode=yes root@127.0.0.1 'cat > "${dest}"'`], { stdio: 'inherit' });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ssh exited ${code}`))));
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (statSync(dest).size !== bytes) throw new Error('ssh copy size mismatch');
  rmSync(dest);
  return s;
}

const mbps = (s: number): number => bytes / 1e6 / s;
const cipher = execFileSync('ssh', ['-G', '-p', String(sshd.port), '127.0.0.1']).toString().match(/^ciphers (.*)$/m)?.[1]?.split(',')[0];
const rows: { ours: number; ssh: number }[] = [];
for (let run = 0; run < 3; run++) rows.push({ ours: await ours(run), ssh: await openssh() });
await sshd.stop();
rmSync(work, { recursive: true, force: true });
writeFileSync(1, `upload of ${mib} MiB of random bytes to OpenSSH sshd on 127.0.0.1 (ssh's first cipher: ${cipher}), 3 runs\n`);
for (const [i, r] of rows.entries()) writeFileSync(1, `run ${i + 1}: snapferry sftp put ${mbps(r.ours).toFixed(0)} MB/s   cat | ssh 'cat >' ${mbps(r.ssh).toFixed(0)} MB/s   ratio ${(mbps(r.ours) / mbps(r.ssh)).toFixed(2)}\n`);
const best = (k: 'ours' | 'ssh'): number => Math.min(...rows.map((r) => r[k]));
writeFileSync(1, `best: snapferry ${mbps(best('ours')).toFixed(0)} MB/s, ssh ${mbps(best('ssh')).toFixed(0)} MB/s, ratio ${(mbps(best('ours')) / mbps(best('ssh'))).toFixed(2)}\n`);
