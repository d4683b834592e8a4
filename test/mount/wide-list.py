"""Lists images/ext-wide.sh's 200,000-entry directory for test/mount/wide.test.ts, holding nothing
per entry but a byte and an inode number in arrays indexed by the name's number (f000000 ..
f199999), so its own memory stays flat whatever it lists.

    wide-list.py scan DIR COUNT [PID EVERY]
        os.scandir; with PID, the VmRSS of that process (the mount) every EVERY entries
    wide-list.py seek DIR COUNT AT
        readdir(3) to the end, then seekdir(3) back to telldir(3) after AT entries and reads the
        rest again (the kernel sends a READDIR at that offset, or answers from its cache)

Prints one JSON object: count, the names seen twice, missing or not ours (first 10 of each), the
sha256 of the inode numbers (low 44 bits: the mount's own bits above them name the volume) in name
order, and the RSS samples, or for seek: how many entries followed the seek and whether they equal
the first pass's.
"""
import ctypes, hashlib, json, os, re, sys
from array import array

NAME = re.compile(r"f(\d{6})$")
LOW44 = (1 << 44) - 1


class Tally:
    def __init__(self, count):
        self.count = count
        self.seen = bytearray(count)
        self.ino = array("Q", bytes(8 * count))
        self.n = 0
        self.extras, self.twice = [], []

    def add(self, name, ino):
        if name in (".", ".."):
            return
        self.n += 1
        m = NAME.match(name)
        i = int(m.group(1)) if m else -1
        if not 0 <= i < self.count:
            if len(self.extras) < 10:
                self.extras.append(name)
            return
        if self.seen[i] and len(self.twice) < 10:
            self.twice.append(name)
        self.seen[i] = 1
        self.ino[i] = ino & LOW44

    def result(self):
        missing = [f"f{i:06d}" for i in range(self.count) if not self.seen[i]][:10]
        return {"count": self.n, "twice": self.twice, "missing": missing, "extras": self.extras, "inoSha": hashlib.sha256(self.ino.tobytes()).hexdigest()}


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def scan(d, count, pid=0, every=0):
    t, samples = Tally(count), []
    if pid:
        samples.append([0, rss_kb(pid)])
    with os.scandir(d) as it:
        for e in it:
            t.add(e.name, e.inode())
            if pid and t.n % every == 0:
                samples.append([t.n, rss_kb(pid)])
    return {**t.result(), "rss": samples}


class Dirent(ctypes.Structure):
    # glibc's struct dirent on 64-bit Linux
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


def seek(d, count, at):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]
    h = libc.opendir(os.fsencode(d))
    if not h:
        raise OSError(ctypes.get_errno(), d)
    t, pos, rest = Tally(count), None, []
    while True:
        p = libc.readdir(h)
        if not p:
            break
        name = p.contents.d_name.decode("utf-8", "surrogateescape")
        t.add(name, p.contents.d_ino)
        if pos is not None:
            rest.append(name)
        elif t.n == at:
            pos = libc.telldir(h)
    again = []
    libc.seekdir(h, pos)
    while True:
        p = libc.readdir(h)
        if not p:
            break
        again.append(p.contents.d_name.decode("utf-8", "surrogateescape"))
    libc.closedir(h)
    return {**t.result(), "afterSeek": len(again), "sameAfterSeek": again == rest, "expectedAfterSeek": len(rest)}


if __name__ == "__main__":
    mode, d, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "scan":
        out = scan(d, count, int(sys.argv[4]) if len(sys.argv) > 4 else 0, int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    else:
        out = seek(d, count, int(sys.argv[4]))
    print(json.dumps(out))
