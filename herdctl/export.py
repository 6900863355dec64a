"""`herdctl export systemd`: a systemd service per node of this machine, and herd.target.

systemd then does for those nodes what herdctl's supervisor does: runs each as `python -m
node NAME -c topology.yaml`, restarts it when it dies but not when it exits 78 (EX_CONFIG: a
node that cannot start as configured will not fix itself), stops it with SIGTERM (the node
stops listening, finishes its replies, closes its links and journal, exits 0) and kills it
after 10 s, as herdctl does. `units` renders the files' text from the topology and a few
choices, with no I/O, so it is tested without systemd; `write` puts them in a folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from node.config import HerdConfig, NodeSpec

UNIT_PREFIX = "herd-"
TARGET = "herd.target"
DEFAULT_ENV_FILE = "/etc/herd/herd.env"
STOP_TIMEOUT = 10  # seconds from SIGTERM to SIGKILL: herdctl.manager's stop_timeout
RESTART_SEC = 1
EXIT_CONFIG = 78  # node.__main__.EXIT_CONFIG
MIN_NOFILE = 65536
MAX_NOFILE = 1048576  # Linux's default fs.nr_open: no limit can be set above it
FD_MARGIN = 1024  # descriptors beyond the client cap: links, journal, logs, listeners
HOMES = ("/home", "/root", "/run/user")  # what ProtectHome= hides
TMPS = ("/tmp", "/var/tmp")  # what PrivateTmp= replaces
UNIT_MODE = 0o644
_UNIT_SAFE = re.compile(r"[A-Za-z0-9:_.-]")
_WORD_SAFE = re.compile(r"[A-Za-z0-9/:_.,+=@-]+")


class ExportError(Exception):
    """Nothing to export, or the files cannot be written; the message says why."""


@dataclass(frozen=True, slots=True)
class Choices:
    """How the services run: the interpreter, who as, and where the shared secret is."""

    python: str  # absolute: the interpreter of this install (its venv), as it is named
    env_file: str = DEFAULT_ENV_FILE  # sets HERD_SECRET (and a Places key, if any)
    user: str | None = None  # None: systemd's default, root
    group: str | None = None
    # Files the services read that are not in the topology: the interpreter and the herd's
    # code, symlinks resolved. Any under /home or /root makes ProtectHome read-only, not yes.
    code_paths: tuple[str, ...] = ()


def local_nodes(
    config: HerdConfig, host: str | None, is_local: Callable[[str], bool]
) -> list[NodeSpec]:
    """The nodes to export: those whose `host` is `host` as written, or, with no `host`,
    those `is_local` says are this machine's. ExportError when there is none."""
    nodes = list(config.nodes.values())
    hosts = ", ".join(dict.fromkeys(spec.host for spec in nodes))
    if host is not None:
        chosen = [spec for spec in nodes if spec.host == host]
        if not chosen:
            raise ExportError(f"no node of {config.path} has host {host} (its hosts: {hosts})")
        return chosen
    chosen = [spec for spec in nodes if is_local(spec.host)]
    if not chosen:
        raise ExportError(
            f"no node of {config.path} runs on this machine (its hosts: {hosts});"
            " --host H exports the nodes of host H"
        )
    return chosen


def unit_name(node: str) -> str:
    """`herd-NAME.service`, NAME escaped as systemd-escape does: each byte outside
    [A-Za-z0-9:_.-] as \\xNN."""
    escaped = "".join(
        ch if _UNIT_SAFE.fullmatch(ch) else "".join(f"\\x{b:02x}" for b in ch.encode())
        for ch in node
    )
    return f"{UNIT_PREFIX}{escaped}.service"


def units(config: HerdConfig, nodes: Sequence[NodeSpec], choices: Choices) -> dict[str, str]:
    """File name -> text: a service per node of `nodes`, then herd.target wanting them all."""
    exported = {spec.name for spec in nodes}
    spans_machines = any(name not in exported for name in config.nodes)
    files = {
        unit_name(spec.name): service(config, spec, choices, secret_required=spans_machines)
        for spec in nodes
    }
    files[TARGET] = target(config, nodes)
    return files


