"""Run a command under the seccomp filters systemd builds for a unit, without systemd.

`python seccomp_jail.py [--mdwe] [--allow NAMES] [--errno N] -- COMMAND...`
loads, through libseccomp (as systemd does):
- with --mdwe, MemoryDenyWriteExecute=yes: mmap with PROT_WRITE|PROT_EXEC,
  mprotect/pkey_mprotect adding PROT_EXEC and shmat with SHM_EXEC fail with EPERM;
- with --allow, SystemCallFilter=NAMES (an allow list of system calls and
  @groups, expanded the way `systemd-analyze syscall-filter` lists them):
  every other system call fails with --errno (SystemCallErrorNumber=);
then executes COMMAND. Tests use it to run the real inference engines the way
the service runs them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys

ALLOW = 0x7FFF0000  # SCMP_ACT_ALLOW
MASKED_EQ = 7  # SCMP_CMP_MASKED_EQ
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def libseccomp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)  # SCMP_ACT_ERRNO(number)


def syscall_groups() -> dict[str, list[str]]:
    """@group -> its members (calls and @groups), from `systemd-analyze syscall-filter`."""
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        item = line.strip()
        if line.startswith("@"):
            current = groups.setdefault(item, [])
        elif item and not item.startswith("#") and current is not None:
            current.append(item)
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    """System call names in `names`, @groups expanded (as systemd does)."""
    out: set[str] = set()
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if not name.startswith("@"):
            out.add(name)
        elif name not in seen:
            seen.add(name)
            todo += groups[name]
    return out


def load_mdwe(lib: ctypes.CDLL) -> None:
    ctx = lib.seccomp_init(ALLOW)
    rules = [
        ("mmap", PROT_WRITE | PROT_EXEC),
        ("mprotect", PROT_EXEC),
        ("pkey_mprotect", PROT_EXEC),
        ("shmat", SHM_EXEC),
    ]
    for name, mask in rules:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        cmp = ArgCmp(2, MASKED_EQ, mask, mask)  # the prot / shmflg argument
        assert (
            lib.seccomp_rule_add_array(ctx, errno_action(errno.EPERM), number, 1, ctypes.byref(cmp))
            == 0
        ), name
    assert lib.seccomp_load(ctx) == 0
    lib.seccomp_release(ctx)


def load_allow_list(lib: ctypes.CDLL, calls: set[str], error: int) -> None:
    ctx = lib.seccomp_init(errno_action(error))
    for name in sorted(calls):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # a call this architecture does not have
            assert lib.seccomp_rule_add_array(ctx, ALLOW, number, 0, None) == 0, name
    assert lib.seccomp_load(ctx) == 0
    lib.seccomp_release(ctx)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    lib = libseccomp()
    assert lib is not None, "libseccomp is missing"
    # W^X first: the allow list may not include seccomp() itself.
    if "--mdwe" in options:
        load_mdwe(lib)
    if "--allow" in options:
        names = options[options.index("--allow") + 1].split()
        error = int(options[options.index("--errno") + 1]) if "--errno" in options else 1
        load_allow_list(lib, expand(names, syscall_groups()), error)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
