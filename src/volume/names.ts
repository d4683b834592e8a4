/**
 * Human names of partition types, as fdisk/sfdisk (util-linux libfdisk: pt-mbr-partnames.h,
 * pt-gpt-partnames.h) print them, so `inspect` reads like the tools an administrator knows.
 */

const MBR_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [0x00, 'Empty'],
  [0x01, 'FAT12'],
  [0x04, 'FAT16 <32M'],
  [0x05, 'Extended'],
  [0x06, 'FAT16'],
  // fdisk says "HPFS/NTFS/exFAT"; the issue names it NTFS first, which is what a VM disk holds.
  [0x07, 'NTFS/exFAT/HPFS'],
  [0x0b, 'W95 FAT32'],
  [0x0c, 'W95 FAT32 (LBA)'],
  [0x0e, 'W95 FAT16 (LBA)'],
  [0x0f, "W95 Ext'd (LBA)"],
  [0x11, 'Hidden FAT12'],
  [0x12, 'Compaq diagnostics'],
  [0x14, 'Hidden FAT16 <32M'],
  [0x16, 'Hidden FAT16'],
  [0x17, 'Hidden HPFS/NTFS'],
  [0x1b, 'Hidden W95 FAT32'],
  [0x1c, 'Hidden W95 FAT32 (LBA)'],
  [0x1e, 'Hidden W95 FAT16 (LBA)'],
  [0x27, 'Hidden NTFS WinRE'],
  [0x42, 'SFS'],
  [0x82, 'Linux swap / Solaris'],
  [0x83, 'Linux'],
  [0x85, 'Linux extended'],
  [0x86, 'NTFS volume set'],
  [0x87, 'NTFS volume set'],
  [0x88, 'Linux plaintext'],
  [0x8e, 'Linux LVM'],
  [0xa5, 'FreeBSD'],
  [0xa6, 'OpenBSD'],
  [0xa8, 'Darwin UFS'],
  [0xa9, 'NetBSD'],
  [0xaf, 'HFS / HFS+'],
  [0xbe, 'Solaris boot'],
  [0xbf, 'Solaris'],
  [0xde, 'Dell Utility'],
  [0xea, 'Linux extended boot'],
  [0xee, 'GPT'],
  [0xef, 'EFI (FAT-12/16/32)'],
  [0xfb, 'VMware VMFS'],
  [0xfc, 'VMware VMKCORE'],
  [0xfd, 'Linux raid autodetect'],
]);

const GPT_TYPE_NAMES: ReadonlyMap<string, string> = new Map([
  ['c12a7328-f81f-11d2-ba4b-00a0c93ec93b', 'EFI System'],
  ['024dee41-33e7-11d3-9d69-0008c781f39f', 'MBR partition scheme'],
  ['d3bfe2de-3daf-11df-ba40-e3a556d89593', 'Intel Fast Flash'],
  ['21686148-6449-6e6f-744e-656564454649', 'BIOS boot'],
  ['e3c9e316-0b5c-4db8-817d-f92df00215ae', 'Microsoft reserved'],
  ['ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', 'Microsoft basic data'],
  ['5808c8aa-7e8f-42e0-85d2-e1e90434cfb3', 'Microsoft LDM metadata'],
  ['af9b60a0-1431-4f62-bc68-3311714a69ad', 'Microsoft LDM data'],
  ['de94bba4-06d1-4d40-a16a-bfd50179d6ac', 'Windows recovery environment'],
  ['e75caf8f-f680-4cee-afa3-b001e56efc2d', 'Microsoft Storage Spaces'],
  ['0fc63daf-8483-4772-8e79-3d69d8477de4', 'Linux filesystem'],
  ['0657fd6d-a4ab-43c4-84e5-0933c84b4f4f', 'Linux swap'],
  ['e6d6d379-f507-44c2-a23c-238f2a3df928', 'Linux LVM'],
  ['a19d880f-05fc-4d3b-a006-743f0f84911e', 'Linux RAID'],
  ['933ac7e1-2eb4-4f13-b844-0e14e2aef915', 'Linux home'],
  ['3b8f8425-20e0-4f3b-907f-1a25a76f98e8', 'Linux server data'],
  ['8da63339-0007-60c0-c436-083ac8230908', 'Linux reserved'],
  ['ca7d7ccb-63ed-4c53-861c-1742536059cc', 'Linux LUKS'],
  ['bc13c2ff-59e6-4262-a352-b275fd6f7172', 'Linux extended boot'],
  ['4f68bce3-e8cd-4db1-96e7-fbcaf984b709', 'Linux root (x86-64)'],
  ['44479540-f297-41b2-9af7-d131d5f0458a', 'Linux root (x86)'],
  ['b921b045-1df0-41c3-af44-4c6f280d3fae', 'Linux root (ARM-64)'],
  ['4d21b016-b534-45c2-a9fb-5c16e091fd2d', 'Linux variable data'],
  ['7ec6f557-3bc5-4aca-b293-16ef5df639d1', 'Linux temporary data'],
  ['48465300-0000-11aa-aa11-00306543ecac', 'Apple HFS/HFS+'],
  ['7c3457ef-0000-11aa-aa11-00306543ecac', 'Apple APFS'],
  ['516e7cb4-6ecf-11d6-8ff8-00022d09712b', 'FreeBSD data'],
  ['516e7cb6-6ecf-11d6-8ff8-00022d09712b', 'FreeBSD UFS'],
  ['516e7cba-6ecf-11d6-8ff8-00022d09712b', 'FreeBSD ZFS'],
  ['6a898cc3-1dd2-11b2-99a6-080020736631', 'Solaris /usr & Apple ZFS'],
  ['aa31e02a-400f-11db-9590-000c2911d1b8', 'VMware VMFS'],
  ['9198effc-31c0-11db-8f78-000c2911d1b8', 'VMware reserved'],
  ['9d275380-40ad-11db-bf97-000c2911d1b8', 'VMware kcore crash protection'],
]);

/** '0x83' → 'Linux'. */
export function mbrTypeName(type: number): string {
  return MBR_TYPE_NAMES.get(type) ?? 'unknown';
}

/** Formats an MBR type id the way the Volume contract spells it: '0x83', '0x0c'. */
export function mbrTypeId(type: number): string {
  return `0x${type.toString(16).padStart(2, '0')}`;
}

/** A lowercase GUID string → 'Linux filesystem'; comparison is case-insensitive. */
export function gptTypeName(guid: string): string {
  return GPT_TYPE_NAMES.get(guid.toLowerCase()) ?? 'unknown';
}