def service(config: HerdConfig, spec: NodeSpec, choices: Choices, *, secret_required: bool) -> str:
    """One node's service. `secret_required`: the herd spans machines, so every node must
    read the one shared HERD_SECRET, and a missing env file stops the start (without it
    the node would make a secret of its own, which no other machine's nodes share)."""
    folder = str(config.path.parent)
    writable = _writable(config)
    read = [folder, choices.python, choices.env_file, *map(str, writable), *choices.code_paths]
    lines = [
        f"# herd node {spec.name}, from {config.path} (herdctl export systemd).",
        "# After editing the topology: export again, then systemctl daemon-reload.",
        "[Unit]",
        f"Description={_value(f'herd node {spec.name} ({spec.host}:{spec.port})')}",
        f"PartOf={TARGET}",
        "Wants=network-online.target",
        "After=network-online.target",
        "StartLimitIntervalSec=60",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart="
        + " ".join(_exec_word(word) for word in (choices.python, "-m", "node", spec.name, "-c"))
        + f" {_exec_word(str(config.path))}",
        f"WorkingDirectory={_value(folder)}",
        f"EnvironmentFile={'' if secret_required else '-'}{_value(choices.env_file)}",
    ]
    if choices.user is not None:
        lines.append(f"User={_value(choices.user)}")
    if choices.group is not None:
        lines.append(f"Group={_value(choices.group)}")
    nofile = min(MAX_NOFILE, max(MIN_NOFILE, config.limits.max_connections_total + FD_MARGIN))
    lines += [
        f"SyslogIdentifier={_value(UNIT_PREFIX + spec.name)}",
        f"# Exit {EXIT_CONFIG} (EX_CONFIG): cannot start as configured; retrying cannot help.",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        f"RestartPreventExitStatus={EXIT_CONFIG}",
        "# SIGTERM: stop listening, finish the replies in flight, close links and journal.",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        f"# The node raises its soft fd limit to this, above max_connections_total"
        f" ({config.limits.max_connections_total}).",
        f"LimitNOFILE={nofile}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={'read-only' if _under(read, HOMES) else 'yes'}",
        # `-`: a folder not made yet is no error of systemd's; the node then says it
        # cannot create it (the system is read-only to it) and exits 78.
        "ReadWritePaths=" + " ".join(_path_word(f"-{path}") for path in writable),
        f"PrivateTmp={'no' if _under(read, TMPS) else 'yes'}",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "",
        "[Install]",
        f"WantedBy={TARGET}",
    ]
    return "\n".join(lines) + "\n"


def target(config: HerdConfig, nodes: Sequence[NodeSpec]) -> str:
    """herd.target: starting it starts every exported node; stopping it stops them."""
    names = ", ".join(spec.name for spec in nodes)
    return (
        "\n".join(
            [
                f"# The herd's nodes on this machine, from {config.path} (herdctl export systemd).",
                "[Unit]",
                f"Description={_value(f'herd: {names}')}",
                "Wants=" + " ".join(unit_name(spec.name) for spec in nodes),
                "",
                "[Install]",
                "WantedBy=multi-user.target",
            ]
        )
        + "\n"
    )


def folders_to_make(config: HerdConfig) -> list[Path]:
    """The folders the nodes write to that do not exist yet: under ProtectSystem=strict a
    node cannot make them itself, so they must be made (owned by its user) before start."""
    return [path for path in _writable(config) if not path.is_dir()]


def write(files: Mapping[str, str], folder: Path) -> list[Path]:
    """Write each file into `folder` (made if missing), 0644, each replaced whole."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in files.items():
            path = folder / name
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.chmod(tmp, UNIT_MODE)
            os.replace(tmp, path)
            written.append(path)
        return written
    except OSError as e:
        where = e.filename or folder
        raise ExportError(f"cannot write the units to {where}: {e.strerror or e}") from None


def stale_units(folder: Path, files: Iterable[str]) -> list[Path]:
    """herd-*.service files already in `folder` that this export does not write: nodes
    since removed from the topology, or moved to another machine."""
    keep = set(files)
    try:
        found = sorted(folder.glob(f"{UNIT_PREFIX}*.service"))
    except OSError:
        return []
    return [path for path in found if path.name not in keep]


def _writable(config: HerdConfig) -> list[Path]:
    """Where the nodes write: logs, journals, status files (and the secret file, when it
    lies elsewhere), each once, in that order."""
    paths = [config.log_dir, config.data_dir, config.run_dir]
    secret_folder = config.secret_file.parent
    if not any(secret_folder.is_relative_to(path) for path in paths):
        paths.append(secret_folder)
    return list(dict.fromkeys(paths))


def _under(paths: Iterable[str], roots: Iterable[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(root) for path in paths for root in roots)


def _value(text: str) -> str:
    """A setting's value with systemd's specifiers (%n, %h, ...) taken literally."""
    return text.replace("%", "%%")


def _exec_word(word: str) -> str:
    """One word of ExecStart=, `$` doubled too, so systemd expands no variable in it."""
    return _path_word(word.replace("$", "$$"))


def _path_word(word: str) -> str:
    """One word of a space-separated list (ExecStart=, ReadWritePaths=): specifiers taken
    literally, and quoted, backslashes and quotes escaped, unless it is all plain."""
    word = _value(word)
    if _WORD_SAFE.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
