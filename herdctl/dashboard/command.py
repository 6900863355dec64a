"""The CLI's side of the dashboard: `herdctl dashboard [--open]`, and the line `herdctl up`
prints. The address, with the token in its path (herdctl.dashboard.access), comes from the
supervisor's `ping` answer over the control socket, which only the herd's user can reach.

No aiohttp here: these are quick commands (tests/herdctl_cli/test_lazy_imports.py).
"""

from __future__ import annotations

from herdctl.arguments import ensure
from herdctl.console import UserError, err, out
from herdctl.daemon import answering, ask, left_behind, supervisor_log
from herdctl.messages import DashboardInfo
from node.config import HerdConfig
from node.private import replace_private

OPENER_NAME = "herdctl.dashboard.html"  # in run_dir: what `--open` hands the browser
EXAMPLE = "dashboard: {host: 127.0.0.1, port: 12110}"


def info_of(config: HerdConfig) -> DashboardInfo | None:
    """What the running supervisor says of its dashboard; None from one that says nothing
    (a supervisor from before dashboards)."""
    return ask(config, {"cmd": "ping"}, timeout=5.0).get("dashboard")


def announce(config: HerdConfig) -> None:
    """`up`'s last line: where the dashboard is, or (on stderr) why it is not served.
    Nothing when the topology asks for none."""
    info = info_of(config)
    if info is None:
        return
    where = info["url"]
    if where is not None:
        out(f"dashboard: {where}")
    elif info["error"] is not None:
        err(f"herdctl: dashboard not served: {info['error']} (see {supervisor_log(config)})")


def show(config: HerdConfig, *, open_browser: bool) -> None:
    """`herdctl dashboard`: print the address; with `open_browser`, open it too."""
    if answering(config) is None:
        if not left_behind(config):
            raise UserError("no supervisor running: `herdctl up` starts the herd and its dashboard")
        ensure(config)  # adopt what a dead supervisor left; it serves the dashboard again
    info = info_of(config)
    if info is None or (info["url"] is None and info["error"] is None):
        raise UserError(
            f"the herd serves no dashboard: add `{EXAMPLE}` to {config.path.name} "
            "(port 0: any free port), then `herdctl reload`"
        )
    where = info["url"]
    if where is None:
        raise UserError(
            f"the dashboard is not served: {info['error']}; free the port or change "
            f"`dashboard:` in {config.path.name}, then `herdctl reload`"
        )
    out(where)
    if open_browser:
        open_page(config, where)


def open_page(config: HerdConfig, where: str) -> None:
    """Open `where` in a browser through a 0600 page in run_dir that redirects to it, so the
    token is never on a command line other users can list."""
    import html
    import webbrowser  # 10-20 ms: only for --open

    opener = config.run_dir / OPENER_NAME
    target = html.escape(where, quote=True)
    replace_private(
        opener,
        (
            "<!doctype html><meta charset=utf-8><title>herd dashboard</title>"
            f'<meta http-equiv="refresh" content="0;url={target}">'
            f'<p><a href="{target}">herd dashboard</a></p>\n'
        ).encode(),
    )
    if not webbrowser.open(opener.as_uri()):
        raise UserError("found no browser to open; open the address above")
    err("herdctl: opened in your browser")
