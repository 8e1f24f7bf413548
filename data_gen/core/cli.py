"""Shared command-line plumbing: Hydra argv fix-ups and clear error reporting."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from data_gen.core.environment import environment
from data_gen.core.errors import InputError
from data_gen.core.paths import DISK_FULL_TEXTS
from data_gen.core.values import boolean, integer, number

log = logging.getLogger("data_gen")

_RANGE = re.compile(r"^(\+{0,2}[\w.]+)=(range\(.*\))$")


def quote_range_overrides(argv: list[str]) -> list[str]:
    """``key=range(a,b)`` -> ``key='range(a,b)'``: a value, not a Hydra multirun sweep."""
    out = []
    for a in argv:
        m = _RANGE.match(a)
        out.append(f"{m.group(1)}='{m.group(2)}'" if m else a)
    return out


def origin_hint(message: str, config_name: str) -> str:
    """Where the config key an error message starts with came from (CLI or which YAML)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # not under Hydra (library use)
        return ""
    m = re.match(r"^([a-z_][\w]*(?:\.[\w]+)*)", message)
    if m is None:
        return ""
    key = m.group(1)
    for o in hc.overrides.task:
        k = o.split("=", 1)[0].lstrip("+~")
        if key == k or key.startswith(k + ".") or k.startswith(key + "."):
            return f" [set on the command line: {o}]"
    group = key.split(".", 1)[0]
    choice = hc.runtime.choices.get(group)
    if choice is not None and "." in key:
        return f" [from conf/{group}/{choice}.yaml]"
    return f" [from conf/{config_name}.yaml]"


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a ``kill -9`` of the
    generator takes its pool workers with it instead of leaving them rendering)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(
                1, int(signal.SIGKILL)
            )  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl: follow it
            os._exit(1)


def describe_os_error(e: OSError) -> str:
    """One line for a file-system failure: what the system said, and where."""
    text = " ".join(str(e).split())  # HDF5 errors span several lines
    files = [f for f in (e.filename, e.filename2) if f is not None]
    if not files:  # HDF5 names the file inside its message
        files = re.findall(r"filename = '([^']+)'", text)[:1]
    code = e.errno
    if code is None:  # HDF5 puts errno in the text
        m = re.search(r"errno = (\d+)", text)
        code = int(m.group(1)) if m else None
    what = os.strerror(code) if code else (e.strerror or text or type(e).__name__)
    if code == errno.ENOSPC:
        what += " (the disk is full: free space or choose another output directory)"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        what += " (choose a directory you can write to)"
    elif code is None and files:
        what = text
    where = " -> ".join(repr(str(f)) for f in files)
    return f"{what}: {where}" if where else what


def save_traceback(command: str, log_dirs: list[Path] | tuple[Path, ...] = ()) -> Path | None:
    """The current exception's full traceback, written where a person will look for it: the
    first of ``log_dirs`` that already exists (a run's ``logs/``, a dataset's ``out_dir``,
    the service's storage: never created here, so a failed command leaves no claim), else
    ``<cache>/logs`` (``$RESIDUAL_TRAIN_CACHE`` or ``~/.cache/residual-train``). Returns the
    file, or None when nothing could be written (the one-line error still stands)."""
    import time
    import traceback

    from data_gen.core.paths import bank_cache_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', command)}-{stamp}-{os.getpid()}.traceback.txt"
    dirs = [Path(d) for d in log_dirs if Path(d).is_dir()]
    for d in [*dirs, bank_cache_dir().parent / "logs"]:
        try:
            d.mkdir(parents=True, exist_ok=True)
            f = d / name
            f.write_text(f"{' '.join(sys.argv)}\n\n{traceback.format_exc()}")
            return f
        except OSError:
            continue
    return None


