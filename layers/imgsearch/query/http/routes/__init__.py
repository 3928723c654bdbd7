"""The query API's route groups: one Powertools router per module, each made by a factory from
the ``SearchService`` facade (and ``ApiSettings``: ``k``'s default and bound are settings, so a
router is built per resolver, never at import)::

    app.include_router(meta.router(service))              # /, /health, /version
    app.include_router(search.router(service, settings.api))  # the three searches
    app.include_router(recent.router(service, settings.api))  # /recent, the newest images

Route modules do without ``from __future__ import annotations``: Powertools reads each route's
signature when the route is added, and a parameter type such as ``k``'s is local to the factory.
"""
