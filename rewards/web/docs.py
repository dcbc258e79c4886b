"""/docs: Swagger UI from the swagger-ui-bundle package, served from this origin, so the
viewer works offline and no third-party script runs next to the partner pages."""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)

ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                    "favicon-32x32.png", "favicon-16x16.png"})

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Citizen Rewards API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" href="{icon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script src="{start}"></script>
</body>
</html>
"""

# No inline script: the page's policy allows scripts from this origin only.
START = """window.onload = function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"});
};
"""


@bp.route("/docs")
def docs_page() -> Response:
    asset = lambda name: url_for("docs.docs_asset", filename=name)  # noqa: E731
    html = PAGE.format(css=asset("swagger-ui.css"), icon=asset("favicon-32x32.png"),
                       bundle=asset("swagger-ui-bundle.js"),
                       preset=asset("swagger-ui-standalone-preset.js"),
                       start=url_for("docs.docs_start"))
    return Response(html, mimetype="text/html")


@bp.route("/docs/start.js")
def docs_start() -> Response:
    return Response(START, mimetype="text/javascript")


@bp.route("/docs/assets/<filename>")
def docs_asset(filename: str) -> Response:
    if filename not in ASSETS:
        abort(404)
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
