"""The service framework: long-running apps kept at N healthy instances, Marathon's /v2 API.

Vocabulary: an *app* (``AppSpec``, Marathon's app definition) has *versions* (each change); its
*configuration version* is the latest change of more than ``instances``, which its *instances*
(``Instance``: one task each) run. Every change is a *deployment* (``Deployment``): *steps* of
*actions* (StartApplication, ScaleApplication, RestartApplication, StopApplication).

The pure core (no I/O, no clock): apps.py (types), app_reading.py with app_parts.py and
app_ports.py (reading and rendering Marathon JSON), engine.py (``ServiceEngine``: events and
``now`` in, commands out) with its parts changes.py (changes into versions and deployments),
converge.py (each app toward what it should run; timers), offering.py (offers, the queue),
restore.py, records.py and service_ports.py; planner.py (deployment plans, rolling-restart
arithmetic), backoff.py, constraints.py, matching.py and tasks.py (offer matching and the
TaskInfo), events.py (Marathon's event documents), views.py (the API's JSON). The shell:
service.py (on the shared ``frameworks.hosting`` host), api.py, api_apps.py, api_misc.py and
sse.py (the REST API and ``/v2/events``), main.py (``mensa service``).

Usage::

    from mensa.frameworks.service_fw.app_reading import parse_app
    from mensa.frameworks.service_fw.engine import ServiceEngine

    engine = ServiceEngine()
    deployment, commands = engine.create_app(parse_app({"id": "/web", "cmd": "serve"}), now)
    commands = engine.offers(offers, now)
"""
