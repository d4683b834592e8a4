/**
 * The snapferry command line: parse arguments, call the layers, print. Nothing here knows a byte
 * of any format.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExitCode, SnapferryError, UsageError } from '../util/errors.js';
import { printError } from './output.js';
// Each command's module (and the readers under it) loads only when that command runs: `export`
// does not pay for the NTFS and ext readers' start-up, `--help` pays for none.

/** package.json's version, found upward from this file (src/cli/ when run from source, dist/src/cli/ when built). */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}
const version = packageVersion();

export const HELP = `snapferry ${version}: read VM snapshot disks in userspace, read-only, always.

Usage:
  snapferry inspect DISK... [--json]      the chain, capacity, allocation and volumes of each disk
  snapferry export DISK OUT [--force]     the resolved disk as a raw image (sparse; '-' for stdout)
  snapferry ls DISK [VOLUME[/PATH]] [-R] [--sha256] [--json]
                                          the volumes of DISK, or a directory's entries (a file: itself)
  snapferry cat DISK VOLUME/PATH[:STREAM] a file's bytes (or an NTFS named stream's) to stdout
  snapferry stat DISK VOLUME/PATH [--json]  everything the filesystem records of one entry
  snapferry mount DISK... MNT [--foreground] [--allow-other] [--log FILE]
                                          every disk, volume and file as one read-only FUSE tree
  snapferry umount MNT                    stop a mount (its process unmounts and exits)
  snapferry backup DISK... --repo REPO --recipient AGE1... [--incremental|--differential] [--json]
                                          the files of every volume, as one encrypted archive in REPO
  snapferry backup DISK... --image --repo REPO --recipient AGE1... [--incremental]
                                          every disk whole (GNU sparse members: holes cost nothing)
  snapferry ls|cat|stat|mount --repo REPO ID ... --identity KEYFILE
                                          an image backup read as the VM's disks (only what is read is fetched)
  snapferry snapshots --repo REPO [--json]  the backups in REPO, oldest first, with their ids
  snapferry restore --repo REPO ID [PATH...] --identity KEYFILE --target DIR|-
                                          files (or everything) of backup ID ('latest', or an id prefix)
  snapferry verify --repo REPO [ID] --identity KEYFILE
                                          read a backup end to end; name the archive and entry of any damage
  snapferry agent --role=ROLE             the appliance's SSH forced command (snapferry agent --help)
  snapferry jobs | job ID [--follow] | cancel ID | jobd [--config FILE]
                                          backups queued as jobs that outlive the SSH session
  snapferry disks [--all] [--json]        the block devices attached to the appliance, with their volumes
  snapferry config check|apply            the appliance's configuration file; schedules -> systemd timers
  snapferry --help | --version

DISK is a raw image, a block device (/dev/sdX), a VMDK (descriptor or sparse file; the top of a
delta chain: its parents are found through parentFileNameHint), or a VM's .vmx (its present disks).

VOLUME is a name inspect shows: p1, p2 ... (p5 onwards: MBR logical partitions), or whole for a
disk without a partition table. When DISK is a .vmx with several disks, the target starts with the
disk's id: scsi0:0/p1/etc/hostname (with one disk the id may be left out). Files are read on ext2,
ext3, ext4 and NTFS; links are never followed. :STREAM names an NTFS alternate data stream, and is
only taken as one when the path, colon included, does not exist.

Options:
  --json                  machine-readable output on stdout (errors too: {"error":{code,message,data}})
  --ignore-cid-mismatch   accept a delta whose parentCID differs from its parent's CID
  --max-chain-depth N     refuse chains deeper than N (default 64)
  --allow-external-extents  accept VMDK extent names that are absolute or contain '..'
  --cache-mib N           byte budget of the grain caches, in MiB (default 32, backup 16); ls/cat/stat
                          give the filesystem's metadata caches the same budget again
  --force                 export: overwrite OUT if it exists (never one of the source's files)
  --progress / --no-progress   export: a progress bar (default: only when stderr is a terminal)
  -R, --recursive         ls: walk the whole tree below PATH (pre-order, streamed)
  --sha256                ls: the sha256 of every regular file's contents
  --no-replay             ls/cat/stat: read an ext3/ext4 volume as it is on disk, without replaying
                          its journal in memory (the default replays it; stderr notes it either way)

mount shows the tree MNT/<disk>/<volume>/<path>: <disk> is the .vmx's disk id (scsi0:0) or the
file's name without extension; <disk>/info (and the xattr user.snapferry.info on each disk and
volume directory) says what each volume is, or why it cannot be read. The mount is read-only: every
write answers EROFS. mount returns once the tree is mounted and leaves a process serving it
(--foreground: serve from this process until SIGINT/SIGTERM). Errors (a damaged file answers EIO)
are logged as JSON lines to --log FILE (default: a file in the temp directory named after MNT). A
mount left by a killed process is cleared by the next mount on that path.
  --foreground            mount: serve in this process (systemd, debugging); Ctrl-C unmounts
  --allow-other           mount: let other users read the tree (FUSE allow_other; modes still apply)
  --log FILE              mount: where the serving process logs

ls prints one line per entry: mode, links, uid, gid, size, mtime (UTC, nanoseconds), path, and
'-> target' for links. ls --json prints one JSON object per line (path, type, size, mode, uid, gid,
nlink, mtime, target, sha256, ino; pathHex when the name is not UTF-8; error when an entry could
not be read, which also makes the exit code 1). stat --json gives times as ISO strings and as exact
nanoseconds. Filesystem notes (journal replayed, dirty, hibernated) go to stderr in text mode.

Backups: REPO is a directory or sftp://user@host[:port]/path (an absolute path; /~/path is relative to
the login's home). SFTP uses --ssh-key F, else ssh-agent, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa,
and checks the host key against ~/.ssh/known_hosts (--accept-new-host-key records a first one, as
OpenSSH's accept-new does; --known-hosts F reads another file, like UserKnownHostsFile). A location with no repository yet becomes one. Each backup writes
archives/ID.tar.zst.age (PAX tar, zstd frames, age), its encrypted index and a plaintext manifest
with no file names. Without snapferry: age -d -i KEY archives/ID.tar.zst.age | zstd -d | tar -x.
Backups need only public keys (--recipient, --recipients-file); reading one needs the identity.
  --recipient AGE1...     encrypt to this age X25519 recipient (repeatable)
  --recipients-file F     one recipient per line
  --full | --incremental | --differential   what to store: everything (the default), the files
                          changed since the last backup, or since the last full one (from the local
                          state in --state-dir; without it the backup is full)
  --include TREEPATH      back up only this subtree: <disk>/<volume>[/path] (repeatable)
  --exclude GLOB          leave out paths inside a volume matching GLOB (* ? **; no '/': any depth)
  --no-default-excludes   keep pagefile.sys, hiberfil.sys, swapfile.sys, proc/, sys/, run/, tmp/ ...
  --state-dir DIR         where incremental state lives (default /var/lib/snapferry/state as root)
  --vm NAME               the VM's name in manifests (default: the first DISK's file name)
  --identity KEYFILE      restore/verify: the age identity file (- for stdin)
  --target DIR|-          restore: where to write (created); - writes one file's bytes to stdout
  --overwrite             restore: replace existing files
  --devices               restore: also make the device nodes the backup holds (root only; off by
                          default: a guest's archive should not open a host disk to the restore's
                          readers). FIFOs are always made; sockets are never archived.
                          Extended attributes are set with setfattr (Debian package attr).
  --image                 backup: each disk whole, as disks/DISKID.raw (GNU sparse 1.0) beside the VM's
                          descriptors; --incremental stores only changed blocks (from the delta chain,
                          or block hashes in the state). restore --image: each disk (or the DISKIDs
                          given) as DIR/DISKID.raw, sparse (--vmdk: a monolithicSparse DISKID.vmdk,
                          ':' written as '_'). restore ID PATH of an image backup restores files
                          out of its disks.
Restore never writes outside DIR: absolute paths, '..' and paths through symlinks are refused.
Exit codes:
  0 success   1 failure   2 usage error   3 source not found   4 corrupt input
  5 unsupported format   6 chain error (missing parent, CID mismatch, cycle, too deep)
  130 interrupted

Examples:
  snapferry inspect vm1/vm1.vmx
  snapferry inspect --json vm1/vm1-000002.vmdk
  snapferry export vm1/vm1-000002.vmdk /backup/vm1.raw
  snapferry ls vm1/vm1.vmx                             the volumes of the VM's disk
  snapferry ls vm1/vm1.vmx p1/etc
  snapferry ls -R --json --sha256 vm1/vm1.vmx p1 > manifest.jsonl
  snapferry cat vm1/vm1.vmx p1/etc/hostname
  snapferry cat vm2/vm2.vmx scsi0:1/p2/Users/bob/report.docx > report.docx
  snapferry cat vm2/vm2.vmx p2/file.txt:Zone.Identifier   an NTFS named stream
  snapferry stat --json vm1/vm1.vmx p1/home/alice
  snapferry mount vm1/vm1.vmx /mnt/vm1 && ls /mnt/vm1/scsi0:0/p1/etc && snapferry umount /mnt/vm1
  snapferry backup vm1/vm1.vmx --repo sftp://backup@nas/srv/snapferry --recipient age1...
  snapferry backup vm1/vm1.vmx --repo /backups --recipients-file keys.txt --incremental
  snapferry snapshots --repo /backups
  snapferry restore --repo /backups latest scsi0:0/p1/etc --identity key.txt --target /tmp/r
  snapferry restore --repo /backups latest scsi0:0/p1/etc/hostname --identity key.txt --target -
`;

