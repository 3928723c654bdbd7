"""The query side: the served index, search, pagination cursors and the HTTP API.

``functions/query/app.py`` builds everything once per sandbox::

    service = SearchService.from_settings(settings, clients)  # the facade: model + index, at init
    api = QueryApi(service, metrics)                          # the resolver and its routers
    api.handle(event, context)
"""
