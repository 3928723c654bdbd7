"""The query side: the served index, search, pagination cursors and the HTTP API.

``functions/query/app.py`` builds everything once per sandbox::

    service = SearchService.from_settings(Settings.from_env())   # model + index, at init
    app = create_app(service)                                     # APIGatewayHttpResolver
    app.resolve(event, context)
"""