const options = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  'ignore-cid-mismatch': { type: 'boolean' },
  'allow-external-extents': { type: 'boolean' },
  'max-chain-depth': { type: 'string' },
  'cache-mib': { type: 'string' },
  force: { type: 'boolean', short: 'f' },
  progress: { type: 'boolean' },
  'no-progress': { type: 'boolean' },
  recursive: { type: 'boolean', short: 'R' },
  sha256: { type: 'boolean' },
  'no-replay': { type: 'boolean' },
  foreground: { type: 'boolean' },
  'allow-other': { type: 'boolean' },
  log: { type: 'string' },
  repo: { type: 'string' },
  recipient: { type: 'string', multiple: true },
  'recipients-file': { type: 'string' },
  include: { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  'no-default-excludes': { type: 'boolean' },
  full: { type: 'boolean' },
  incremental: { type: 'boolean' },
  differential: { type: 'boolean' },
  'state-dir': { type: 'string' },
  vm: { type: 'string' },
  identity: { type: 'string' },
  target: { type: 'string' },
  overwrite: { type: 'boolean' },
  devices: { type: 'boolean' },
  'ssh-key': { type: 'string' },
  'accept-new-host-key': { type: 'boolean' },
  'known-hosts': { type: 'string' },
  image: { type: 'boolean' },
  vmdk: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

/**
 * The caches' byte budget. Walks and bulk reads touch each MFT record, inode table block and grain
 * table once, so a large cache buys little: measured on bench/mount.sh's 50,050-file NTFS volume, a
 * cold `find` through the mount took 2.56 s with 32 MiB, 2.65 s with 48 and 2.96 s with 96, at a peak
 * RSS of 124, 132 and 150 MiB.
 */
const DEFAULT_CACHE_MIB = 32;
/**
 * A backup reads each directory and inode table block once, in tree order: half the budget, same
 * speed. ext4 bench volume over SFTP, alternating runs: peak RSS 141-143 MB with 32 MiB, 134-135 MB
 * with 16; wall times within the runs' spread (11.6-13.7 s).
 */
const BACKUP_CACHE_MIB = 16;

export interface CommonOptions {
  json: boolean;
  ignoreCidMismatch: boolean;
  allowExternalExtents: boolean;
  maxChainDepth: number;
  cacheBytes: number;
}

function intOption(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} takes an integer from ${min} to ${max}, not '${raw}'`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  const wantsJson = argv.includes('--json');
  try {
    // the appliance's commands (src/cli/agent.ts) parse their own options (--role, --follow, --config ...)
    if (['agent', 'jobd', 'jobs', 'job', 'cancel', 'disks', 'config'].includes(argv[0] ?? '')) return await (await import('./agent.js')).applianceCommand(argv);
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    if (values.version) {
      process.stdout.write(`${version}\n`);
      return ExitCode.ok;
    }
    const [command, ...rest] = positionals;
    if (values.help || !command || command === 'help') {
      process.stdout.write(HELP);
      return command || values.help ? ExitCode.ok : ExitCode.usage;
    }
    const common: CommonOptions = {
      json: values.json === true,
      ignoreCidMismatch: values['ignore-cid-mismatch'] === true,
      allowExternalExtents: values['allow-external-extents'] === true,
      maxChainDepth: intOption('max-chain-depth', values['max-chain-depth'], 64, 1, 4096),
      cacheBytes: intOption('cache-mib', values['cache-mib'], command === 'backup' ? BACKUP_CACHE_MIB : DEFAULT_CACHE_MIB, 1, 65536) * 1024 * 1024,
    };
    // ls, cat, stat, mount with --repo: DISK is an image backup's ID, read from the repository (--identity)
    const fromRepo =
      values.repo !== undefined && ['ls', 'cat', 'stat', 'mount'].includes(command)
        ? { repo: values.repo, ...(values.identity !== undefined ? { identity: values.identity } : {}), ...(values['ssh-key'] !== undefined ? { sshKey: values['ssh-key'] } : {}), ...(values['known-hosts'] !== undefined ? { knownHosts: values['known-hosts'] } : {}), acceptNewHostKey: values['accept-new-host-key'] === true }
        : undefined;
    const image = fromRepo ? { fromRepo } : {};
    switch (command) {
      case 'inspect':
        if (rest.length === 0) throw new UsageError('inspect needs at least one DISK');
        return await (await import('./inspect.js')).inspectCommand(rest, common);
      case 'export': {
        if (rest.length !== 2) throw new UsageError('export takes DISK and OUT');
        const progress = values['no-progress'] ? false : values.progress ? true : process.stderr.isTTY === true;
        return await (await import('./export.js')).exportCommand(rest[0]!, rest[1]!, { ...common, force: values.force === true, progress });
      }
      case 'ls': {
        if (rest.length < 1 || rest.length > 2) throw new UsageError('ls takes DISK and an optional VOLUME[/PATH]');
        return await (await import('./ls.js')).lsCommand(rest[0]!, rest[1], { ...common, replay: !values['no-replay'], recursive: values.recursive === true, sha256: values.sha256 === true, ...image });
      }
      case 'cat':
        if (rest.length !== 2) throw new UsageError('cat takes DISK and VOLUME/PATH');
        return await (await import('./cat.js')).catCommand(rest[0]!, rest[1]!, { ...common, replay: !values['no-replay'], ...image });
      case 'stat':
        if (rest.length !== 2) throw new UsageError('stat takes DISK and VOLUME/PATH');
        return await (await import('./stat.js')).statCommand(rest[0]!, rest[1]!, { ...common, replay: !values['no-replay'], ...image });
      case 'mount': {
        if (rest.length < 2) throw new UsageError('mount takes one or more DISKs and the mount point MNT');
        const opts = { ...common, foreground: values.foreground === true, allowOther: values['allow-other'] === true, replay: !values['no-replay'], ...(values.log !== undefined ? { log: values.log } : {}), ...image };
        return await (await import('./mount.js')).mountCommand(rest.slice(0, -1), rest[rest.length - 1]!, opts);
      }
      case 'umount':
        if (rest.length !== 1) throw new UsageError('umount takes the mount point MNT');
        return await (await import('./mount.js')).umountCommand(rest[0]!, common);
      case 'backup':
      case 'snapshots':
      case 'restore':
      case 'verify': {
        const repo = { ...common, ...(values.repo !== undefined ? { repo: values.repo } : {}), ...(values['ssh-key'] !== undefined ? { sshKey: values['ssh-key'] } : {}), ...(values['known-hosts'] !== undefined ? { knownHosts: values['known-hosts'] } : {}), acceptNewHostKey: values['accept-new-host-key'] === true };
        const cli = await import('./backup.js');
        if (command === 'snapshots') {
          if (rest.length) throw new UsageError('snapshots takes no arguments');
          return await cli.snapshotsCommand(repo);
        }
        if (command === 'backup') {
          if (rest.length < 1) throw new UsageError('backup takes one or more DISKs (or a .vmx)');
          const kinds = (['full', 'incremental', 'differential'] as const).filter((k) => values[k]);
          if (kinds.length > 1) throw new UsageError('--full, --incremental and --differential exclude each other');
          return await cli.backupCommand(rest, {
            ...repo,
            recipients: values.recipient ?? [],
            ...(values['recipients-file'] !== undefined ? { recipientsFile: values['recipients-file'] } : {}),
            includes: values.include ?? [],
            excludes: values.exclude ?? [],
            defaultExcludes: !values['no-default-excludes'],
            kind: kinds[0] ?? 'full',
            ...(values['state-dir'] !== undefined ? { stateDir: values['state-dir'] } : {}),
            ...(values.vm !== undefined ? { vm: values.vm } : {}),
            replay: !values['no-replay'],
            version,
            image: values.image === true,
          });
        }
        const ro = { ...repo, ...(values.identity !== undefined ? { identity: values.identity } : {}), ...(values.target !== undefined ? { target: values.target } : {}), overwrite: values.overwrite === true, devices: values.devices === true, image: values.image === true, vmdk: values.vmdk === true };
        if (command === 'verify') {
          if (rest.length > 1) throw new UsageError('verify takes at most one archive ID');
          return await cli.verifyCommand(rest[0], ro);
        }
        if (rest.length < 1) throw new UsageError('restore takes an archive ID (or latest) and optional PATHs');
        return await cli.restoreCommand(rest[0]!, rest.slice(1), ro);
      }
      default:
        throw new UsageError(`unknown command '${command}' (see snapferry --help)`);
    }
  } catch (err) {
    // The reader of stdout went away (`snapferry ls -R ... | head`): stop quietly, as cat and ls do.
    if (err instanceof SnapferryError && err.code === 'E_OUTPUT_CLOSED') return err.exitCode;
    const e = printError(err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') ? new UsageError(err.message) : err, wantsJson);
    return e.exitCode;
  }
}