def run_task(
    fn: Callable[[], object], config_name: str, log_dirs: list[Path] | tuple[Path, ...] = ()
) -> object:
    """Run ``fn`` and end in one of two ways: its result, or one line on stderr.

    * :class:`InputError` (bad input: a config value, a file's content) -> exit status 2,
      with where the offending key came from;
    * :class:`OSError` (the environment: disk full, read-only, permissions) -> exit 1;
    * Ctrl-C -> exit 130;
    * anything else is a bug: one line naming the exception, exit 1.

    A bug's full traceback is written to a file
    (:func:`save_traceback`: the first existing of ``log_dirs``, else the cache's ``logs/``)
    that the line names, so a failed batch job can be diagnosed afterwards.
    ``RESIDUAL_TRAIN_DEBUG=1`` re-raises instead, with the traceback.
    """
    debug = environment().debug
    try:
        return fn()
    except InputError as e:
        if debug:
            raise
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"error: {msg}{origin_hint(msg, config_name)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as e:
        if debug:
            raise
        print(f"error: {describe_os_error(e)}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as e:  # a bug, not the user's input: still one line, and how to see more
        if debug:
            raise
        if any(t in str(e) for t in DISK_FULL_TEXTS):  # another library's ENOSPC, where unnamed
            print(f"error: {describe_os_error(OSError(errno.ENOSPC, str(e)))}", file=sys.stderr)
            sys.exit(1)
        saved = save_traceback(config_name, log_dirs)
        where = f"traceback in {saved}" if saved else "RESIDUAL_TRAIN_DEBUG=1 shows the traceback"
        print(
            f"error: internal error {type(e).__name__}: {' '.join(str(e).split())} "
            f"({where}; please report it)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)


def report_hydra_errors(main: Callable[[], object]) -> object:
    """Run a ``@hydra.main`` function; Hydra's own errors (an unknown key, a missing config
    group option, a malformed override) become one line on stderr and exit status 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    debug = environment().debug
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let the exception reach us instead of Hydra's report
    try:
        return main()
    except (HydraException, OmegaConfBaseException) as e:
        if debug:
            raise
        parts = [str(e), *([str(e.__cause__)] if e.__cause__ is not None else [])]
        lines = [ln.strip() for p in parts for ln in p.splitlines() if ln.strip()]
        # OmegaConf appends "full_key: ..., object_type=..." lines: the key is already named
        lines = [
            ln
            for ln in lines
            if not ln.startswith(("full_key:", "object_type=", "reference_type="))
        ]
        msg = " ".join(dict.fromkeys(lines)).split(" Config search path:")[0]
        print(f"error: {msg[:400]}", file=sys.stderr, flush=True)
        sys.exit(2)


# Hydra's command-line options that take the next argument as their value
_OPTION_VALUES = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"}
_OPTION_VALUES |= {"-p", "--package", "-c", "--cfg", "--experimental-rerun"}


def named_words(argv: list[str], words: dict[str, str]) -> list[str]:
    """Bare words as named keys, in order, wherever they stand among the overrides and
    flags: ``words = {"dir": "*"}`` turns ``DIR`` into ``dir=DIR``; ``{"action":
    "list|alias"}`` turns ``list`` into ``action=list`` (only those values; the first word
    that fits no key ends the naming). Keeps ``verify DIR``, ``verify --no-checksums DIR``,
    ``verify checksums=false DIR`` and ``publish list`` working."""
    out, keys = [], list(words.items())
    naming, after_option = True, False
    for a in argv:
        bare = "=" not in a and not a.startswith("-") and not after_option
        after_option = a in _OPTION_VALUES
        if bare and naming and keys:
            key, allowed = keys[0]
            if allowed == "*" or a in allowed.split("|"):
                out.append(f"{key}={a}")
                keys.pop(0)
                continue
            naming = False  # left to Hydra, which names it
        out.append(a)
    return out


_GROUP_FILE = re.compile(r"^(\w+)=(.+\.ya?ml)$")
PATH_KEYS = ("path", "profile", "dark")  # keys of a group file naming a file beside it


def group_files(argv: list[str], config_dir: str | Path) -> list[str]:
    """``GROUP=FILE.yaml``: a file where a config group of ``config_dir`` expects an option
    name (``sensor=calib/sensor.yaml``, ``lens=calib/lens.yaml``) becomes an option of that
    group, so Hydra composes the file's content as if it were shipped in ``conf/GROUP/``.

    The file is copied, with relative ``path`` / ``profile`` / ``dark`` values made absolute
    from its own folder, to ``<cache>/configs/<hash>/GROUP/file_<hash>.yaml`` (content-addressed;
    ``$RESIDUAL_TRAIN_CACHE`` or ``~/.cache/residual-train``), and that folder is added to
    ``hydra.searchpath``. The resolved config holds the content, not the file name, so a
    dataset's config and hash do not depend on where the file was.
    """
    import hashlib

    import yaml

    from data_gen.core.errors import InputError, require
    from data_gen.core.paths import bank_cache_dir

    groups = {p.name for p in Path(config_dir).iterdir() if p.is_dir()}
    out, roots = [], []
    for a in argv:
        m = _GROUP_FILE.match(a)
        if m is None or m.group(1) not in groups:
            out.append(a)
            continue
        group, f = m.group(1), Path(m.group(2)).expanduser()
        require(f.is_file(), f"{group} = {m.group(2)!r}: no such file (a {group} config .yaml)")
        try:
            doc = yaml.safe_load(f.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"{group} = {str(f)!r}: not readable YAML ({e})") from None
        require(isinstance(doc, dict), f"{group} = {str(f)!r}: the file is not a mapping of keys")
        for key in PATH_KEYS:
            v = doc.get(key)
            if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
                doc[key] = str((f.resolve().parent / v).resolve())
        text = yaml.safe_dump(doc, sort_keys=False)
        h = hashlib.sha256(f"{group}\n{text}".encode()).hexdigest()[:16]
        root = bank_cache_dir().parent / "configs" / h
        target = root / group / f"file_{h}.yaml"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            tmp.write_text(f"# {group} from {f.resolve()}\n{text}")
            os.replace(tmp, target)
        out.append(f"{group}=file_{h}")
        roots.append(f"file://{root}")
    if roots:
        given = [a for a in out if a.startswith("hydra.searchpath=")]
        if given:
            out.remove(given[0])
            inner = given[0].split("=", 1)[1].strip().removeprefix("[").removesuffix("]")
            roots = [r for r in inner.split(",") if r.strip()] + roots
        out.append(f"hydra.searchpath=[{','.join(roots)}]")
    return out


def compose_config(config_dir: str | Path, name: str, overrides: list[str]) -> dict:
    """A config resolved as its command line would resolve it, as a plain dict.

    Works inside a running Hydra app too (the demo composes the generator's and the
    trainer's configs from within its own job): the app's global state is set aside and
    restored afterwards.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf import OmegaConf

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
            return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)
    finally:
        restore_gh_from_backup(backup)


# settings whose default is a number or a boolean but that take other values too
UNTYPED = (
    "data.val_shards",  # a number, a fraction, a list or "all"
    "trainer.devices",  # a number, a list or "auto"
    "trainer.precision",  # 32, "bf16-mixed", "auto", ...
    "trainer.deterministic",  # true, false or "warn"
    "self_ensemble",  # true, false or "trained" (deploy, evaluate, serve)
)


def _lookup(cfg, key: str):
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return _MISSING
        cfg = cfg[part]
    return cfg


_MISSING = object()


# keys a command line may add with `+key=value` (each read by the code below them); any
# other addition is a setting nothing reads: a typo, refused
ADDABLE = {
    "train": ("trainer.", "callbacks.", "logger.", "data.onthefly.generator"),
    "data_gen": ("source.depth", "source.sources.", "component."),
}


def command_line_values(config_dir: str | Path) -> tuple[list[str], list[str], list[str]]:
    """This Hydra job's command-line overrides split into config-group choices
    (``experiment=tiny``), the keys of values set on existing settings (``seed=3``) and
    the keys added (``+new=...``); Hydra's own settings left out."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    hc = HydraConfig.get()
    overrides = [o for o in hc.overrides.task if not o.startswith("hydra")]
    # a GROUP=FILE.yaml option lives in a folder added to the search path: keep it
    groups = [o for o in hc.overrides.hydra if o.startswith("hydra.searchpath=")]
    changed, added = [], []
    for text, o in zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True):
        name = o.key_or_group.split("@")[0]
        if (Path(config_dir) / name).is_dir():
            groups.append(text)
        elif o.type in (OverrideType.CHANGE, OverrideType.FORCE_ADD):
            changed.append(o.key_or_group)
        elif o.type == OverrideType.ADD:
            added.append(o.key_or_group)
    return groups, changed, added


def check_value_types(config_dir: str | Path, config_name: str, cfg: dict) -> None:
    """A value set on the command line has the type of the default it replaces: ``true``
    or ``false`` for a boolean setting, no string or boolean for a numeric one (Hydra
    keeps ``enabled=maybe`` or ``seed=abc`` as a string, and ``bool('maybe')`` is true).
    Each command's own checks then take ranges, lists and nulls. A key added with
    ``+key=...`` must be one the command reads (:data:`ADDABLE`)."""
    try:
        groups, keys, added = command_line_values(config_dir)
    except ValueError:  # not under a Hydra job (library use)
        return
    base = None
    for key in added:
        if not key.startswith(ADDABLE.get(config_name, ())):
            base = compose_config(config_dir, config_name, groups) if base is None else base
            if _lookup(base, key) is _MISSING:  # `+` on an existing (null) key is a change
                raise InputError(
                    f"{key}: not a setting of this command (+{key}=... adds a key that "
                    "nothing reads; check its spelling)"
                )
    keys = [k for k in keys if k not in UNTYPED and not k.startswith("hydra.")]
    if not keys:
        return
    base = compose_config(config_dir, config_name, groups) if base is None else base
    for key in keys:
        default, value = _lookup(base, key), _lookup(cfg, key)
        if default is _MISSING or value is _MISSING:
            continue
        if isinstance(default, bool):
            boolean(value, key)
        elif isinstance(default, (int, float)) and isinstance(value, (str, bool)):
            # a string or a boolean for a number (lists and null pass)
            (integer if isinstance(default, int) else number)(value, key)


def run_app(
    config_path: str | Path,
    config_name: str,
    fn: Callable[[dict], object],
    words: dict[str, str] | None = None,
    flags: dict[str, str] | None = None,
    print_result: bool = True,
) -> None:
    """Run ``fn(resolved config as a plain dict)`` as a Hydra command (the one way every
    entry point is made): argv fix-ups (``key=range(a,b)`` quoted, leading ``words`` named,
    old ``flags`` such as ``--no-checksums`` mapped to overrides, ``GROUP=FILE.yaml`` as a
    group option: :func:`group_files`), the config tree at
    ``config_path``, :func:`run_task`'s one-line errors, and the result printed as one
    JSON line."""
    import json

    import hydra
    from omegaconf import OmegaConf

    argv = [(flags or {}).get(a, a) for a in sys.argv[1:]]
    argv = run_task(lambda: group_files(argv, config_path), config_name)
    # a small command writes nothing of Hydra's own and stays in the working directory
    quiet = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout"]
    quiet = [q for q in quiet if not any(a.startswith(q.split("=")[0] + "=") for a in argv)]
    sys.argv[1:] = [*quote_range_overrides(named_words(argv, words or {})), *quiet]

    @hydra.main(version_base=None, config_path=str(config_path), config_name=config_name)
    def _main(cfg) -> object:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        where = (
            config_name
            if Path(config_path).name == "conf"
            else f"{Path(config_path).name}/{config_name}"
        )

        def task() -> object:
            check_value_types(config_path, config_name, resolved)
            return fn(resolved)

        logs = [
            Path(str(resolved[k])) / sub
            for k, sub in (("run_dir", "logs"), ("out_dir", ""), ("out", ""), ("storage", ""))
            if isinstance(resolved.get(k), str) and resolved[k] not in ("", "???")
        ]
        result = run_task(task, where, logs)
        if print_result and result is not None:
            print(json.dumps(result, default=str), flush=True)
        return result

    report_hydra_errors(_main)
