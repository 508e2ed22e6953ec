"""Code that runs on the *child* side of :mod:`rewards.sandbox`.

This file is never imported by the sandbox; its source text is handed to a
fresh ``python -I -S -c`` so that the child does not depend on the project
being importable (or even readable) from inside the sandbox. It has two entry
points, picked by ``sys.argv[1]``:

``launch``  runs first, as the caller's user. It builds the OS layers
            (privilege drop, namespaces, private root, rlimits) and then
            ``exec``s the interpreter again in ``run`` mode. The ``exec`` is
            what drops the namespace capabilities the setup needed.
``run``     installs the audit hook and executes ``main.py`` from the cwd.

Only the standard library may be used here, and the file must stay a single
self-contained script.
"""

import json
import os
import resource
import signal
import sys

NOBODY = 65534
SETUP_FAILED = 117  # exit code: namespace setup broke after the point of no return

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

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


def _write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def _count_processes(uid):
    # RLIMIT_NPROC counts every process of the uid, so without a user namespace
    # the limit has to sit on top of what that uid already runs.
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
    """Become nobody but keep CAP_DAC_READ_SEARCH across exec.

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


def _mount_flags(path):
    # Inside a user namespace a read-only remount must keep the flags that the
    # outer mount locks (nosuid, nodev, noexec), or the kernel refuses it.
    st = os.statvfs(path)
    flags = 0
    if st.f_flag & os.ST_NOSUID:
        flags |= MS_NOSUID
    if st.f_flag & os.ST_NODEV:
        flags |= MS_NODEV
    if st.f_flag & os.ST_NOEXEC:
        flags |= MS_NOEXEC
    return flags


def _build_root(call, cfg, code):
    """Mount a private root made of read-only binds plus a small tmpfs /sandbox."""
    root = cfg["workdir"]  # reused as mount point: only this namespace sees the tmpfs
    call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
    call("mount", b"tmpfs", root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
    for path in cfg["binds"]:
        if not os.path.lexists(path):
            continue
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(path):
            os.symlink(os.readlink(path), target)
            continue
        if os.path.isdir(path):
            os.mkdir(target)
        else:
            open(target, "w").close()
        call("mount", path.encode(), target.encode(), None, MS_BIND | MS_REC, None)
        if not path.startswith("/dev/"):
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | _mount_flags(target)
            call("mount", None, target.encode(), None, flags, None)
    sandbox = root + "/sandbox"
    os.mkdir(sandbox)
    opts = f"size={cfg['disk_mb']}m,nr_inodes=1024,mode=0777".encode()
    call("mount", b"tmpfs", sandbox.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts)
    with open(sandbox + "/main.py", "w") as fh:
        fh.write(code)
    # The private root itself becomes read-only; only /sandbox stays writable.
    call("mount", None, root.encode(), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.chroot(root)
    os.chdir("/sandbox")


def _set_limits(cfg, nproc):
    mem = cfg["memory_mb"] * 1024 * 1024
    cpu = cfg["cpu_s"]
    limits = {
        resource.RLIMIT_AS: mem,
        resource.RLIMIT_DATA: mem,
        resource.RLIMIT_CPU: cpu,
        resource.RLIMIT_FSIZE: cfg["fsize_bytes"],
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
    }
    if nproc is not None:
        limits[resource.RLIMIT_NPROC] = nproc
    for res, value in limits.items():
        resource.setrlimit(res, (value, value))


def _exec_run(cfg, layers, status_fd, call):
    if call is not None:
        # setuid binaries and file capabilities grant nothing from here on
        call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        layers.add("no_new_privs")
    os.write(status_fd, json.dumps(sorted(layers)).encode())
    os.close(status_fd)
    argv = [*cfg["run_argv"], json.dumps({"hook": cfg["hook"], "workdir": os.getcwd()})]
    os.execve(argv[0], argv, cfg["env"])


def _launch_namespaced(cfg, status_fd, call, layers):
    with open(os.path.join(cfg["workdir"], "main.py")) as fh:
        code = fh.read()
    as_root = os.geteuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    # Root builds the namespaces directly and drops to nobody afterwards; any
    # other user needs a user namespace to get the capabilities for it.
    uid, gid = os.geteuid(), os.getegid()
    try:
        call("unshare", flags if as_root else flags | CLONE_NEWUSER)
    except OSError:
        return  # refused (e.g. a container's seccomp profile); nothing has changed yet
    try:
        if not as_root:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
            layers.add("userns")
        layers.update({"netns", "pidns", "ipcns"})
        # nobody's processes elsewhere count against RLIMIT_NPROC; /proc is
        # gone after the chroot, so count now.
        nproc = cfg["max_processes"] + (_count_processes(NOBODY) if as_root else 0)
        _build_root(call, cfg, code)
        layers.add("private_root")
        if as_root:
            _drop_to_nobody()
            call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the uid change cleared it
            layers.add("privdrop")
    except Exception as exc:  # half-built namespaces: give up, the caller falls back
        os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    pid = os.fork()  # the child is pid 1 of the new pid namespace: its death ends them all
    if pid == 0:
        try:
            call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _set_limits(cfg, nproc)
            layers.add("rlimits")
            _exec_run(cfg, layers, status_fd, call)
        finally:  # only reached if exec failed
            os.write(2, b"sandbox setup failed: exec in the namespace failed\n")
            os._exit(SETUP_FAILED)
    os.close(status_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)  # relay the same death to the caller
    os._exit(os.waitstatus_to_exitcode(status))


def _launch_plain(cfg, status_fd, call, layers):
    if os.geteuid() == 0:
        if cfg["nobody_can_run"]:
            _drop_to_nobody()
            layers.add("privdrop")
        elif call is not None:
            _drop_to_nobody_keeping_read(call)
            layers.add("privdrop_readall")
    if call is not None:
        call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    uid = os.geteuid()
    # root ignores RLIMIT_NPROC; the audit hook is what stops fork there.
    nproc = None if uid == 0 else _count_processes(uid) + cfg["max_processes"]
    _set_limits(cfg, nproc)
    layers.add("rlimits")
    _exec_run(cfg, layers, status_fd, call)


def launch(cfg):
    status_fd = cfg["status_fd"]
    layers = {"hook"} if cfg["hook"] else set()
    try:
        call = _libc()
        call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        call = None
    if cfg["namespaces"] and call is not None:
        _launch_namespaced(cfg, status_fd, call, layers)  # returns only if unshare was refused
    _launch_plain(cfg, status_fd, call, layers)


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
    denied_imports = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "posix", "_imp"})
    path_types = (str, bytes, pathlib.PurePosixPath, pathlib.PosixPath)

    def hook(event, args, *, _w=(workdir,), _r=tuple(read_roots), _we=write_events, _re=read_events,
             _dp=denied_prefixes, _di=denied_imports, _pt=path_types, _fi=("__code__", "__kwdefaults__"),
             _wf=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
             _dev=("/dev/null", "/dev/urandom", "/dev/zero"), _real=os.path.realpath, _fs=os.fsdecode,
             _isfile=os.path.isfile):
        def resolve(path):
            # An arbitrary __fspath__ could answer the hook with one path and
            # the system call with another, so only plain path types pass.
            if type(path) not in _pt:
                raise PermissionError(f"sandbox: {event} with a {type(path).__name__} path")
            return _real(_fs(path))

        def under(real, roots):
            return any(real == r or real.startswith(r + "/") for r in roots)

        if event.startswith(_dp):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].partition(".")[0] in _di:
            raise PermissionError(f"sandbox: import of {args[0]} is not allowed")
        if event == "object.__setattr__" and args[1] in _fi and type(args[0]).__name__ == "function":
            raise PermissionError("sandbox: rebinding function internals is not allowed")
        if event == "open":
            path, mode, flags = args
            if type(path) is int:
                return  # an fd the process already holds
            real = resolve(path)
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _wf)
            if under(real, _w):
                return
            # Outside the work dir: read-only, and files only (a directory fd
            # would let dir_fd-relative calls slip past the path checks).
            if writing or not ((under(real, _r) and _isfile(real)) or real in _dev):
                raise PermissionError(f"sandbox: cannot open {path!r}")
        elif event in _we:
            for arg in args:
                if type(arg) is not int and arg is not None and not under(resolve(arg), _w):
                    raise PermissionError(f"sandbox: {event} outside the sandbox")
        elif (event in _re and args and args[0] is not None and type(args[0]) is not int
              and not under(resolve(args[0]), _w + _r)):
            raise PermissionError(f"sandbox: {event} outside the sandbox")

    return hook


def run(cfg):
    with open("main.py") as fh:
        source = fh.read()
    code = compile(source, "main.py", "exec")
    if cfg["hook"]:
        stdlib = os.path.dirname(os.__file__)
        sys.addaudithook(_make_hook(os.path.realpath(cfg["workdir"]), [os.path.realpath(stdlib)]))
    sys.argv = ["main.py"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    if mode == "launch":
        launch(cfg)
    else:
        run(cfg)
