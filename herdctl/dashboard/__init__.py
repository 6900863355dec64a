"""The supervisor's dashboard: the herd drawn live in a browser, one concept per module.

state        the JSON snapshot from the status rows and the topology: layout, link
             directions, rates from counter deltas (pure)
logfeed      every log's new lines, merged, read a bounded window at a time (files only)
hub          asyncio: the event stream's producer, fanned out to every open page
propagation  asyncio: the propagation probe (an IAMAT at one node, WHATSAT at the others)
access       the token a browser must bring, and the checks against cross-site requests
app          aiohttp.web: the routes (imported only by the supervisor, when configured)
service      the supervisor's side: start, move and stop the site; what `ping` reports
command      the CLI's side: `herdctl dashboard`, and the line `herdctl up` prints
static/      the page: plain HTML, JS and SVG, no build step, nothing from a CDN

Nothing here but `app` (and `service` when it starts the site) imports aiohttp, so the
CLI's commands stay quick (tests/herdctl_cli/test_lazy_imports.py).
"""
