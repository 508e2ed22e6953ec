"""Code that runs on the *child* side of :mod:`rewards.sandbox`.

This file is never imported by the sandbox; its source text is handed to a
fresh ``python -I -S -c`` so that the child does not depend on the project
being importable (or even readable) from inside the sandbox. It has two entry
points, picked by ``sys.argv[1]``:

``launch``  runs first, as the caller's user and outside any sandbox. It drops
            root to ``nobody``, sets the rlimits and ``no_new_privs`` and then
            ``exec``s either bubblewrap (which runs the interpreter again in
            ``run`` mode inside its namespaces) or, in the weak mode, the
            interpreter directly.
``run``     closes inherited descriptors, installs the audit hook and executes
            ``main.py`` from the cwd.

Only the standard library may be used here, and the file must stay a single
self-contained script.
"""

import json
import os
import resource
import signal
import sys

NOBODY = 65534
SETUP_FAILED = 117  # exit code: the launcher could not build the sandbox

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_DAC_READ_SEARCH = 2
CAPABILITY_VERSION_3 = 0x20080522


# ---------------------------------------------------------------- launch side
def _libc():
    import ctypes  # the audit hook (run side) forbids ctypes; the launcher needs it

    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        if getattr(libc, name)(*args) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")

    return call


def _count_processes(uid):
    # RLIMIT_NPROC counts every process of the uid, so the limit has to sit on
    # top of what that uid already runs (other sandboxes included).
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _drop_to_nobody():
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def _drop_to_nobody_keeping_read(call):
    """Become nobody but keep CAP_DAC_READ_SEARCH across exec (weak mode only).

    For interpreters that nobody cannot reach (e.g. pyenv under a 0700
    /root): the child can still read and traverse everything, so the audit
    hook alone guards reads, but it can no longer write, create device nodes,
    signal other users' processes or escape RLIMIT_NPROC.
    """
    import ctypes

    call("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)
    _drop_to_nobody()
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    bit = 1 << CAP_DAC_READ_SEARCH
    data = (ctypes.c_uint32 * 6)(bit, bit, bit, 0, 0, 0)  # effective, permitted, inheritable (low word)
    call("capset", header, data)
    call("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0)


def _set_limits(cfg, nproc):
    mem = cfg["memory_mb"] * 1024 * 1024
    limits = {
        resource.RLIMIT_AS: mem,
        resource.RLIMIT_DATA: mem,
        resource.RLIMIT_CPU: cfg["cpu_s"],
        resource.RLIMIT_FSIZE: cfg["fsize_bytes"],
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
        resource.RLIMIT_NPROC: nproc,
    }
    for res, value in limits.items():
        resource.setrlimit(res, (value, value))


def launch(cfg):
    """Drop privileges, set limits, then exec the sandbox (``cfg["argv"]``)."""
    status_fd = cfg["status_fd"]
    layers = set()
    try:
        call = _libc()
        call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.geteuid() == 0:
            if cfg["keep_read"]:
                _drop_to_nobody_keeping_read(call)
                layers.add("privdrop_readall")
            else:
                _drop_to_nobody()
                layers.add("privdrop")
            call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the uid change cleared it
        # Root would ignore RLIMIT_NPROC; from here on the uid is never 0.
        _set_limits(cfg, _count_processes(os.getuid()) + cfg["max_processes"])
        layers.add("rlimits")
        # setuid binaries and file capabilities grant nothing from here on
        call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        layers.add("no_new_privs")
        if os.getuid() == 0:
            raise OSError("still root after the privilege drop")
    except Exception as exc:
        os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    os.write(status_fd, json.dumps(sorted(layers)).encode())
    os.close(status_fd)
    argv = cfg["argv"]
    try:
        os.execve(argv[0], argv, cfg["env"])
    except OSError as exc:
        os.write(2, f"sandbox setup failed: cannot run {argv[0]}: {exc}\n".encode())
        os._exit(SETUP_FAILED)


# ------------------------------------------------------------------- run side
def _make_hook(workdir, read_roots):
    """The audit hook: a policy over Python's audit events (see the sandbox docs)."""
    import pathlib  # its path types are the only path-likes the hook trusts

    # Policy lives in keyword defaults, not a closure: replacing __kwdefaults__
    # or __code__ raises an audit event the hook blocks, whereas a closure
    # cell can be rebound silently.
    write_events = frozenset({
        "os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown",
        "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "shutil.rmtree",
        "shutil.copyfile", "shutil.copytree", "shutil.move", "shutil.chown",
    })
    read_events = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.listxattr", "os.getxattr"})
    denied_prefixes = (
        "socket.", "ctypes.", "os.fork", "os.vfork", "os.exec", "os.spawn", "os.posix_spawn",
        "os.system", "os.kill", "os.killpg", "os.link", "os.symlink", "os.startfile", "os.chroot",
        "subprocess.", "signal.pthread_kill", "pty.", "gc.get_", "sys._current_frames",
        "_posixsubprocess.", "fcntl.ioctl", "mmap.", "resource.prlimit",
    )
    # Sub-interpreters start without this hook; the test modules can start them too.
    denied_imports = frozenset({
        "ctypes", "_ctypes", "_posixsubprocess", "posix", "_imp", "_xxsubinterpreters", "_interpreters",
        "_xxinterpchannels", "_interpchannels", "_interpqueues", "_testcapi", "_testinternalcapi",
        "_testmultiphase", "_testsinglephase", "_testimportmultiple", "_ctypes_test", "_xxtestfuzz",
    })
    path_types = (str, bytes, pathlib.PurePosixPath, pathlib.PosixPath)

    def hook(event, args, *, _w=(workdir,), _r=tuple(read_roots), _we=write_events, _re=read_events,
             _dp=denied_prefixes, _di=denied_imports, _pt=path_types, _fi=("__code__", "__kwdefaults__"),
             _wf=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
             _dev=("/dev/null", "/dev/urandom", "/dev/zero"), _real=os.path.realpath, _fs=os.fsdecode,
             _isfile=os.path.isfile, _isdir=os.path.isdir, _any=any, _type=type, _bool=bool,
             _int=int, _str=str, _err=PermissionError):
        # Builtins come in as keyword defaults too: code that rebinds
        # builtins.any or builtins.type must not change what the hook sees.
        def resolve(path):
            # An arbitrary __fspath__ could answer the hook with one path and
            # the system call with another, so only plain path types pass.
            if _type(path) not in _pt:
                raise _err(f"sandbox: {event} with a {_type(path).__name__} path")
            return _real(_fs(path))

        def under(real, roots):
            return _any(real == r or real.startswith(r + "/") for r in roots)

        if event.startswith(_dp):
            raise _err(f"sandbox: {event} is not allowed")
        # Every dotted part: an extension module loaded under an alias such
        # as "pkg._ctypes" still initialises from its last part.
        if event == "import" and _any(part in _di for part in _str(args[0]).split(".")):
            raise _err(f"sandbox: import of {args[0]} is not allowed")
        if event == "object.__setattr__" and args[1] in _fi and _type(args[0]).__name__ == "function":
            raise _err("sandbox: rebinding function internals is not allowed")
        if event == "open":
            path, mode, flags = args
            if _type(path) is _int:
                return  # an fd the process already holds
            real = resolve(path)
            writing = _any(c in (mode or "") for c in "wax+") or _bool((flags or 0) & _wf)
            # No directory fds anywhere: a dir_fd-relative call is resolved by
            # the kernel against that fd, while this hook only sees the path.
            if _isdir(real):
                raise _err(f"sandbox: cannot open directory {path!r}")
            if under(real, _w):
                return
            # Outside the work dir: read-only, and regular files only.
            if writing or not ((under(real, _r) and _isfile(real)) or real in _dev):
                raise _err(f"sandbox: cannot open {path!r}")
        elif event in _we:
            for arg in args:
                if _type(arg) is not _int and arg is not None and not under(resolve(arg), _w):
                    raise _err(f"sandbox: {event} outside the sandbox")
        elif (event in _re and args and args[0] is not None and _type(args[0]) is not _int
              and not under(resolve(args[0]), _w + _r)):
            raise _err(f"sandbox: {event} outside the sandbox")

    return hook


def run(cfg):
    """Execute ``main.py`` as ``__main__``, under the audit hook when asked."""
    os.closerange(3, 1024)  # nothing the launcher or bubblewrap held stays reachable
    with open("main.py", "rb") as fh:
        source = fh.read()
    code = compile(source, "main.py", "exec")
    if cfg["hook"]:
        stdlib = os.path.dirname(os.__file__)
        sys.addaudithook(_make_hook(os.path.realpath(os.getcwd()), [os.path.realpath(stdlib)]))
    sys.argv = ["main.py", *cfg.get("args", [])]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    if mode == "launch":
        launch(cfg)
    else:
        run(cfg)
