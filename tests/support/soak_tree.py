#!/usr/bin/env python3
"""Trees for benches/soak.sh: generate one, change one at random, compare two.

    soak_tree.py gen ROOT SEED FILES
    soak_tree.py mutate ROOT SEED source|destination FILES
    soak_tree.py compare A B        # exit 1 and a diff when they differ

Deterministic for a seed (apart from "now"), so SOAK_SEED replays a run's
changes. Names stay UTF-8 without control characters: SFTP and FTP both
carry them, and a difference found is then barge's, not the name's.
"""
import hashlib
import math
import os
import random
import shutil
import sys
import time

NAMES = ["data", "report final", "été", "日本語", "a-b_c", "x.tar.gz", "notes.txt", "Ω", "long" * 20]


def name(rng, taken):
    while True:
        n = f"{rng.choice(NAMES)}-{rng.randrange(1 << 24):06x}"
        if n not in taken:
            return n


def content(rng, size):
    return rng.randbytes(size)


def size_of(rng):
    # Log-normal, median 4 KiB; one in fifty is 256 KiB..4 MiB (several reads).
    if rng.random() < 0.02:
        return rng.randrange(256 << 10, 4 << 20)
    return min(int(math.exp(rng.gauss(math.log(4096), 1.5))), 1 << 20)


def write(path, data, mtime=None):
    with open(path, "wb") as out:
        out.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def walk(root):
    dirs, files = [], []
    for d, ds, fs in os.walk(root):
        for x in ds:
            dirs.append(os.path.join(d, x))
        for x in fs:
            files.append(os.path.join(d, x))
    dirs.sort()
    files.sort()
    return dirs, files


def shifted(path, rng):
    """An mtime at least 2 s from the current one: FTP keeps whole seconds."""
    old = os.stat(path).st_mtime
    return old + rng.choice([-1, 1]) * rng.randrange(2, 10_000_000)


def gen(root, seed, count):
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    dirs = [root]
    for _ in range(max(count // 20, 1)):
        parent = rng.choice(dirs)
        d = os.path.join(parent, name(rng, set(os.listdir(parent))))
        os.mkdir(d)
        dirs.append(d)
    for _ in range(count):
        parent = rng.choice(dirs)
        p = os.path.join(parent, name(rng, set(os.listdir(parent))))
        write(p, content(rng, size_of(rng)), time.time() - rng.randrange(0, 100_000_000))


def mutate(root, seed, side, target):
    """A few percent of the tree changed, every kind of change each time;
    new files and directories make up for what was deleted, so the tree
    stays near `target` files (and memory is compared on like trees)."""
    rng = random.Random(seed)
    dirs, files = walk(root)
    n = max(len(files) // 50, 3)
    done = {}

    def count(kind):
        done[kind] = done.get(kind, 0) + 1

    def pick_file():
        alive = [f for f in files if os.path.isfile(f)]
        return rng.choice(alive) if alive else None

    if side == "destination":
        # Strays to delete, changed copies to overwrite, copies to restore.
        for _ in range(rng.randrange(1, 4)):
            parent = rng.choice([root] + [d for d in dirs if os.path.isdir(d)])
            write(os.path.join(parent, name(rng, set(os.listdir(parent)))), content(rng, size_of(rng)))
            count("stray")
        for _ in range(rng.randrange(1, 4)):
            f = pick_file()
            if f:
                size = os.path.getsize(f)
                write(f, content(rng, size), shifted(f, rng))
                count("changed")
        for _ in range(rng.randrange(0, 3)):
            f = pick_file()
            if f:
                os.remove(f)
                count("deleted")
        print(" ".join(f"{k}={v}" for k, v in sorted(done.items())))
        return

    for _ in range(n):
        kind = rng.choice(["new", "new", "same-size", "truncate", "grow", "delete", "mtime"])
        f = pick_file()
        if kind == "new" or f is None:
            live = [root] + [d for d in dirs if os.path.isdir(d)]
            parent = rng.choice(live)
            p = os.path.join(parent, name(rng, set(os.listdir(parent))))
            write(p, content(rng, size_of(rng)))
            files.append(p)
            count("new")
        elif kind == "same-size":
            write(f, content(rng, os.path.getsize(f)), shifted(f, rng))
            count("same-size")
        elif kind == "truncate":
            size = os.path.getsize(f)
            with open(f, "r+b") as out:
                out.truncate(rng.randrange(0, size) if size else 0)
            count("truncate")
        elif kind == "grow":
            with open(f, "ab") as out:
                out.write(content(rng, rng.randrange(1, 100_000)))
            count("grow")
        elif kind == "delete":
            os.remove(f)
            count("delete")
        elif kind == "mtime":
            os.utime(f, (time.time(), shifted(f, rng)))
            count("mtime-only")
    live = [d for d in dirs if os.path.isdir(d)]
    if live and rng.random() < 0.5:
        d = rng.choice(live)
        shutil.rmtree(d)
        count("rmdir")
    live = [d for d in dirs if os.path.isdir(d)]
    if live and rng.random() < 0.5:
        d = rng.choice(live)
        parent = rng.choice([root] + [x for x in live if x != d and not x.startswith(d + "/")])
        os.rename(d, os.path.join(parent, name(rng, set(os.listdir(parent)))))
        count("rename-dir")
    if rng.random() < 0.3:
        parent = rng.choice([root] + [d for d in walk(root)[0]])
        os.mkdir(os.path.join(parent, name(rng, set(os.listdir(parent)))))
        count("mkdir")
    dirs, files = walk(root)
    # A removed directory takes its subtree: up to ten new ones a time keep
    # the tree's shape (files per directory) near the start's.
    for _ in range(min(max(target // 20 - len(dirs), 0), 10)):
        parent = rng.choice([root] + dirs)
        d = os.path.join(parent, name(rng, set(os.listdir(parent))))
        os.mkdir(d)
        dirs.append(d)
        count("top-up-dir")
    for _ in range(max(target - len(files), 0) // 3):
        parent = rng.choice([root] + dirs)
        write(os.path.join(parent, name(rng, set(os.listdir(parent)))), content(rng, size_of(rng)))
        count("top-up-file")
    print(" ".join(f"{k}={v}" for k, v in sorted(done.items())))


def snapshot(root):
    dirs, files = walk(root)
    tree = {os.path.relpath(d, root): ("dir",) for d in dirs}
    for f in files:
        st = os.lstat(f)
        h = hashlib.sha256()
        with open(f, "rb") as inp:
            for chunk in iter(lambda: inp.read(1 << 20), b""):
                h.update(chunk)
        # Whole seconds: FTP keeps no more.
        tree[os.path.relpath(f, root)] = ("file", st.st_size, int(st.st_mtime), h.hexdigest())
    return tree


def compare(a, b):
    ta, tb = snapshot(a), snapshot(b)
    problems = []
    for path in sorted(set(ta) | set(tb)):
        x, y = ta.get(path), tb.get(path)
        if x != y:
            problems.append(f"  {path!r}: {a}: {x}  {b}: {y}")
    files = sum(1 for v in ta.values() if v[0] == "file")
    if problems:
        print(f"MISMATCH: {len(problems)} paths differ", file=sys.stderr)
        print("\n".join(problems[:50]), file=sys.stderr)
        sys.exit(1)
    print(f"{files} files {len(ta) - files} dirs {sum(v[1] for v in ta.values() if v[0] == 'file')} bytes")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "mutate":
        mutate(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
